//! [`ProcessBuilder`]: a child's name and daemon flag, then the verb that starts it.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::current::Identity;
use super::start::{fork_child, launcher, on_main_thread, run_target, Sink};
use super::{outcome, spawn, Outcome, Process, StartMethod};
use crate::codec;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::Result;
use crate::handle;

/// Configures a process before it starts: name, daemon flag; then [`fork`](Self::fork) or
/// [`spawn`](Self::spawn) starts it.
///
/// ```
/// use multiproc::Process;
/// let p = Process::builder().name("worker").fork(|| 6 * 7)?;
/// assert_eq!(p.name(), "worker");
/// assert_eq!(p.join()?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
}

static COUNTER: AtomicUsize = AtomicUsize::new(1);

impl ProcessBuilder {
    /// A builder with default settings (not a daemon, name `Process-N`).
    pub fn new() -> ProcessBuilder {
        ProcessBuilder::default()
    }

    /// The process's name (Python's `name`); only for humans, it need not be unique.
    pub fn name(mut self, name: impl Into<String>) -> ProcessBuilder {
        self.name = Some(name.into());
        self
    }

    /// A daemon child is killed when its parent ends — at normal exit (terminated, then
    /// reaped) and when the parent is killed (`PR_SET_PDEATHSIG`). A non-daemon child is
    /// waited for when the parent's `main` returns.
    pub fn daemon(mut self, daemon: bool) -> ProcessBuilder {
        self.daemon = daemon;
        self
    }

    fn take_name(&mut self) -> String {
        self.name
            .take()
            .unwrap_or_else(|| format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed)))
    }

    /// Forks a child ([`StartMethod::Fork`]) that runs `f` and hands its return value back to
    /// [`Process::join`].
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when fork fails.
    pub fn fork<F, R, M>(mut self, f: F) -> Result<Process<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Outcome<M>,
    {
        let name = self.take_name();
        let daemon = self.daemon;
        let who = Box::new(Identity::for_child(&name, daemon, StartMethod::Fork));
        let body = move |sink: Sink| run_target::<R, M>(sink, f);
        let started = if daemon && !on_main_thread() {
            // PR_SET_PDEATHSIG follows the forking *thread*: fork from one that lives as long
            // as the process does.
            launcher(move || fork_child(who, body))?
        } else {
            fork_child(who, body)?
        };
        Ok(Process::new(
            started,
            name,
            daemon,
            StartMethod::Fork,
            outcome::decoder::<R, M>(),
        )
        .logged())
    }

    /// Starts a child with [`StartMethod::Spawn`] that runs `f(args)`: the current binary is
    /// executed again and `args` is serialized; multiproc primitives inside it (locks, queues,
    /// connections...) travel as fds and work in the child. No setup call is needed in
    /// `main`, nor in `cargo test` binaries.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when `args` can't be serialized; [`ErrorKind::Os`] when the
    /// child can't be started.
    pub fn spawn<A, R, M>(mut self, f: fn(A) -> R, args: A) -> Result<Process<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Outcome<M> + 'static,
    {
        let name = self.take_name();
        let daemon = self.daemon;
        let (bytes, fds) = handle::with_exported_fds(|| codec::to_vec_typed(&args))?;
        let entry = spawn::Entry::of::<A, R, M>(f);
        let who = Identity::for_child(&name, daemon, StartMethod::Spawn);
        let started = if daemon && !on_main_thread() {
            launcher(move || spawn::exec_child(entry, &bytes, fds, who))?
        } else {
            spawn::exec_child(entry, &bytes, fds, who)?
        };
        Ok(Process::new(
            started,
            name,
            daemon,
            StartMethod::Spawn,
            outcome::decoder::<R, M>(),
        )
        .logged())
    }
}
