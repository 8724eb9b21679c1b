//! [`ClosurePool`]: a pool whose workers run one closure.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::calls::Calls;
use super::dispatch::Code;
use super::{AsyncResult, Imap, Pool};
use crate::error::Result;

/// A pool whose workers all run one closure, fixed at creation:
/// [`PoolBuilder::build_with`](super::PoolBuilder::build_with) (Fork start method only). It
/// has the [`Pool`]'s calls, without the function argument.
pub struct ClosurePool<A, R> {
    pub(super) pool: Pool,
    pub(super) _t: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for ClosurePool<A, R> {
    fn clone(&self) -> Self {
        ClosurePool {
            pool: self.pool.clone(),
            _t: PhantomData,
        }
    }
}

impl<A, R> std::fmt::Debug for ClosurePool<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosurePool")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<A, R> ClosurePool<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    fn calls(&self) -> Calls<'_> {
        self.pool.calls(Code::Closure)
    }

    /// The underlying pool (for `worker_pids`; its fn-task calls work too).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A handle to this pool whose calls use `chunksize` (as [`Pool::with_chunksize`]).
    pub fn with_chunksize(&self, chunksize: usize) -> ClosurePool<A, R> {
        ClosurePool {
            pool: self.pool.with_chunksize(chunksize),
            _t: PhantomData,
        }
    }

    /// [`Pool::map`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn map(&self, items: impl IntoIterator<Item = A>) -> Result<Vec<R>> {
        self.calls().map(items)
    }

    /// [`Pool::map_async`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::map_async`].
    pub fn map_async(&self, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>> {
        self.calls().map_async(items)
    }

    /// [`Pool::starmap`] with the pool's closure (which takes a tuple).
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn starmap(&self, items: impl IntoIterator<Item = A>) -> Result<Vec<R>> {
        self.map(items)
    }

    /// [`Pool::starmap_async`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::map_async`].
    pub fn starmap_async(&self, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>> {
        self.map_async(items)
    }

    /// [`Pool::apply`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::apply`].
    pub fn apply(&self, arg: A) -> Result<R> {
        self.calls().apply(arg)
    }

    /// [`Pool::apply_async`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn apply_async(&self, arg: A) -> Result<AsyncResult<R>> {
        self.calls().apply_async(arg)
    }

    /// [`Pool::imap`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::imap`].
    pub fn imap<'a>(&self, items: impl IntoIterator<Item = A> + 'a) -> Result<Imap<'a, R>> {
        self.calls().imap(items, false)
    }

    /// [`Pool::imap_unordered`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::imap`].
    pub fn imap_unordered<'a>(
        &self,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>> {
        self.calls().imap(items, true)
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
