//! The errors of the pool's non-blocking and timed waits: each holds exactly the outcomes its
//! call can have, and converts into the crate's [`Error`](crate::Error) (so `?` works in a
//! function returning [`crate::Result`]). `Failed` carries a task's failure (its error, as
//! [`AsyncResult::get`](super::AsyncResult::get) gives it) or, for the joins, why the pool
//! cannot be joined.

use crate::error::wait_error;

wait_error! {
    /// Why [`AsyncResult::try_get`](super::AsyncResult::try_get) or
    /// [`Imap::try_next`](super::Imap::try_next) gave no value.
    TryGetError {
        /// The result is not there yet (the tasks go on; ask again later).
        WouldBlock => "the result is not ready yet", Timeout;
    }
    is_would_block: WouldBlock
}

wait_error! {
    /// Why [`AsyncResult::get_timeout`](super::AsyncResult::get_timeout) (or `get_deadline`,
    /// [`Imap::next_timeout`](super::Imap::next_timeout), `next_deadline`) gave no value.
    GetTimeoutError {
        /// The result did not come in time (the tasks go on; ask again later). Python's
        /// `multiprocessing.TimeoutError`.
        Timeout => "the result did not come in time", Timeout;
    }
    is_timeout: Timeout
}

wait_error! {
    /// Why [`Pool::try_join`](super::Pool::try_join) did not return `Ok`.
    TryJoinError {
        /// Workers or callbacks are still running.
        WouldBlock => "the pool's workers are still running", Timeout;
    }
    is_would_block: WouldBlock
}

wait_error! {
    /// Why [`Pool::join_timeout`](super::Pool::join_timeout) (or `join_deadline`) did not
    /// return `Ok`.
    JoinTimeoutError {
        /// Workers or callbacks were still running when the time ran out.
        Timeout => "the pool's workers did not end in time", Timeout;
    }
    is_timeout: Timeout
}
