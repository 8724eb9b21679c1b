//! Readiness: a queue's *bell*, an eventfd that is readable whenever a message is waiting
//! (or the queue is closed), for `poll(2)`, `epoll`, mio or tokio's `AsyncFd` (the queue
//! facade hands it out as its `AsFd`; what a user must do is in the queue module docs).
//!
//! The bell is created with the queue and shared by every handle (inherited by forked
//! children, carried as an fd where a handle travels). It costs nothing until some process
//! asks for it: asking sets the sticky [`WATCHED`] bit, the high bit of the sleeper counts
//! each side already loads after its commit (`getters` for producers, `putters` for
//! consumers), so an unwatched queue makes the same loads and no system call more.
//!
//! On a watched queue, with `rung` and the bell's own robust lock in the control block's
//! `ready` lines (touched only when watched):
//!
//! - **A producer** that commits while `rung` is 0 takes the bell's lock and, if `rung` is
//!   still 0, writes the eventfd and *then* sets `rung`: one write per transition from
//!   "settled empty" to "holds messages", not one per message (later producers see `rung`
//!   set and skip, without the lock). Its look at `rung` follows its commit and the fence
//!   of its mutex's unlock, as for the futex sleepers.
//! - **A consumer settles** the bell whenever a get finds the queue empty (`try_get`'s
//!   `Empty`, a timed get that runs out): what a poller's loop ends with. A get that takes
//!   the last message does not (so a consumer that keeps up with blocking gets makes no
//!   system call on a watched queue: the bell stays rung, producers skip it); the bell
//!   then stays readable over an empty queue until some get finds it empty. Under the
//!   bell's lock, a settle clears `rung`, drains the eventfd (non-blocking `read`), and
//!   looks at the queue again (after a `SeqCst` fence); if a message (or the close) is
//!   there, it writes the eventfd itself and sets `rung`. A producer that
//!   committed before the clear either set `rung` before it (its write is then drained, but
//!   its message is seen by the look) or sees it clear afterwards and rings.
//! - **Invariant**: `rung` set means the eventfd is readable. Every writer writes before
//!   setting `rung`, and the only reader (a settle) clears `rung` first; the lock keeps a
//!   writer's write-then-set from straddling a settle's clear-then-drain (which would leave
//!   `rung` set over a drained bell: every later producer would skip).
//! - **Faults**: a process killed anywhere never leaves `rung` set over a drained bell (the
//!   write comes first, and a dead holder's lock is taken over: it is a robust mutex). A
//!   producer killed between its commit and its write, or a consumer killed inside a settle
//!   between the drain and the look, leaves `rung` clear: waiting messages are unannounced
//!   until the next put, which rings. A killed writer may
//!   leave the bell readable over an empty queue: a poller wakes once, its get finds the
//!   queue empty and settles.
//!
//! Not model-checked (`model.rs` never sets `WATCHED`): argued here and tested with real
//! processes (`tests/it/readiness.rs`).

use std::os::fd::{AsFd, BorrowedFd};

use rustix::event::{eventfd, EventfdFlags};

use super::*;

/// A new bell: an eventfd, non-blocking, close-on-exec.
pub(crate) fn new_bell() -> Result<OwnedFd> {
    eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|e| {
        Error::new(
            ErrorKind::Os,
            format!("cannot create the queue's readiness eventfd: {e}"),
        )
    })
}

/// Checks that an fd received from another process is an eventfd (the bell is written to:
/// a wrong fd must not receive our 8 bytes).
pub(crate) fn check_bell(fd: BorrowedFd<'_>) -> Result<()> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    match link {
        Ok(p) if p.as_os_str() == "anon_inode:[eventfd]" => Ok(()),
        Ok(p) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "a queue's readiness fd must be an eventfd, got {}",
                p.display()
            ),
        )),
        Err(e) => Err(Error::new(
            ErrorKind::Os,
            format!("cannot inspect a queue's readiness fd: {e}"),
        )),
    }
}

impl SharedQueue {
    /// This handle with the queue's bell.
    pub(crate) fn with_bell(mut self, bell: OwnedFd) -> SharedQueue {
        self.bell = Some(Arc::new(bell));
        self
    }

    /// The bell, without arming it (to send it along with the handle).
    pub(crate) fn bell(&self) -> Option<BorrowedFd<'_>> {
        self.bell.as_deref().map(|b| b.as_fd())
    }

    /// True once some process has armed the bell ([`SharedQueue::watch`]).
    #[inline]
    pub(crate) fn watched(&self) -> bool {
        self.ctl().c.putters.load(Ordering::Relaxed) & WATCHED != 0
    }

    /// Arms the bell for good (see the module docs) and returns it; `None` for a ring
    /// without one. The first arming, in any process, settles the bell with what the queue
    /// holds: messages put before it are announced.
    pub(crate) fn watch(&self) -> Option<BorrowedFd<'_>> {
        let bell = self.bell()?;
        let ctl = self.ctl();
        let p_new = ctl.p.getters.load(Ordering::Relaxed) & WATCHED == 0
            && ctl.p.getters.fetch_or(WATCHED, Ordering::SeqCst) & WATCHED == 0;
        let c_new = ctl.c.putters.load(Ordering::Relaxed) & WATCHED == 0
            && ctl.c.putters.fetch_or(WATCHED, Ordering::SeqCst) & WATCHED == 0;
        if p_new || c_new {
            // Producers ring from now on; a message committed by one that did not see the
            // bit yet was committed before our `fetch_or`, so the settle's look sees it.
            self.settle();
        }
        Some(bell)
    }

    /// Rings the bell unless it was rung since the last settle. A producer's, after its
    /// commit and the unlock's fence, on a watched queue.
    #[inline]
    pub(super) fn ring_bell_once(&self) {
        if self.ctl().ready.rung.load(Ordering::SeqCst) == 0 {
            self.ring_bell(false);
        }
    }

    /// Under the bell's lock: writes the bell (unless `rung` is set and not `always`), then
    /// sets `rung`.
    #[cold]
    pub(super) fn ring_bell(&self, always: bool) {
        let ready = &self.ctl().ready;
        ready.lock.lock_forever();
        let _held = Locked(&ready.lock);
        if always || ready.rung.load(Ordering::SeqCst) == 0 {
            self.write_bell();
        }
    }

    /// Writes the bell, then sets `rung`. Hold the bell's lock.
    fn write_bell(&self) {
        if let Some(bell) = self.bell.as_deref() {
            // EAGAIN only when the counter is near 2^64: readable anyway.
            let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
            self.ctl().ready.rung.store(1, Ordering::SeqCst);
        }
    }

    /// A get found the queue empty (with `cmutex` unlocked): settles the bell if watched.
    #[inline]
    pub(super) fn found_empty(&self) {
        if self.watched() {
            self.settle();
        }
    }

    /// Brings an armed bell in step with the queue now, whatever gets found (the queue
    /// facade's `settled_fd`).
    pub(crate) fn settle_now(&self) {
        if self.watched() {
            self.settle();
        }
    }

    /// Brings the bell in step with the queue, under the bell's lock (see the module docs).
    #[cold]
    fn settle(&self) {
        let Some(bell) = self.bell.as_deref() else {
            return;
        };
        let ready = &self.ctl().ready;
        ready.lock.lock_forever();
        let _held = Locked(&ready.lock);
        ready.rung.store(0, Ordering::SeqCst);
        let mut word = [0u8; 8];
        let _ = rustix::io::read(bell, &mut word); // EAGAIN: not readable, as wanted
        fence(Ordering::SeqCst);
        let st = self.snapshot();
        if st.count > 0 || st.closed {
            self.write_bell();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    use super::*;

    fn readable(q: &SharedQueue, t: Duration) -> bool {
        let fd = q.bell().unwrap();
        let ts = Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        };
        poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&ts)).unwrap() == 1
    }

    fn put(q: &SharedQueue, v: u8) {
        q.put_one_with(
            1,
            false,
            |d| {
                d[0] = v;
                Ok(())
            },
            Wait::No,
        )
        .unwrap();
    }

    fn take(q: &SharedQueue) -> std::result::Result<u8, GetStop> {
        q.take_one(Wait::No, |f| Ok(f.bytes()[0]))
    }

    const T: Duration = Duration::from_secs(20);
    const QUIET: Duration = Duration::from_millis(100);

    /// A process killed while holding the bell's lock, at the worst place (a settle between
    /// its drain and its look, with a message waiting): the next put takes the lock over and
    /// rings; the fd is never silent for later messages.
    #[test]
    fn a_settler_killed_holding_the_bell_lock_silences_nothing() {
        let q = SharedQueue::create(1 << 16, None)
            .unwrap()
            .with_bell(new_bell().unwrap());
        q.watch().unwrap();
        assert!(!readable(&q, QUIET));
        put(&q, 1);
        assert!(readable(&q, T));
        let child = q.clone();
        crate::Process::fork(move || {
            let ready = &child.ctl().ready;
            ready.lock.lock_forever();
            ready.rung.store(0, Ordering::SeqCst);
            let mut word = [0u8; 8];
            let _ = rustix::io::read(child.bell().unwrap(), &mut word);
            // Exits here, the lock held (as a SIGKILL would leave it): no look, no re-ring.
        })
        .unwrap()
        .join()
        .unwrap();
        assert!(
            q.ctl().ready.lock.is_locked(),
            "the dead child holds the lock"
        );
        assert!(!readable(&q, QUIET), "message 1 unannounced (documented)");
        put(&q, 2);
        assert!(readable(&q, T), "the next put rings");
        assert_eq!(take(&q).unwrap(), 1);
        assert_eq!(take(&q).unwrap(), 2);
        assert!(matches!(take(&q), Err(GetStop::Empty)));
        assert!(!readable(&q, QUIET));
        put(&q, 3);
        assert!(readable(&q, T));
    }

    /// A producer killed between its write and setting `rung` (the lock held): the bell
    /// stays readable, a get that finds nothing settles it, and later puts ring.
    #[test]
    fn a_producer_killed_after_its_write_costs_one_wake_up() {
        let q = SharedQueue::create(1 << 16, None)
            .unwrap()
            .with_bell(new_bell().unwrap());
        q.watch().unwrap();
        let child = q.clone();
        crate::Process::fork(move || {
            let ready = &child.ctl().ready;
            ready.lock.lock_forever();
            let _ = rustix::io::write(child.bell().unwrap(), &1u64.to_ne_bytes());
        })
        .unwrap()
        .join()
        .unwrap();
        assert!(readable(&q, T), "a spurious wake-up");
        assert!(matches!(take(&q), Err(GetStop::Empty)));
        assert!(
            !readable(&q, QUIET),
            "settled (the dead holder's lock taken over)"
        );
        put(&q, 4);
        assert!(readable(&q, T));
        assert_eq!(take(&q).unwrap(), 4);
        assert!(
            readable(&q, QUIET),
            "taking the last message does not settle"
        );
        assert!(matches!(take(&q), Err(GetStop::Empty)));
        assert!(!readable(&q, QUIET), "finding the queue empty settles");
    }

    /// A get that takes the last message leaves the bell rung; settling now silences it, and
    /// keeps it rung while a message waits.
    #[test]
    fn settling_now_follows_the_queue() {
        let q = SharedQueue::create(1 << 16, None)
            .unwrap()
            .with_bell(new_bell().unwrap());
        q.watch().unwrap();
        put(&q, 1);
        put(&q, 2);
        assert!(readable(&q, T));
        q.settle_now();
        assert!(readable(&q, T), "messages wait: still readable");
        assert_eq!(take(&q).unwrap(), 1);
        assert_eq!(take(&q).unwrap(), 2);
        assert!(readable(&q, QUIET), "taking the last one does not settle");
        q.settle_now();
        assert!(!readable(&q, QUIET), "settled over an empty queue");
        put(&q, 3);
        assert!(readable(&q, T), "the next put rings");
    }

    /// An unarmed queue never touches the bell; arming announces what is waiting.
    #[test]
    fn arming_announces_waiting_messages() {
        let q = SharedQueue::create(1 << 16, None)
            .unwrap()
            .with_bell(new_bell().unwrap());
        put(&q, 5);
        assert!(!q.watched());
        assert!(!readable(&q, QUIET), "unarmed: never written");
        q.watch().unwrap();
        assert!(readable(&q, T));
        assert_eq!(take(&q).unwrap(), 5);
        assert!(matches!(take(&q), Err(GetStop::Empty)));
        assert!(!readable(&q, QUIET));
    }

    #[test]
    fn a_bell_must_be_an_eventfd() {
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let e = check_bell(r.as_fd()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(check_bell(new_bell().unwrap().as_fd()).is_ok());
    }
}
