//! Put: placing frames in free ring bytes and committing the producers' slot.

use super::*;

impl SharedQueue {
    // ----- put -----

    /// Refreshes the producer's hints from the consumers' state; returns the `cseq` seen.
    /// Finishes a consumer's half-done discard step if no consumer is busy.
    pub(super) fn refresh_consumer_hints(&self) -> u32 {
        let (mut seq, mut c) = self.c_snapshot();
        if c.punch_to != 0 {
            let m = &self.ctl().cmutex.0;
            if m.try_lock().is_some() {
                let l = Locked(m);
                let mut cur = self.c_state();
                if self.finish_punch(&mut cur).is_ok() {
                    self.wake_cseq_sleepers();
                }
                drop(l);
                (seq, c) = self.c_snapshot();
            }
        }
        self.hints.reclaimed.store(c.reclaimed, Ordering::Relaxed);
        self.hints.gets.store(c.gets, Ordering::Relaxed);
        seq
    }

    /// Puts one payload of `len` bytes, written in place by `write` (as
    /// [`put_frames_with`](Self::put_frames_with) with one payload). The common case (the
    /// mutex free, room by this handle's hints, no skip header, no stale wrap hint) runs as
    /// straight-line code, with the same shared-memory accesses in the same order as the
    /// general path takes for it (so the model of that path covers it); anything else
    /// (waiting, a full or closed queue, refreshing hints) goes through the general path.
    #[inline(always)]
    pub(crate) fn put_one_with(
        &self,
        len: usize,
        typed: bool,
        write: impl FnOnce(&mut [u8]) -> Result<()>,
        wait: Wait,
    ) -> std::result::Result<(), PutStop> {
        let m = &self.ctl().pmutex.0;
        if len as u64 <= self.max_payload() && m.try_lock_free() {
            let l = Locked(m);
            let mut st = self.p_state();
            if let Some(p) = self.place_by_hints(&st, geometry::frame_len(len as u64)) {
                let r = self.write_frame(self.geo.phys(p.at), len, typed, write);
                if r.is_ok() {
                    st.tail = p.tail;
                    st.puts += 1;
                    self.p_commit(&st);
                }
                drop(l);
                return match r {
                    Ok(()) => {
                        self.wake_getters(1);
                        Ok(())
                    }
                    Err(e) => Err(PutStop::Failed(e)),
                };
            }
            drop(l);
        }
        let mut write = Some(write);
        self.put_frames_with(
            1,
            typed,
            |_| len,
            |_, dst| write.take().map_or(Ok(()), |w| w(dst)),
            wait,
        )
        .map_err(|(_, s)| s)
    }

    /// Puts the payloads (`typed` or raw frames) in order, waiting for room as `wait` allows. Returns how many
    /// went in, with the reason it stopped early.
    pub(crate) fn put_frames(
        &self,
        payloads: &[&[u8]],
        typed: bool,
        wait: Wait,
    ) -> std::result::Result<(), (usize, PutStop)> {
        self.put_frames_with(
            payloads.len(),
            typed,
            |i| payloads[i].len(),
            |i, dst| {
                dst.copy_from_slice(payloads[i]);
                Ok(())
            },
            wait,
        )
    }

    /// Puts `n` payloads in order (`typed` or raw frames), payload `i` of `len(i)` bytes
    /// written in place into the ring by `write(i, dst)` (`dst.len() == len(i)`) under the
    /// producer mutex. A `write`
    /// error stops the batch before that payload (nothing of it is committed) and is
    /// returned as `Failed`. Otherwise as [`put_frames`](Self::put_frames).
    pub(crate) fn put_frames_with(
        &self,
        n: usize,
        typed: bool,
        len: impl Fn(usize) -> usize,
        mut write: impl FnMut(usize, &mut [u8]) -> Result<()>,
        wait: Wait,
    ) -> std::result::Result<(), (usize, PutStop)> {
        let max = self.max_payload();
        if let Some(l) = (0..n).map(&len).find(|&l| l as u64 > max) {
            return Err((0, PutStop::Failed(self.too_large(l))));
        }
        let ctl = self.ctl();
        let mut deadline = Lazy::new(wait);
        let mut done = 0;
        let mut slice = FIRST_SLICE;
        loop {
            let l = match self.lock(&ctl.pmutex.0, &mut deadline) {
                Ok(l) => l,
                Err(LockFail::Timeout) => return Err((done, PutStop::Timeout)),
                Err(LockFail::Reentrant) => return Err((done, PutStop::Failed(reentrant_error()))),
            };
            let mut st = self.p_state();
            if st.closed {
                return Err((done, PutStop::Closed));
            }
            let start = done;
            let mut seen = None;
            let mut corrupt = None;
            let mut failed = None;
            while done < n {
                let plen = len(done);
                let flen = geometry::frame_len(plen as u64);
                let drain = done == start && !matches!(wait, Wait::No);
                match self.place_one(&mut st, flen, &mut seen, &mut deadline, drain) {
                    Ok(Some(p)) => {
                        // Both stores go to free space: harmless if `write` fails (nothing
                        // is committed), as if the process had died there.
                        if let Some(s) = p.skip {
                            self.header(self.geo.phys(s))
                                .store(geometry::SKIP, Ordering::Relaxed);
                        }
                        let phys = self.geo.phys(p.at);
                        if let Err(e) = self.write_frame(phys, plen, typed, |dst| write(done, dst))
                        {
                            failed = Some(e);
                            break;
                        }
                        st.tail = p.tail;
                        st.puts += 1;
                        done += 1;
                    }
                    Ok(None) => break,
                    Err(c) => {
                        corrupt = Some(c);
                        break;
                    }
                }
            }
            if done > start {
                self.p_commit(&st);
            }
            drop(l);
            if done > start {
                self.wake_getters(done - start);
            }
            if let Some(c) = corrupt {
                return Err((done, PutStop::Failed(self.repair(c))));
            }
            if let Some(e) = failed {
                return Err((done, PutStop::Failed(e)));
            }
            if done == n {
                return Ok(());
            }
            if let Wait::No = wait {
                return Err((done, PutStop::Full));
            }
            let seen = seen.expect("a put that found no room looked at the consumers");
            let dl = deadline.get();
            // First, briefly, wait for room for a batch (see `BATCH`); then for any room.
            let batch = (self.maxsize / 4).clamp(1, BATCH as u64) as u32;
            if batch > 1 {
                crate::sys::futex::spin_until_advanced(&ctl.c.seq, seen, batch, BATCH_WAIT, dl);
            }
            if !Self::spin_for(&ctl.c.seq, seen, &ctl.pmutex.1, dl)
                && !self.sleep(&ctl.c.putters, &ctl.c.seq, seen, dl, &mut slice)
            {
                return Err((done, PutStop::Timeout));
            }
        }
    }

    /// Where the next frame of `flen` bytes goes, or `None` when there is no room (then
    /// `seen` holds the `cseq` the decision was based on). Holds `pmutex`; may take
    /// `cmutex` to realign an empty ring (to its lap start past `wrap_at`, or for a frame
    /// that fits nowhere else). With `drain`, may first wait a little for the consumers to
    /// empty the ring ([`DRAIN_MAX`]); only when this put has no uncommitted frames (else
    /// the ring cannot become empty) and may wait.
    #[inline]
    pub(super) fn place_one(
        &self,
        st: &mut PState,
        flen: u64,
        seen: &mut Option<u32>,
        deadline: &mut Lazy,
        drain: bool,
    ) -> std::result::Result<Option<geometry::Placement>, Corrupt> {
        let h = &self.hints;
        let mut fresh = false;
        loop {
            let reclaimed = h.reclaimed.load(Ordering::Relaxed);
            let gets = h.gets.load(Ordering::Relaxed);
            if !self.hints_valid(st, reclaimed, gets) {
                if fresh {
                    return Err(Corrupt("consumer positions do not match the producers'"));
                }
            } else if st.puts - gets < self.maxsize {
                // Empty past `wrap_at`: move the ring to the next lap's start, warm and with
                // the whole ring free (geometry.rs, "When a put waits"). Only if no consumer
                // holds its mutex (it is never waited for): else append.
                if geometry::rewind_wanted(&self.geo, st.tail, reclaimed)
                    && self.realign(st, &mut Lazy::new(Wait::No))
                {
                    return Ok(Some(
                        geometry::place(&self.geo, st.tail, st.tail, flen)
                            .expect("an empty aligned ring takes any frame up to its size"),
                    ));
                }
                if let Some(p) = geometry::place(&self.geo, st.tail, reclaimed, flen) {
                    let cold = self.wants_drain(st, reclaimed, p.at, flen);
                    if fresh && cold && drain && self.drain_then_rewind(st, reclaimed, deadline) {
                        return Ok(Some(
                            geometry::place(&self.geo, st.tail, st.tail, flen)
                                .expect("an empty aligned ring takes any frame up to its size"),
                        ));
                    }
                    if fresh || p.skip.is_some() || !(cold || self.wrap_hint_is_stale(st.tail)) {
                        return Ok(Some(p));
                    }
                    // Past `wrap_at` a put that finds the ring empty moves it to its warm
                    // start, which a hint from long ago does not show: without a fresh look a
                    // ring with room to spare (any queue with a large capacity) would march
                    // on through fresh pages, each one faulted in and zeroed, then given
                    // back, instead of reusing its first, cache-warm bytes (for 1 MiB
                    // messages that was most of the time of a put). Looked at most once per
                    // `wrap_at / 4` bytes put, so small messages rarely pay the extra cache
                    // miss.
                }
                if fresh && reclaimed == st.tail {
                    // Empty, but the frame fits neither before the lap's end nor before the
                    // tail: move everything to the next lap start.
                    return Ok(self.realign(st, deadline).then(|| {
                        geometry::place(&self.geo, st.tail, st.tail, flen)
                            .expect("an empty aligned ring takes any frame up to its size")
                    }));
                }
            }
            if fresh {
                return Ok(None);
            }
            *seen = Some(self.refresh_consumer_hints());
            h.refreshed_at.store(st.tail, Ordering::Relaxed);
            fresh = true;
        }
    }

    /// Whether the consumers' positions `reclaimed` and `gets` (hints or a fresh look) fit
    /// the producers' state `st`.
    #[inline]
    pub(super) fn hints_valid(&self, st: &PState, reclaimed: u64, gets: u64) -> bool {
        reclaimed.is_multiple_of(8)
            && reclaimed <= st.tail
            && reclaimed
                .checked_add(self.geo.cap)
                .is_some_and(|l| st.tail <= l)
            && gets <= st.puts
    }

    /// Where the next frame goes by this handle's hints alone, in the common case only: not
    /// closed, room within `maxsize`, no empty ring to move to its lap start, no skip
    /// header, and no stale wrap hint (`place_one` handles every other case, with a fresh
    /// look when needed).
    #[inline]
    pub(super) fn place_by_hints(&self, st: &PState, flen: u64) -> Option<geometry::Placement> {
        let h = &self.hints;
        let reclaimed = h.reclaimed.load(Ordering::Relaxed);
        let gets = h.gets.load(Ordering::Relaxed);
        if st.closed
            || !self.hints_valid(st, reclaimed, gets)
            || st.puts - gets >= self.maxsize
            || geometry::rewind_wanted(&self.geo, st.tail, reclaimed)
        {
            return None;
        }
        let p = geometry::place(&self.geo, st.tail, reclaimed, flen)?;
        (p.skip.is_none()
            && !self.wrap_hint_is_stale(st.tail)
            && !self.wants_drain(st, reclaimed, p.at, flen))
        .then_some(p)
    }

    /// [`geometry::wants_drain`] for a frame of `flen` bytes at `at`, unless a drain wait gave
    /// up less than [`DRAIN_RETRY`] bytes ago (then no put looks afresh for it).
    #[inline(always)]
    fn wants_drain(&self, st: &PState, reclaimed: u64, at: u64, flen: u64) -> bool {
        geometry::wants_drain(&self.geo, at, flen, st.tail - reclaimed)
            && st.tail >= self.hints.drain_after.load(Ordering::Relaxed)
    }

    /// True when the frame at `tail` lies past `wrap_at` and the consumer hints were last
    /// refreshed at least `wrap_at / 4` bytes of puts ago (see `place_one`: the ring may have
    /// become empty, to be moved to its warm start).
    #[inline(always)]
    pub(super) fn wrap_hint_is_stale(&self, tail: u64) -> bool {
        let wrap_at = self.geo.wrap_at();
        self.geo.phys(tail) >= wrap_at
            && tail.wrapping_sub(self.hints.refreshed_at.load(Ordering::Relaxed)) >= wrap_at / 4
    }

    /// Waits (see [`DRAIN_MAX`]) for the consumers to take every frame, then moves the
    /// empty ring to its lap start; true when it did. Only when the backlog
    /// (`tail - reclaimed`, by a fresh look) would fit in the warm area. Callers ask only
    /// when [`wants_drain`](Self::wants_drain) says so, which is never within
    /// [`DRAIN_RETRY`] bytes of a wait that gave up (recorded here). Holds `pmutex`: other
    /// producers wait behind it, as they would behind its put.
    #[cold]
    pub(super) fn drain_then_rewind(
        &self,
        st: &mut PState,
        reclaimed: u64,
        deadline: &mut Lazy,
    ) -> bool {
        let h = &self.hints;
        if st.tail - reclaimed > self.geo.warm {
            return false;
        }
        let user = deadline.get();
        let seq = &self.ctl().c.seq;
        let start = std::time::Instant::now();
        let (mut seen, mut moved) = (seq.load(Ordering::Acquire), start);
        let mut looks = 0u32;
        loop {
            let (s, c) = self.c_snapshot();
            if c.reclaimed == st.tail {
                h.reclaimed.store(c.reclaimed, Ordering::Relaxed);
                h.gets.store(c.gets, Ordering::Relaxed);
                if self.realign(st, &mut Lazy::new(Wait::For(Some(DRAIN_STALL)))) {
                    return true;
                }
            }
            let now = std::time::Instant::now();
            if s != seen {
                (seen, moved) = (s, now);
            }
            if now - moved >= DRAIN_STALL || now - start >= DRAIN_MAX || user.expired() {
                h.drain_after
                    .store(st.tail.saturating_add(DRAIN_RETRY), Ordering::Relaxed);
                return false;
            }
            // Look about once a microsecond; once the wait is more than a short spin, let
            // another process have this CPU between looks (the consumer may need it).
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            looks += 1;
            if looks >= 16 || !crate::sys::may_spin() {
                std::thread::yield_now();
            }
        }
    }

    /// Moves an empty ring to the next lap start: a skip at `tail`, committed, then taken at
    /// once under `cmutex` (if we get it in time; else a consumer takes it). True when done;
    /// false when `cmutex` was not taken (`wait` says how long to try) or the ring is not
    /// empty after all.
    #[cold]
    pub(super) fn realign(&self, st: &mut PState, deadline: &mut Lazy) -> bool {
        let Some(next) = geometry::realign(&self.geo, st.tail) else {
            return false;
        };
        let m = &self.ctl().cmutex.0;
        let got = match deadline.wait {
            Wait::No => m.try_lock().is_some(),
            Wait::For(_) => m.lock(deadline.get()).is_ok(),
        };
        if !got {
            return false;
        }
        let l = Locked(m);
        let mut c = self.c_state();
        if c.head != st.tail || c.reclaimed != st.tail || c.punch_to != 0 {
            return false; // changed meanwhile (or corrupt): let the normal path see it
        }
        let old = st.tail;
        self.header(self.geo.phys(old))
            .store(geometry::SKIP, Ordering::Relaxed);
        st.tail = next;
        self.p_commit(st);
        c.head = next;
        c.reclaimed = next;
        self.c_commit(&c);
        drop(l);
        self.hints.reclaimed.store(next, Ordering::Relaxed);
        true
    }
}
