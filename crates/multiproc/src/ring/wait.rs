//! Close, task accounting, and waiting: the sleepers' counts, futex sleeps and wake-ups.

use super::*;

impl SharedQueue {
    // ----- close, tasks -----

    /// Closes the queue: no more puts; gets drain, then fail with `Closed`. Idempotent.
    pub(crate) fn close(&self) {
        let ctl = self.ctl();
        let pl = self.lock_forever(&ctl.pmutex.0);
        let p = self.p_state();
        if !p.closed {
            self.p_commit(&PState { closed: true, ..p });
        }
        // Bump cseq too, so putters about to sleep on it see a change.
        let cl = self.lock_forever(&ctl.cmutex.0);
        let c = self.c_state();
        self.c_commit(&c);
        drop(cl);
        drop(pl);
        self.wake_all_sleepers();
        // A closed queue is ready for good (a get says `Closed` at once).
        if self.watched() {
            self.ring_bell(true);
        }
    }

    /// Marks one taken item done.
    pub(crate) fn task_done(&self) -> Result<()> {
        let ctl = self.ctl();
        let l = self.lock_forever(&ctl.cmutex.0);
        let mut c = self.c_state();
        if c.gets.saturating_sub(c.done) == 0 {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "task_done() called more times than items were taken from the queue",
            ));
        }
        c.done += 1;
        self.c_commit(&c);
        drop(l);
        self.wake_cseq_sleepers_after_unlock();
        Ok(())
    }

    /// Waits until every item put has been marked done; false on timeout.
    pub(crate) fn join(&self, deadline: Deadline) -> bool {
        let ctl = self.ctl();
        let mut slice = FIRST_SLICE;
        loop {
            let (seen, c) = self.c_snapshot();
            let (_, p) = self.p_snapshot();
            if p.puts <= c.done {
                return true;
            }
            if !self.sleep(&ctl.c.joiners, &ctl.c.seq, seen, deadline, &mut slice) {
                return false;
            }
        }
    }

    // ----- waiting -----

    /// Sleeps on `word` while it still equals `seen`, counted in `sleepers`, for at most one
    /// slice; false when the deadline has passed.
    pub(super) fn sleep(
        &self,
        sleepers: &AtomicU32,
        word: &AtomicU32,
        seen: u32,
        deadline: Deadline,
        slice: &mut Duration,
    ) -> bool {
        let Ok(remaining) = deadline.remaining() else {
            return false;
        };
        let t = remaining.map_or(*slice, |r| r.min(*slice));
        sleepers.fetch_add(1, Ordering::SeqCst);
        if word.load(Ordering::SeqCst) == seen
            && futex::wait(word, seen, Some(t)) == futex::Wake::TimedOut
        {
            *slice = (*slice * 2).min(MAX_SLICE);
        }
        sleepers.fetch_sub(1, Ordering::SeqCst);
        // One more look even when the deadline has just passed: the caller re-checks.
        true
    }

    /// After a producers' commit and the unlock of `pmutex`: wakes getters if any sleep,
    /// and rings the readiness bell if the queue is watched (`ready.rs`; the same load).
    #[inline]
    pub(super) fn wake_getters(&self) {
        let p = &self.ctl().p;
        fence_after_unlock();
        let getters = p.getters.load(Ordering::Relaxed);
        if getters > 0 {
            self.wake_getters_slow(getters);
        }
    }

    #[cold]
    fn wake_getters_slow(&self, getters: u32) {
        if getters & !WATCHED != 0 {
            futex::wake_all(&self.ctl().p.seq);
        }
        if getters & WATCHED != 0 {
            self.ring_bell_once();
        }
    }

    /// After a consumers' commit: wakes putters and joiners if any sleep.
    pub(super) fn wake_cseq_sleepers(&self) {
        fence(Ordering::SeqCst);
        self.wake_cseq_sleepers_fenced();
    }

    /// As [`wake_cseq_sleepers`](Self::wake_cseq_sleepers), right after unlocking `cmutex`.
    #[inline]
    pub(super) fn wake_cseq_sleepers_after_unlock(&self) {
        fence_after_unlock();
        self.wake_cseq_sleepers_fenced();
    }

    #[inline]
    pub(super) fn wake_cseq_sleepers_fenced(&self) {
        let c = &self.ctl().c;
        let putters = c.putters.load(Ordering::Relaxed);
        let joiners = c.joiners.load(Ordering::Relaxed);
        // The `WATCHED` bit (`ready.rs`) is no sleeper.
        if putters & !WATCHED != 0 || joiners > 0 {
            futex::wake_all(&c.seq);
        }
    }

    pub(super) fn wake_all_sleepers(&self) {
        let ctl = self.ctl();
        futex::wake_all(&ctl.p.seq);
        futex::wake_all(&ctl.c.seq);
    }

    pub(super) fn too_large(&self, len: usize) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {len} bytes is larger than this queue can hold (at most {} bytes \
                 per message in a ring of {} bytes); create the queue with \
                 Queue::builder().capacity_bytes(n) for a larger ring",
                self.max_payload(),
                self.geo.cap
            ),
        )
    }
}
