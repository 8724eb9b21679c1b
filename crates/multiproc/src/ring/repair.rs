//! Repair after corruption: what a handle does when shared memory says something impossible.

use super::*;

impl SharedQueue {
    // ----- corruption -----

    /// Resets the ring to empty (keeping the counts consistent) under both mutexes; returns
    /// the error to report. Called with neither mutex held.
    #[cold]
    pub(super) fn repair(&self, why: Corrupt) -> Error {
        let ctl = self.ctl();
        let pl = self.lock_forever(&ctl.pmutex.0);
        let cl = self.lock_forever(&ctl.cmutex.0);
        let mut p = self.p_state();
        let mut c = self.c_state();
        let lost = p.puts.saturating_sub(c.gets);
        if self.geo.validate(c.reclaimed, c.head, p.tail).is_err() || c.punch_to != 0 {
            // Move everything forward to one aligned position (positions only grow, so the
            // other handles' hints stay lower bounds when possible).
            let base = [p.tail, c.head, c.reclaimed]
                .into_iter()
                .filter(|&v| v <= u64::MAX / 2)
                .max()
                .unwrap_or(0)
                .next_multiple_of(8);
            p.tail = base;
            c.head = base;
            c.reclaimed = base;
            c.punch_to = 0;
        } else {
            c.head = p.tail;
            c.reclaimed = p.tail;
        }
        if c.gets > p.puts {
            p.puts = c.gets;
        }
        c.gets = p.puts;
        c.done = c.done.min(c.gets);
        self.p_commit(&p);
        self.c_commit(&c);
        self.hints.tail.store(p.tail, Ordering::Relaxed);
        self.hints.reclaimed.store(c.reclaimed, Ordering::Relaxed);
        self.hints.gets.store(c.gets, Ordering::Relaxed);
        drop(cl);
        drop(pl);
        self.wake_all_sleepers();
        Error::new(
            ErrorKind::InvalidState,
            format!(
                "queue shared memory was corrupted ({}); its {lost} queued messages were \
                 discarded and the queue was reset",
                why.0
            ),
        )
    }
}
