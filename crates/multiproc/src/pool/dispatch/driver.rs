//! The pool's driver: a caller that reads the workers' results itself while it waits for
//! its job (see the docs of `dispatch`).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use super::{drain, Link};
use crate::pool::job::{Job, State};
use crate::sys::{socket, Deadline};

/// The pool's driver: a caller that reads the workers' results itself while it waits (see
/// the docs of `dispatch`). Dropping it hands the reading back to the dispatcher.
pub(crate) struct Driver<'l> {
    pub(super) link: &'l Link,
}

impl Driver<'_> {
    /// Waits until `ready(job state)` or `deadline` passes, reading results and sending
    /// waiting chunks meanwhile.
    pub(crate) fn wait_for<'j>(
        &self,
        job: &'j Job,
        deadline: Deadline,
        mut ready: impl FnMut(&State) -> bool,
    ) -> (MutexGuard<'j, State>, bool) {
        let link = self.link;
        loop {
            {
                let st = job.lock();
                if ready(&st) {
                    return (st, true);
                }
            }
            let timeout = match deadline.remaining() {
                Ok(t) => t,
                Err(()) => {
                    let st = job.lock();
                    let ok = ready(&st);
                    return (st, ok);
                }
            };
            // The sockets to watch: the workers' that may still send (the dispatcher adds
            // and removes workers; a stale list is refreshed after its poke).
            let socks: Vec<(Arc<OwnedFd>, bool)> = {
                let core = link.core();
                if core.stopped {
                    drop(core);
                    return job.wait_for(deadline, ready);
                }
                core.workers
                    .iter()
                    .filter(|w| !w.ended && !w.reader.at_eof())
                    .map(|w| (w.sock.clone(), !w.out.is_empty()))
                    .collect()
            };
            let mut fds = vec![(link.poke_rx.as_fd(), false)];
            fds.extend(socks.iter().map(|(s, w)| (s.as_fd(), *w)));
            let ready_fds = match socket::poll_rw(&fds, timeout) {
                Ok(r) => r,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            if ready_fds[0].readable {
                drain(&link.poke_rx);
                link.poke_pending.store(false, Ordering::SeqCst);
            }
            if ready_fds[1..].iter().any(|r| r.readable || r.writable) {
                let mut core = link.core();
                let mut kill = false;
                for i in 0..core.workers.len() {
                    if core.workers[i].ended {
                        continue;
                    }
                    core.read(i);
                    core.workers[i].flush();
                    kill |= core.workers[i].kill;
                }
                core.assign();
                let wake = kill || core.stuck();
                drop(core);
                if wake {
                    link.wake();
                }
            }
        }
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        let mut core = self.link.core();
        core.driver = false;
        // Results still to come, or a close waiting for the end: the dispatcher reads them.
        let wake = (!core.idle() || core.closing) && !core.dispatcher_reads;
        drop(core);
        if wake {
            self.link.wake();
        }
    }
}
