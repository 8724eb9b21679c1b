//! [`WithContext`]: a pool handle whose tasks take a context.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::calls::Calls;
use super::dispatch::{Code, TaskContext};
use super::{worker, AsyncResult, Imap, Pool};
use crate::error::Result;
use crate::process::spawn::CtxFnRef;

/// A [`Pool`] handle whose tasks are functions `fn(&C, A) -> R` given a context `C`: made by
/// [`Pool::with_context`], which says how the context travels. It has the pool's task calls,
/// each taking such a function.
pub struct WithContext<C> {
    pub(super) pool: Pool,
    pub(super) context: Arc<TaskContext>,
    pub(super) _c: PhantomData<fn(&C)>,
}

impl<C> Clone for WithContext<C> {
    fn clone(&self) -> Self {
        WithContext {
            pool: self.pool.clone(),
            context: self.context.clone(),
            _c: PhantomData,
        }
    }
}

impl<C> std::fmt::Debug for WithContext<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithContext")
            .field("pool", &self.pool)
            .field("context_bytes", &self.context.bytes.len())
            .finish()
    }
}

impl<C: Serialize + DeserializeOwned + 'static> WithContext<C> {
    fn calls<A, R>(&self, f: fn(&C, A) -> R) -> Calls<'_>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let f = CtxFnRef::of::<C, A, R, worker::ChunkRunner>(f);
        self.pool.calls(Code::Context(f, self.context.clone()))
    }

    /// The pool (for `worker_pids`; its fn-task calls work too).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// This handle with another chunksize (as [`Pool::with_chunksize`]); the same context.
    pub fn with_chunksize(&self, chunksize: usize) -> WithContext<C> {
        WithContext {
            pool: self.pool.with_chunksize(chunksize),
            ..self.clone()
        }
    }

    /// [`Pool::map`] with the context.
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn map<A, R>(&self, f: fn(&C, A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(f).map(items)
    }

    /// [`Pool::map_async`] with the context.
    ///
    /// # Errors
    /// As [`Pool::map_async`].
    pub fn map_async<A, R>(
        &self,
        f: fn(&C, A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(f).map_async(items)
    }

    /// [`Pool::starmap`] with the context: `fn f(c: &C, (a, b): (i32, i32)) -> i32`.
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn starmap<A, R>(
        &self,
        f: fn(&C, A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map(f, items)
    }

    /// [`Pool::starmap_async`] with the context.
    ///
    /// # Errors
    /// As [`Pool::map_async`].
    pub fn starmap_async<A, R>(
        &self,
        f: fn(&C, A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items)
    }

    /// [`Pool::apply`] with the context.
    ///
    /// # Errors
    /// As [`Pool::apply`].
    pub fn apply<A, R>(&self, f: fn(&C, A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(f).apply(arg)
    }

    /// [`Pool::apply_async`] with the context.
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn apply_async<A, R>(&self, f: fn(&C, A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(f).apply_async(arg)
    }

    /// [`Pool::imap`] with the context.
    ///
    /// # Errors
    /// As [`Pool::imap`].
    pub fn imap<'a, A, R>(
        &self,
        f: fn(&C, A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(f).imap(items, false)
    }

    /// [`Pool::imap_unordered`] with the context.
    ///
    /// # Errors
    /// As [`Pool::imap`].
    pub fn imap_unordered<'a, A, R>(
        &self,
        f: fn(&C, A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(f).imap(items, true)
    }

    /// [`Pool::close`].
    pub fn close(&self) {
        self.pool.close()
    }

    /// [`Pool::join`].
    ///
    /// # Errors
    /// As [`Pool::join`].
    pub fn join(&self) -> Result<()> {
        self.pool.join()
    }

    /// [`Pool::terminate`].
    pub fn terminate(&self) {
        self.pool.terminate()
    }
}
