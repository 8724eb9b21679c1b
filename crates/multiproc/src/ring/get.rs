//! Get: reading committed frames and committing the consumers' slot, giving pages back.

use super::*;

impl SharedQueue {
    // ----- get -----

    /// Takes the next frame if the common case allows (the mutex free, no discard step left
    /// over, a frame there by this handle's hint or one look at the producers' state),
    /// handing it to `sink` (as [`take_frames`](Self::take_frames) with `max` 1, the same
    /// shared-memory accesses in the same order); anything else (an empty queue, waiting,
    /// a skip header, damage) goes through `take_frames`.
    #[inline(always)]
    pub(crate) fn take_one<R>(
        &self,
        wait: Wait,
        sink: impl FnOnce(FrameRef<'_>) -> Result<R>,
    ) -> std::result::Result<R, GetStop> {
        let m = &self.ctl().cmutex.0;
        if m.try_lock_free() {
            let l = Locked(m);
            let mut c = self.c_state();
            if c.punch_to == 0 {
                if let Some((tail, payload, len, next, typed)) = self.front_by_hint(&c) {
                    let r = sink(FrameRef {
                        q: self,
                        at: payload as usize,
                        len: len as usize,
                        typed,
                    });
                    // Consumed either way: a frame that does not decode is reported once.
                    c.head = next;
                    c.gets += 1;
                    self.commit_taken(&mut c, tail);
                    drop(l);
                    self.wake_cseq_sleepers_after_unlock();
                    self.hints.flowing.store(true, Ordering::Relaxed);
                    return r.map_err(GetStop::Failed);
                }
            }
            drop(l);
        }
        let mut sink = Some(sink);
        let mut out = None;
        self.take_frames(1, wait, |_, f| {
            if let Some(s) = sink.take() {
                out = Some(s(f)?);
            }
            Ok(())
        })?;
        Ok(out.expect("a get that returned Ok took one frame"))
    }

    /// The frame at `c.head` as `(tail, payload, len, next, typed)` when there is one, looking at
    /// the producers' state only if the hint shows none. `None` for anything
    /// [`take_frames`](Self::take_frames) must handle (empty, a skip, damage). Holds `cmutex`.
    #[inline(always)]
    pub(super) fn front_by_hint(&self, c: &CState) -> Option<(u64, u64, u64, u64, bool)> {
        let mut tail = self.hints.tail.load(Ordering::Relaxed);
        if c.head >= tail || tail - c.head > self.geo.cap {
            let (_, p) = self.p_snapshot();
            tail = p.tail;
            self.hints.tail.store(tail, Ordering::Relaxed);
            if c.head == tail || self.geo.validate(c.reclaimed, c.head, tail).is_err() {
                return None;
            }
        }
        let word = self.header(self.geo.phys(c.head)).load(Ordering::Relaxed);
        match geometry::front(&self.geo, c.head, tail, word) {
            Ok(Front::Frame {
                payload,
                len,
                next,
                typed,
            }) => Some((tail, payload, len, next, typed)),
            _ => None,
        }
    }

    /// Commits frames taken up to `c.head` (producers' `tail` as last seen), giving their
    /// bytes back to producers (discarding pages first when [`geometry::reclaim`] says so). Holds
    /// `cmutex`.
    #[inline(always)]
    pub(super) fn commit_taken(&self, c: &mut CState, tail: u64) {
        let emptied = c.head == tail;
        let (r, discards) = geometry::reclaim(&self.geo, c.reclaimed, c.head, emptied);
        if discards.iter().any(Option::is_some) {
            self.discard_taken(c, r);
        }
        c.reclaimed = r;
        self.c_commit(c);
    }

    /// The first step of giving taken bytes back when their pages are to be discarded:
    /// commit `punch_to`, then discard (see "Commit protocol"). Holds `cmutex`.
    #[cold]
    pub(super) fn discard_taken(&self, c: &mut CState, to: u64) {
        c.punch_to = to;
        self.c_commit(c);
        self.punch(c.reclaimed, to);
        c.punch_to = 0;
    }

    /// Takes up to `max` frames (at least one, waiting as `wait` allows), handing each to
    /// `sink` under the consumer mutex. A sink error on the first frame consumes it and is
    /// returned; on a later frame the batch ends before it (it stays queued). Returns frames
    /// taken.
    pub(crate) fn take_frames(
        &self,
        max: usize,
        wait: Wait,
        mut sink: impl FnMut(usize, FrameRef<'_>) -> Result<()>,
    ) -> std::result::Result<usize, GetStop> {
        let ctl = self.ctl();
        let mut deadline = Lazy::new(wait);
        let mut slice = FIRST_SLICE;
        let mut slept = false;
        loop {
            let l = match self.lock(&ctl.cmutex.0, &mut deadline) {
                Ok(l) => l,
                Err(LockFail::Timeout) => {
                    if slept {
                        self.pass_on_wake();
                    }
                    return Err(GetStop::Timeout);
                }
                Err(LockFail::Reentrant) => return Err(GetStop::Failed(reentrant_error())),
            };
            let mut c = self.c_state();
            // Finishing a killed consumer's discard step is a commit that gives producers
            // room: wake them even if this get takes nothing.
            let finished_punch = c.punch_to != 0;
            if let Err(why) = if finished_punch {
                self.finish_punch(&mut c)
            } else {
                Ok(())
            } {
                drop(l);
                return Err(GetStop::Failed(self.repair(why)));
            }
            let start = c;
            let mut tail = self.hints.tail.load(Ordering::Relaxed);
            let mut seen_p = None;
            let mut closed = false;
            let mut n = 0;
            let mut failure = None;
            let mut corrupt = None;
            while n < max.max(1) {
                if c.head >= tail || tail - c.head > self.geo.cap {
                    if seen_p.is_some() {
                        break; // looked once already
                    }
                    let (s, p) = self.p_snapshot();
                    seen_p = Some(s);
                    closed = p.closed;
                    tail = p.tail;
                    self.hints.tail.store(tail, Ordering::Relaxed);
                    if let Err(why) = self.geo.validate(c.reclaimed, c.head, tail) {
                        corrupt = Some(why);
                        break;
                    }
                    if c.head == tail {
                        break;
                    }
                }
                let word = self.header(self.geo.phys(c.head)).load(Ordering::Relaxed);
                match geometry::front(&self.geo, c.head, tail, word) {
                    Ok(Front::Skip { next }) => c.head = next,
                    Ok(Front::Frame {
                        payload,
                        len,
                        next,
                        typed,
                    }) => {
                        let frame = FrameRef {
                            q: self,
                            at: payload as usize,
                            len: len as usize,
                            typed,
                        };
                        if let Err(e) = sink(n, frame) {
                            if n > 0 {
                                break; // it stays queued; the next get reports it
                            }
                            failure = Some(e);
                        }
                        c.head = next;
                        c.gets += 1;
                        n += 1;
                        if failure.is_some() {
                            break;
                        }
                    }
                    Err(why) => {
                        corrupt = Some(why);
                        break;
                    }
                }
            }
            if corrupt.is_some() && n > 0 {
                corrupt = None; // commit the good part; the next get reports the rest
            }
            if let Some(why) = corrupt {
                drop(l);
                return Err(GetStop::Failed(self.repair(why)));
            }
            if c.head != start.head {
                self.commit_taken(&mut c, tail);
            }
            drop(l);
            if c.head != start.head || finished_punch {
                self.wake_cseq_sleepers_after_unlock();
            }
            if n > 0 {
                return match failure {
                    Some(e) => Err(GetStop::Failed(e)),
                    None => Ok(n),
                };
            }
            if closed {
                return Err(GetStop::Closed);
            }
            if let Wait::No = wait {
                self.found_empty();
                return Err(GetStop::Empty);
            }
            let seen = seen_p.expect("an empty get looked at the producers");
            let dl = deadline.get();
            if self.hints.flowing.swap(false, Ordering::Relaxed) {
                crate::sys::futex::pause_for(GET_BACKOFF, dl);
            }
            let key = &ctl.p.seq as *const AtomicU32 as usize;
            if long_slept_last(key) || !Self::spin_for(&ctl.p.seq, seen, &ctl.cmutex.1, dl) {
                let start = std::time::Instant::now();
                if !self.sleep(&ctl.p.getters, &ctl.p.seq, seen, dl, &mut slice) {
                    self.found_empty();
                    return Err(GetStop::Timeout);
                }
                // Only a lone getter's: with other getters asleep beside it, it is one of
                // many consumers, whose long sleeps say nothing about a trickle.
                let lone = !self.getters_asleep();
                record_sleep(
                    key,
                    if lone {
                        start.elapsed()
                    } else {
                        Duration::ZERO
                    },
                );
                slept = true;
            }
        }
    }
}

/// A sleep of a getter longer than this (a wait for a trickle, not for a stream that paused)
/// makes its next wait on that queue sleep at once ([`long_slept_last`]).
const LONG_SLEEP: Duration = Duration::from_micros(50);

thread_local! {
    /// The queue (the address of its producers' commit counter) on which this thread's last
    /// sleep as a getter lasted longer than [`LONG_SLEEP`]; 0 when it did not.
    static LONG_SLEPT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// True when this thread's last sleep as a getter of the queue `key` was long, with no other
/// getter asleep when it woke: its next wait there sleeps without spinning first (issue 18,
/// sixth session).
///
/// Why: a consumer fed a trickle (a message every 100 us or more) found nothing in any spin,
/// yet spun its short spin and its learned budget's 2 us floor before every sleep. Measured
/// (2-CPU AMD EPYC VM, Linux 6.18, the bench's trickle at 10,000 messages a second, five
/// alternated rounds): the consumer ran on its producer's CPU for nearly every message, and a
/// consumer that used more CPU than its producer (9.5 us a message, the producer about 5) no
/// longer preempted the producer when woken (the scheduler's fairness): it waited until the
/// producer slept again, 13-14 us after the send where a bare futex wake took 4.5-7.7 us.
/// Sleeping at once after a long sleep: 5.3-5.6 us of CPU and 6.3-7.3 us of latency a
/// message. A stream loses nothing: a consumer that catches up with it sleeps briefly (its
/// producer's next put comes within microseconds), and after a short sleep it spins again.
/// Only a lone getter's sleeps count: one of many consumers sleeps long while the others
/// take the messages, and a first version that counted those made `queue 4->4` and `32->32`
/// look slower in three alternated rounds (within this VM's 2x spread when repeated; the
/// lone rule: 4->4 medians 13.0, 12.4, 10.3, 13.2 M msg/s against 14.3, 14.4, 7.8, 13.0,
/// 32->32 5.5, 6.7, 7.2, 6.8 against 8.9, 5.1, 4.9, 8.1). (Queue waits keep their spin's
/// floor otherwise: see `sys/futex.rs`, `spin_until_changed_after`.)
fn long_slept_last(key: usize) -> bool {
    LONG_SLEPT.try_with(|c| c.get() == key).unwrap_or(false)
}

/// Records how long this thread's sleep as a getter of the queue `key` lasted.
fn record_sleep(key: usize, slept: Duration) {
    let _ = LONG_SLEPT.try_with(|c| c.set(if slept > LONG_SLEEP { key } else { 0 }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_sleep_makes_the_next_wait_on_that_queue_sleep_at_once() {
        let (a, b) = (0x1000, 0x2000);
        record_sleep(a, Duration::from_micros(10));
        assert!(!long_slept_last(a), "a short sleep: spin first next time");
        record_sleep(a, Duration::from_micros(500));
        assert!(long_slept_last(a));
        assert!(!long_slept_last(b), "another queue spins first");
        record_sleep(b, Duration::from_micros(5));
        assert!(!long_slept_last(a), "the last sleep, on b, was short");
    }
}
