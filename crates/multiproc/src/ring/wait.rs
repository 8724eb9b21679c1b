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

    /// Sleeps while `word` (the other side's commit counter) still equals `seen`, registered
    /// in `sleepers` and sleeping on that word (see [`Sleepers`]), for at most one slice;
    /// false when the deadline has passed.
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
        let Some(mut cur) = Sleepers::register(sleepers) else {
            // Too many sleepers to count: this one looks again soon instead.
            std::thread::sleep(t.min(UNCOUNTED_SLICE));
            return true;
        };
        let epoch = cur & EPOCH_MASK;
        if word.load(Ordering::SeqCst) == seen {
            let until = std::time::Instant::now() + t;
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    *slice = (*slice * 2).min(MAX_SLICE);
                    break;
                }
                let how = futex::wait(sleepers, cur, Some(left));
                if how == futex::Wake::TimedOut {
                    *slice = (*slice * 2).min(MAX_SLICE);
                    break;
                }
                // Claimed (a wake-up for us) when the epoch moved (a claim of all), or when
                // a `futex_wake` woke us in the same epoch (a claim of some: the waker
                // counted us out already). A signal or a moved word (another sleeper came
                // or went, or a claim of some changed the count) is no claim.
                cur = sleepers.load(Ordering::Acquire);
                if cur & EPOCH_MASK != epoch {
                    break;
                }
                if how == futex::Wake::Woken {
                    return true;
                }
                if word.load(Ordering::SeqCst) != seen {
                    break;
                }
            }
        }
        Sleepers::deregister(sleepers, epoch);
        // One more look even when the deadline has just passed: the caller re-checks.
        true
    }

    /// Spins until `word` moves past `seen`: a short fixed spin ([`SHORT_SPIN`]) by anyone,
    /// then the learned spin (`sys/futex.rs`) by one waiter of this side at a time, the one
    /// that holds the side's spinner `slot`; the others go to sleep at once. True when the
    /// word moved.
    ///
    /// Why (issue 18): with more waiters than cores, every waiting consumer spun on the same
    /// word, taking the CPUs the producers needed. Measured (2-core VM, a quiet A/B of
    /// `queue 32->32 64 B, bounded(1000)`, perf): 27% of all CPU time was in
    /// `spin_until_changed`, and a spin that saw the word move counted as "worth it" even when
    /// another consumer then took the message. One spinner per side keeps the wake-up of a
    /// stream cheap (the spinner catches it) without the herd.
    ///
    /// The slot holds the coarse clock (ms) at which it was taken: a spinner killed while
    /// holding it blocks nobody for longer than [`SPIN_SLOT_STALE_MS`].
    #[inline]
    pub(super) fn spin_for(
        word: &AtomicU32,
        seen: u32,
        slot: &AtomicU32,
        deadline: Deadline,
    ) -> bool {
        if crate::sys::futex::spin_until_advanced(word, seen, 1, SHORT_SPIN, deadline) {
            return true;
        }
        let now = (crate::sys::coarse_millis() as u32) | 1;
        let cur = slot.load(Ordering::Relaxed);
        if (cur != 0 && now.wrapping_sub(cur) <= SPIN_SLOT_STALE_MS)
            || slot
                .compare_exchange(cur, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // (The short spin counts against the learned budget: a lone waiter, a trickle's
        // consumer, spins its learned budget in all, not 2 us more: measured, a first
        // version that spun both raised its CPU per message from 7.4 to 10.6 us.)
        // (`SHORT_SPIN` is what the short spin took: it looks until that much has passed.)
        let found = crate::sys::futex::spin_until_changed_after(word, seen, SHORT_SPIN, deadline);
        slot.store(0, Ordering::Relaxed);
        found
    }

    /// After a producers' commit of `n` messages and the unlock of `pmutex`: wakes up to `n`
    /// getters if any sleep ([`Sleepers::wake_up_to`]), and rings the readiness bell if the
    /// queue is watched (`ready.rs`; the same load).
    #[inline]
    pub(super) fn wake_getters(&self, n: usize) {
        let p = &self.ctl().p;
        fence_after_unlock();
        let getters = p.getters.load(Ordering::Relaxed);
        if getters & (COUNT_MASK | WATCHED) != 0 {
            self.wake_getters_slow(getters, n.min(COUNT_MASK as usize) as u32);
        }
    }

    #[cold]
    fn wake_getters_slow(&self, getters: u32, n: u32) {
        if getters & COUNT_MASK != 0 {
            Sleepers::wake_up_to(&self.ctl().p.getters, n);
        }
        if getters & WATCHED != 0 {
            self.ring_bell_once();
        }
    }

    /// For a getter that slept and then leaves on its deadline before it could look (the
    /// consumer mutex was busy): it may have been woken for a message (a claim of some,
    /// [`Sleepers::wake_up_to`]) that another sleeper would then not be woken for, so when
    /// messages are queued it wakes one getter in its place.
    #[cold]
    pub(super) fn pass_on_wake(&self) {
        let (_, p) = self.p_snapshot();
        let (_, c) = self.c_snapshot();
        if p.puts > c.gets {
            fence(Ordering::SeqCst);
            Sleepers::wake_up_to(&self.ctl().p.getters, 1);
        }
    }

    /// True when getters are counted asleep (a hint: it may change at once).
    pub(super) fn getters_asleep(&self) -> bool {
        self.ctl().p.getters.load(Ordering::Relaxed) & COUNT_MASK != 0
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
        // (The `WATCHED` bit of `putters`, `ready.rs`, is no sleeper: a claim leaves it.)
        if Sleepers::claim(&c.putters) {
            futex::wake_all(&c.putters);
        }
        if Sleepers::claim(&c.joiners) {
            futex::wake_all(&c.joiners);
        }
    }

    /// For a taker that waits by its own protocol (a pipe's receiver, `pipe/recv.rs`, which
    /// holds its own receive lock and takes with `Wait::No`): sleeps as a getter while the
    /// ring is empty, at most `max` and not past `deadline`. A producer's commit wakes it
    /// (its `wake_getters`), as does [`wake_sleeping_getters`](Self::wake_sleeping_getters).
    /// True when the producers committed since the ring was seen empty (look again); false
    /// when the time ran out or the sleep ended for another reason.
    pub(crate) fn sleep_while_empty(&self, max: Duration, deadline: Deadline) -> bool {
        let ctl = self.ctl();
        let (seen, p) = self.p_snapshot();
        let (_, c) = self.c_snapshot();
        if p.puts > c.gets || p.closed {
            return true;
        }
        let mut slice = max;
        self.sleep(&ctl.p.getters, &ctl.p.seq, seen, deadline, &mut slice);
        ctl.p.seq.load(Ordering::Acquire) != seen
    }

    /// Wakes the getters that sleep ([`sleep_while_empty`](Self::sleep_while_empty)) without
    /// a commit, so that they look elsewhere (a pipe end closing: its peer looks at the
    /// socket). One load when none sleeps.
    pub(crate) fn wake_sleeping_getters(&self) {
        let p = &self.ctl().p;
        if Sleepers::claim(&p.getters) {
            futex::wake_all(&p.getters);
        }
    }

    /// Wakes every sleeper of both sides (after a close: its commits come first).
    pub(super) fn wake_all_sleepers(&self) {
        let ctl = self.ctl();
        fence(Ordering::SeqCst);
        for w in [&ctl.p.getters, &ctl.c.putters, &ctl.c.joiners] {
            Sleepers::claim(w);
            futex::wake_all(w);
        }
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

/// A sleeper count that a waker empties when it wakes them (issue 18): one futex wake per
/// sleep, not one per commit. The count's word is also the futex word its sleepers sleep on.
///
/// The word holds an epoch (bits 16 to 30) and a count of registered sleepers (bits 0 to
/// 14); the other bits are left as they are (bit 31 is a queue's readiness flag). A sleeper registers (count + 1), then looks at the other side's
/// commit counter one last time, then sleeps on this word while it holds the value it
/// registered (any change of the count alone makes it sleep again; a change of epoch ends
/// the sleep); after the sleep it deregisters (count - 1) only if the epoch is still the one
/// it registered in. A waker that finds a count claims it: one compare-and-swap moves to
/// the next epoch with a count of zero, and only the claimer calls `futex_wake`. The commits
/// after it find no one counted and make no system call until someone sleeps again.
///
/// Why the sleepers sleep on this word and not on the commit counter: a sleeper registers
/// after it saw a commit, and the waker of that very commit may claim the registration
/// before the sleeper sleeps. On the commit counter, the sleeper would then sleep (the
/// counter still holds the value it saw) uncounted, and the next commit would not wake it;
/// the model found that interleaving. On this word, the claim changed the value it sleeps
/// on, so it looks again and registers anew.
///
/// A waker of getters after a commit of `n` messages claims only `n` of the sleepers when
/// more are counted ([`Sleepers::wake_up_to`]): the count falls by `n`, the epoch stays, and
/// `futex_wake(n)` wakes `n` of them, each of which sees a wake-up in its own epoch and
/// leaves without counting itself out. Waking every getter for one message sent all but one
/// back to sleep, a herd of wake-ups and context switches for nothing. A
/// woken getter always looks once more, so a message it was woken for is taken by it or by
/// another getter that was awake; one that leaves on its deadline before it could look
/// wakes another in its place ([`SharedQueue::pass_on_wake`]); one killed after its
/// wake-up leaves the message to the next commit or to a sleeper's slice (at most
/// [`MAX_SLICE`]).
///
/// Before, the count fell only when a woken sleeper ran again, so every commit until then
/// made a `futex_wake` system call: measured in the issue, 4->4 and 32->32 queues lost 6-14x
/// of their throughput as soon as waiters slept instead of yielding. A sleeper killed while
/// registered leaves its count until the next waker claims it (one wasted wake, instead of
/// one per commit forever). Lost wake-ups are excluded as before (a Dekker pair on `SeqCst`
/// operations: the sleeper's registration then its look at the commit counter, against the
/// waker's commit then its look at the count), and the model (`model.rs`) checks the
/// protocol.
pub(super) struct Sleepers;

/// How long any waiter spins before it needs its side's spinner slot ([`SharedQueue::spin_for`]).
const SHORT_SPIN: Duration = Duration::from_micros(2);

/// A spinner slot taken longer ago than this (coarse clock, ms) is free: its holder died (a
/// spin lasts at most `futex::SPIN_MAX`, 200 us).
const SPIN_SLOT_STALE_MS: u32 = 3;

const COUNT_MASK: u32 = 0x7fff;
const EPOCH_MASK: u32 = 0x7fff_0000;
const EPOCH_ONE: u32 = 1 << 16;

/// How long a sleeper that could not be counted (32,767 others are) sleeps at most.
const UNCOUNTED_SLICE: Duration = Duration::from_millis(1);

impl Sleepers {
    /// Counts a sleeper in; the word's value after it (to sleep on), or `None` when the
    /// count is full.
    pub(super) fn register(w: &AtomicU32) -> Option<u32> {
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & COUNT_MASK == COUNT_MASK {
                return None;
            }
            match w.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return Some(cur + 1),
                Err(c) => cur = c,
            }
        }
    }

    /// Counts a sleeper out, unless a waker claimed its epoch meanwhile.
    pub(super) fn deregister(w: &AtomicU32, epoch: u32) {
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & EPOCH_MASK != epoch || cur & COUNT_MASK == 0 {
                return;
            }
            match w.compare_exchange_weak(cur, cur - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(c) => cur = c,
            }
        }
    }

    /// True when sleepers were counted and this call claimed them all (then it must wake
    /// them all). Called after the commit and a full fence.
    #[inline]
    pub(super) fn claim(w: &AtomicU32) -> bool {
        Self::claim_up_to(w, COUNT_MASK) == Claim::All
    }

    /// Claims `n` of the counted sleepers (the count falls by `n`, the epoch stays), or all of
    /// them when they are no more than `n` (the next epoch, no count). Called after the commit
    /// and a full fence.
    pub(super) fn claim_up_to(w: &AtomicU32, n: u32) -> Claim {
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            let count = cur & COUNT_MASK;
            if count == 0 || n == 0 {
                return Claim::None;
            }
            let (next, claim) = if n < count {
                (cur - n, Claim::Some(n))
            } else {
                (Self::next_epoch(cur), Claim::All)
            };
            match w.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return claim,
                Err(c) => cur = c,
            }
        }
    }

    /// The next epoch (wrapping within its bits), no count; other bits kept.
    fn next_epoch(cur: u32) -> u32 {
        let epoch = (cur & EPOCH_MASK).wrapping_add(EPOCH_ONE) & EPOCH_MASK;
        (cur & !(EPOCH_MASK | COUNT_MASK)) | epoch
    }

    /// Claims and wakes up to `n` sleepers (after the commit of `n` messages and a full
    /// fence): one `futex_wake` when some are counted, none otherwise.
    ///
    /// A claim of some wakes `n` sleepers of the futex; each of them sees its epoch unchanged
    /// and a wake-up, and leaves without counting itself out (the claim did). When the kernel
    /// had fewer than `n` asleep (the others counted were still on their way to sleep, or
    /// leaving), the wake-ups it did not deliver would leave the count lower than the
    /// sleepers it stands for: then this moves to the next epoch anyway and wakes all, which
    /// is the claim of all (every sleeper of the old epoch looks again and registers anew).
    pub(super) fn wake_up_to(w: &AtomicU32, n: u32) {
        match Self::claim_up_to(w, n) {
            Claim::None => {}
            Claim::All => {
                futex::wake_all(w);
            }
            Claim::Some(k) => {
                if futex::wake(w, k) < k as usize {
                    let next = |cur| Some(Self::next_epoch(cur));
                    let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, next);
                    futex::wake_all(w);
                }
            }
        }
    }
}

/// What [`Sleepers::claim_up_to`] claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// No sleeper was counted: nothing to wake.
    None,
    /// All of them: the next epoch; wake them all.
    All,
    /// This many, out of more: wake this many.
    Some(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_empties_the_count_and_late_deregistrations_are_ignored() {
        let w = AtomicU32::new(0);
        let a = Sleepers::register(&w).unwrap() & EPOCH_MASK;
        let b = Sleepers::register(&w).unwrap() & EPOCH_MASK;
        assert_eq!(w.load(Ordering::Relaxed) & COUNT_MASK, 2);
        assert!(
            Sleepers::claim(&w),
            "two sleepers: the first waker claims them"
        );
        assert!(!Sleepers::claim(&w), "the next finds none: no system call");
        // The woken sleepers count themselves out of an epoch that is gone: nothing changes.
        Sleepers::deregister(&w, a);
        Sleepers::deregister(&w, b);
        assert_eq!(w.load(Ordering::Relaxed), EPOCH_ONE);
        // A sleeper of the new epoch that timed out counts itself out.
        let c = Sleepers::register(&w).unwrap();
        assert_eq!(
            c,
            EPOCH_ONE + 1,
            "the value it sleeps on: new epoch, one sleeper"
        );
        Sleepers::deregister(&w, c & EPOCH_MASK);
        assert_eq!(w.load(Ordering::Relaxed), EPOCH_ONE);
        assert!(!Sleepers::claim(&w));
    }

    #[test]
    fn a_claim_of_some_lowers_the_count_in_the_same_epoch() {
        let w = AtomicU32::new(0);
        for _ in 0..3 {
            Sleepers::register(&w).unwrap();
        }
        assert_eq!(Sleepers::claim_up_to(&w, 1), Claim::Some(1));
        assert_eq!(w.load(Ordering::Relaxed), 2, "epoch kept, one counted out");
        // As many as are counted, or more: a claim of all.
        assert_eq!(Sleepers::claim_up_to(&w, 2), Claim::All);
        assert_eq!(w.load(Ordering::Relaxed), EPOCH_ONE);
        assert_eq!(Sleepers::claim_up_to(&w, 5), Claim::None);
        assert_eq!(Sleepers::claim_up_to(&w, 0), Claim::None);
    }

    #[test]
    fn a_wake_of_some_that_finds_none_asleep_moves_to_the_next_epoch() {
        // Two counted, none asleep in the kernel (still on their way): `futex_wake(1)` wakes
        // nobody, so the claim of one would leave the count short; the next epoch instead.
        let w = AtomicU32::new(0);
        Sleepers::register(&w).unwrap();
        Sleepers::register(&w).unwrap();
        Sleepers::wake_up_to(&w, 1);
        assert_eq!(w.load(Ordering::Relaxed), EPOCH_ONE);
    }

    #[test]
    fn a_wake_of_some_wakes_that_many_sleepers() {
        use std::sync::Arc;
        let w = Arc::new(AtomicU32::new(0));
        let woken = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (w, woken) = (w.clone(), woken.clone());
                std::thread::spawn(move || {
                    let cur = Sleepers::register(&w).unwrap();
                    let epoch = cur & EPOCH_MASK;
                    let mut cur = cur;
                    // As `SharedQueue::sleep`: a count that moves is no claim.
                    loop {
                        let how = futex::wait(&w, cur, Some(Duration::from_secs(10)));
                        cur = w.load(Ordering::Acquire);
                        if cur & EPOCH_MASK != epoch || how == futex::Wake::Woken {
                            break;
                        }
                        assert_ne!(how, futex::Wake::TimedOut, "never woken");
                    }
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while w.load(Ordering::SeqCst) & COUNT_MASK != 3 {
            assert!(
                std::time::Instant::now() < until,
                "sleepers never registered"
            );
            std::thread::yield_now();
        }
        // Give them time to reach the kernel: then one wake-up for one sleeper. (If one is
        // late, the wake-up falls back to waking all, which the assertions below allow.)
        std::thread::sleep(Duration::from_millis(100));
        Sleepers::wake_up_to(&w, 1);
        std::thread::sleep(Duration::from_millis(100));
        let after_one = woken.load(Ordering::SeqCst);
        assert!(after_one >= 1, "a wake of one woke nobody");
        if after_one == 1 {
            assert_eq!(
                w.load(Ordering::Relaxed),
                2,
                "the woken one was counted out"
            );
        }
        Sleepers::wake_up_to(&w, 5);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 3);
        assert_eq!(w.load(Ordering::Relaxed) & COUNT_MASK, 0);
    }

    #[test]
    fn a_full_count_registers_no_more_and_epochs_wrap() {
        let w = AtomicU32::new(COUNT_MASK);
        assert_eq!(Sleepers::register(&w), None);
        let w = AtomicU32::new(EPOCH_MASK | 3);
        assert!(Sleepers::claim(&w));
        assert_eq!(w.load(Ordering::Relaxed), 0);
        // Bits outside the epoch and the count are kept.
        let w = AtomicU32::new((1 << 31) | EPOCH_ONE | 2);
        assert!(Sleepers::claim(&w));
        assert_eq!(w.load(Ordering::Relaxed), (1 << 31) | (2 * EPOCH_ONE));
        // Garbage in the reserved bit (another process wrote it) does not break counting.
        let w = AtomicU32::new(0x8000 | 1);
        assert!(Sleepers::claim(&w));
        assert_eq!(w.load(Ordering::Relaxed) & COUNT_MASK, 0);
    }
}
