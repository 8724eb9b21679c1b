//! How a worker's panics become outcomes: a panic hook that records where a task panicked
//! instead of printing it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::process::panic_message;

// Panics in workers. A task's panic is its outcome: the message goes back to the caller, in
// the task's error, and nothing is printed (std's default hook would print it, and with
// RUST_BACKTRACE set, every worker's backtrace, interleaved on the shared stderr). So the
// worker's thread is marked (`CAPTURE`), and a panic hook records where a panic of a marked
// thread happened (`WHERE`, added to the message) instead of printing; other threads' panics
// go to the hook that was there before.
//
// The hook is installed in the process that makes the pool, before it forks workers, and in
// a spawned worker before it runs anything: never in a forked worker, where `set_hook` would
// take std's hook lock — which another thread of the parent may have held at the fork
// (while panicking) — and where std's default hook may wait forever for its backtrace lock
// or stderr's lock, held at the fork by another thread. The hook a forked worker inherits
// only reads its thread-locals and formats a string.

thread_local! {
    /// This thread runs pool tasks: its panics are recorded, not printed.
    static CAPTURE: Cell<bool> = const { Cell::new(false) };
    /// Where the last recorded panic happened (`file:line:column`).
    static WHERE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The hook is installed in this process (inherited by forked children with the hook).
static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the panic hook described above, once per process (it passes every panic it does
/// not record to the hook that was installed before it). A hook set later replaces it:
/// workers forked after that print their tasks' panics again (their messages still come
/// back in the tasks' errors).
pub(crate) fn install_panic_hook() {
    // Two threads may both install it (the check and the store are apart): the outer one
    // then passes the panics it does not record to the inner one, which does the same.
    if HOOK_INSTALLED.load(Ordering::Acquire) || std::thread::panicking() {
        return;
    }
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CAPTURE.try_with(Cell::get).unwrap_or(false) {
            if let Some(l) = info.location() {
                let at = format!("{}:{}:{}", l.file(), l.line(), l.column());
                let _ = WHERE.try_with(|w| w.replace(Some(at)));
            }
        } else {
            prev(info)
        }
    }));
    HOOK_INSTALLED.store(true, Ordering::Release);
}

/// The message of a recorded panic, with where it happened: `message (at file:line:col)`.
pub(crate) fn panic_text(p: &(dyn Any + Send)) -> String {
    let msg = panic_message(p);
    match WHERE.try_with(|w| w.take()).ok().flatten() {
        Some(at) => format!("{msg} (at {at})"),
        None => msg,
    }
}

/// Marks this thread as one that runs pool tasks: its panics are recorded, not printed.
pub(crate) fn capture_this_thread() {
    CAPTURE.with(|c| c.set(true));
}
