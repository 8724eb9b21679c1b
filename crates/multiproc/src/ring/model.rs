//! Exhaustive interleaving check of the queue protocol (`ring/`: `mod.rs`, `put.rs`, `get.rs`, `wait.rs`), including processes
//! killed at any step.
//!
//! The model is a state machine whose steps are the protocol's shared-memory accesses, in
//! the order the engine performs them: every load or store of a sequence word, each half of
//! a committed slot written or read (so a seqlock reader can see a slot half-overwritten),
//! each ring cell of a payload copy, each frame header store, a page discard, each sleeper
//! count change, the futex wait (compare-and-sleep, one step) and wake (a wake of all, or a
//! `futex_wake(1)` that wakes any one sleeper: every choice is explored). Mutexes are modeled
//! by their contract (free, or held by an owner that may be dead; a dead owner's lock may be
//! taken over); the ring arithmetic is the real code of `geometry.rs` on a tiny ring. Actors are
//! producers (each puts its messages one by one), consumers (`get_many` in a loop until
//! `Closed`; the last live one, if killed, is replaced), a closer (closes once every producer has finished
//! or died and, in runs without kills, everything was received, so that its wake-ups cannot
//! hide a lost one) and an observer
//! (`len()`-style snapshots). Every reachable state is explored (depth-first, with a visited
//! set), optionally with up to `kills` actors SIGKILLed at any step.
//!
//! Checked in every state or transition:
//! - committed positions always satisfy `reclaimed <= head <= tail <= reclaimed + cap`;
//! - every seqlock snapshot returned equals the state committed at its last `seq` load;
//! - a consumer reads only whole, committed frames (header length and every payload cell
//!   match one message, nothing punched or half-written), and takes each producer's messages
//!   in order; no `Corrupt` is ever reported;
//! - `len()` snapshots never see more gets than puts.
//!
//! Checked in every final state (no step enabled):
//! - every live actor has finished (no deadlock, no lost wake-up: without kills, sleeps have
//!   no timeout in the model, so one missed wake-up leaves a sleeper stuck forever; with
//!   kills, sleeps may time out at any moment, as the bounded slices do);
//! - no message was received twice; every message whose `put` returned was received, except
//!   those a killed consumer had already committed as taken.
//!
//! Liveness of puts (issue 17): in the configurations with a get budget (`Config::gets`),
//! the consumers stop after taking that many messages and nobody closes the queue, so the
//! producers' later puts get no help from any get. There every final state must have every
//! producer finished, except one whose put waits on a queue that is full: `maxsize` items
//! queued, or the bytes in use (committed `tail - reclaimed`, less the lap's end lost behind
//! a skip) leave no room by the bound of geometry.rs ("When a put waits"). That is the property
//! "a put into a queue that is not full completes without any get"; the early wrap of
//! before issue 17 (planted as `Bug::EarlyWrap`) violates it.

use std::collections::HashSet;

use super::geometry::{self, Front, Geometry};

const NONE: u8 = u8::MAX;

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
struct PS {
    tail: u64,
    puts: u64,
    closed: bool,
}

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
struct CS {
    head: u64,
    gets: u64,
    reclaimed: u64,
    punch_to: u64,
}

/// A sleeper count as `wait.rs`' `Sleepers` keeps it: an epoch and a count; a waker claims
/// the count (next epoch, count zero) and only then wakes, or claims some of it (the count
/// falls, the epoch stays) and wakes that many.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
struct Sleep {
    epoch: u8,
    count: u8,
}

impl Sleep {
    fn register(&mut self) -> u8 {
        self.count += 1;
        self.epoch
    }
    fn deregister(&mut self, epoch: u8) {
        if self.epoch == epoch && self.count > 0 {
            self.count -= 1;
        }
    }
    fn claim(&mut self) -> bool {
        self.claim_up_to(u8::MAX) == Claim::All
    }
    fn claim_up_to(&mut self, n: u8) -> Claim {
        if self.count == 0 {
            return Claim::None;
        }
        if n < self.count {
            self.count -= n;
            return Claim::Some;
        }
        self.next_epoch();
        Claim::All
    }
    fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.count = 0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    None,
    All,
    Some,
}

/// Shared memory (and the ghost variables the checks use).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Mem {
    pseq: u32,
    pslots: [PS; 2],
    getters: Sleep,
    cseq: u32,
    cslots: [CS; 2],
    putters: Sleep,
    /// Mutex owners (actor index), NONE when free.
    pm: u8,
    cm: u8,
    /// The ring, one u64 per 8 bytes.
    ring: Vec<u64>,
    // ghosts
    /// Messages whose put committed.
    committed: u32,
    /// Messages whose put returned.
    returned: u32,
    /// Messages received (returned by a get).
    received: u32,
    /// Messages a killed consumer had taken (committed) but not returned.
    lost: u32,
    /// Per producer: how many of its messages were taken (committed by a get), in order.
    taken: [u8; 3],
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Role {
    Producer(u8),
    Consumer,
    Closer,
    Observer,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Pc {
    Finished,
    // shared sub-machines (return to `ret`)
    SnapP(u8),
    SnapC(u8),
    PCommit(u8),
    CCommit(u8),
    SleepInc,
    SleepCheck,
    SleepWait,
    SleepReload,
    Asleep,
    SleepDec,
    // producer
    PLock,
    PRead,
    FpTryLock,
    FpRead,
    FpPunch,
    FpUnlock,
    FpWakeCheck,
    FpWake,
    RLock,
    /// `realign` with `Wait::No` (moving an empty ring to its lap start past `wrap_at`).
    RTryLock,
    RRead,
    RSkip,
    RAfterP,
    RUnlock,
    WSkip,
    WPay,
    WHdr,
    PUnlock,
    PWakeCheck,
    PWake,
    /// After a claim of some (one, for one message): `futex_wake(1)`, which wakes one
    /// sleeper of the kernel's choice (`Action::WakeOne`), or none when none sleeps (then the
    /// next epoch and a wake of all).
    PWakeOne,
    PReturned,
    PUnlockFull,
    // consumer
    CLock,
    CRead,
    CPunchStart,
    CAfterSnap,
    CReadHdr,
    CReadPay,
    CAfterCommit1,
    CPunch,
    CPunchLate,
    CUnlock,
    CWakeCheck,
    CWake,
    CReturn,
    // closer
    XWait,
    XLockP,
    XReadP,
    XLockC,
    XReadC,
    XUnlockC,
    XUnlockP,
    XWakeP,
    XWakeC,
    // observer
    OStart,
    OAfterC,
    OCheck,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Actor {
    role: Role,
    pc: Pc,
    ret: Pc,
    dead: bool,
    // producer
    next: u8,
    st: PS,
    hint_recl: u64,
    hint_gets: u64,
    /// The producers' tail when the hints were last refreshed (`Hints::refreshed_at`).
    hint_at: u64,
    fresh: bool,
    seen: u32,
    second: bool,
    place: Option<geometry::Placement>,
    /// This placement pass has tried to move an empty ring to its lap start (`place_one`
    /// tries once per look at the hints).
    tried: bool,
    /// The realign under way is that optional one (on failure the put appends instead).
    rewind: bool,
    k: u64,
    // consumer (and any holder of cmutex)
    c: CS,
    start_head: u64,
    start_reclaimed: u64,
    /// This get finished a killed consumer's discard step (a commit: wake putters).
    finished_punch: bool,
    hint_tail: u64,
    /// Messages this consumer has received (for `Config::gets`).
    got: u8,
    seen_p: Option<u32>,
    closed: bool,
    batch: Vec<u8>,
    committed: bool,
    r: u64,
    rd_hdr: u64,
    rd_len: u64,
    rd_id: u8,
    rd_bad: bool,
    // snapshots
    snap_s: u32,
    snap_p: PS,
    snap_c: CS,
    // observer
    obs_c: CS,
    /// Bug::WakeCheckBeforeCommit: the getters count read too early.
    early: u32,
    /// The epoch this sleeper registered in, and the sleeper word's value it sleeps on.
    sleep_epoch: u8,
    sleep_val: Sleep,
    /// Back from the futex by a `futex_wake` (not by a moved word).
    woken: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    mem: Mem,
    actors: Vec<Actor>,
    kills_left: u8,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    geo: Geometry,
    maxsize: u64,
    /// Payload length of each producer's messages, in order (multiples of 8, >= 8).
    msgs: &'static [&'static [u64]],
    consumers: usize,
    batch: usize,
    observer: bool,
    kills: u8,
    /// The liveness check: each consumer stops after receiving this many messages, and the
    /// queue is never closed (see the module docs). `None`: consumers run until `Closed`.
    gets: Option<u8>,
    bug: Bug,
}

/// A deliberate protocol mistake, to show the checker finds it (tests only; `None` is the
/// real protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    None,
    /// A seqlock reader trusts the slot without re-reading `seq`.
    NoSeqRecheck,
    /// A producer reads the getters count before its commit store instead of after it.
    WakeCheckBeforeCommit,
    /// A sleeper does not raise the sleeper count.
    UncountedSleep,
    /// A consumer publishes `reclaimed` before discarding the pages (one commit, no
    /// `punch_to` step).
    ReclaimBeforePunch,
    /// The placement of before issue 17: past `wrap_at`, a put wraps to the next lap's start
    /// whenever the frame fits before `reclaimed`, even with frames queued (and never moves
    /// an empty ring there).
    EarlyWrap,
    /// Sleepers sleep on the other side's commit counter (as before issue 18) while wakers
    /// claim the sleeper count: a sleeper registered after seeing a commit is claimed by
    /// that commit's waker before it sleeps, and the next commit does not wake it.
    SleepOnCommitCounter,
    /// A sleeper woken in its epoch (by a claim of some) counts itself out too.
    WokenCountsItselfOut,
    /// A claim of some whose `futex_wake` found no one asleep leaves the count as it is.
    NoWakeFallback,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Step(usize),
    Timeout(usize),
    Kill(usize),
    /// Actor `.0`'s `futex_wake(1)` (at `PWakeOne`) wakes actor `.1`, asleep.
    WakeOne(usize, usize),
}

fn cell_of(id: u8) -> u64 {
    0xabc0_0000 | id as u64
}

impl Config {
    fn msg_id(&self, p: u8, k: u8) -> u8 {
        p * 4 + k
    }
    fn msg_len(&self, id: u8) -> u64 {
        self.msgs[(id / 4) as usize][(id % 4) as usize]
    }
    fn all_msgs(&self) -> u32 {
        let mut m = 0;
        for (p, list) in self.msgs.iter().enumerate() {
            for k in 0..list.len() {
                m |= 1 << self.msg_id(p as u8, k as u8);
            }
        }
        m
    }
}

fn initial(cfg: &Config) -> State {
    let cells = (cfg.geo.cap / 8) as usize;
    let mem = Mem {
        pseq: 0,
        pslots: [PS::default(); 2],
        getters: Sleep::default(),
        cseq: 0,
        cslots: [CS::default(); 2],
        putters: Sleep::default(),
        pm: NONE,
        cm: NONE,
        ring: vec![0; cells],
        committed: 0,
        returned: 0,
        received: 0,
        lost: 0,
        taken: [0; 3],
    };
    let blank = |role, pc| Actor {
        role,
        pc,
        ret: Pc::Finished,
        dead: false,
        next: 0,
        st: PS::default(),
        hint_recl: 0,
        hint_gets: 0,
        hint_at: 0,
        fresh: false,
        seen: 0,
        second: false,
        place: None,
        tried: false,
        rewind: false,
        k: 0,
        c: CS::default(),
        start_head: 0,
        start_reclaimed: 0,
        finished_punch: false,
        hint_tail: 0,
        got: 0,
        seen_p: None,
        closed: false,
        batch: Vec::new(),
        committed: false,
        r: 0,
        rd_hdr: 0,
        rd_len: 0,
        rd_id: 0,
        rd_bad: false,
        snap_s: 0,
        snap_p: PS::default(),
        snap_c: CS::default(),
        obs_c: CS::default(),
        early: 0,
        sleep_epoch: 0,
        sleep_val: Sleep::default(),
        woken: false,
    };
    let mut actors = Vec::new();
    for p in 0..cfg.msgs.len() {
        actors.push(blank(Role::Producer(p as u8), Pc::PLock));
    }
    for _ in 0..cfg.consumers {
        actors.push(blank(Role::Consumer, Pc::CLock));
    }
    if cfg.gets.is_none() {
        actors.push(blank(Role::Closer, Pc::XWait));
    }
    if cfg.observer {
        actors.push(blank(Role::Observer, Pc::OStart));
    }
    State {
        mem,
        actors,
        kills_left: cfg.kills,
    }
}

/// A mutex may be taken when free or when its owner is dead.
fn lockable(s: &State, owner: u8) -> bool {
    owner == NONE || s.actors[owner as usize].dead
}

fn enabled(s: &State, cfg: &Config) -> Vec<Action> {
    let mut out = Vec::new();
    for (i, a) in s.actors.iter().enumerate() {
        if a.dead || a.pc == Pc::Finished {
            continue;
        }
        let ok = match a.pc {
            Pc::PLock | Pc::XLockP => lockable(s, s.mem.pm),
            Pc::CLock | Pc::RLock | Pc::XLockC => lockable(s, s.mem.cm),
            // A try-lock: takes the mutex or gives up, never waits.
            Pc::RTryLock => true,
            Pc::Asleep => false,
            // futex_wake(1) wakes one of those asleep, any (`Action::WakeOne`); a step only
            // when none is.
            Pc::PWakeOne => {
                let asleep: Vec<usize> = s
                    .actors
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.role == Role::Consumer && !b.dead && b.pc == Pc::Asleep)
                    .map(|(j, _)| j)
                    .collect();
                for &j in &asleep {
                    out.push(Action::WakeOne(i, j));
                }
                asleep.is_empty()
            }
            // The closer closes once the producers are done. Without kills, it also waits
            // until everything was received, so its wake-ups cannot hide a lost one.
            Pc::XWait => {
                s.actors
                    .iter()
                    .all(|b| !matches!(b.role, Role::Producer(_)) || b.dead || b.pc == Pc::Finished)
                    && (cfg.kills > 0 || s.mem.received == cfg.all_msgs())
            }
            _ => true,
        };
        if ok {
            out.push(Action::Step(i));
        }
        // With kills, a sleep slice may run out at any moment (without kills, never: then a
        // lost wake-up shows as a stuck final state).
        if a.pc == Pc::Asleep && cfg.kills > 0 {
            out.push(Action::Timeout(i));
        }
        if s.kills_left > 0 && matches!(a.role, Role::Producer(_) | Role::Consumer) {
            out.push(Action::Kill(i));
        }
    }
    out
}

type R = Result<(), String>;

fn check_positions(m: &Mem, g: &Geometry) -> R {
    let p = m.pslots[(m.pseq & 1) as usize];
    let c = m.cslots[(m.cseq & 1) as usize];
    g.validate(c.reclaimed, c.head, p.tail)
        .map_err(|e| format!("committed positions invalid: {e:?} {p:?} {c:?}"))?;
    if c.punch_to != 0 && !(c.reclaimed <= c.punch_to && c.punch_to <= c.head) {
        return Err(format!("punch_to out of order: {c:?}"));
    }
    if c.gets > p.puts {
        return Err(format!("more gets than puts committed: {p:?} {c:?}"));
    }
    Ok(())
}

fn punch(m: &mut Mem, g: &Geometry, from: u64, to: u64) {
    for d in geometry::discard_ranges(g, from, to).into_iter().flatten() {
        for i in (d.start..d.end).step_by(8) {
            m.ring[(i / 8) as usize] = 0;
        }
    }
}

/// Runs one action on a copy of the state.
fn apply(s: &State, act: Action, cfg: &Config) -> Result<State, String> {
    let mut s = s.clone();
    let g = cfg.geo;
    match act {
        Action::Kill(i) => {
            s.kills_left -= 1;
            let a = &mut s.actors[i];
            a.dead = true;
            if a.role == Role::Consumer {
                if a.committed {
                    for &id in &a.batch {
                        s.mem.lost |= 1 << id;
                    }
                }
                // The last live consumer is replaced (a fresh handle), as in the fault test.
                let live = |b: &Actor| b.role == Role::Consumer && !b.dead;
                if !s.actors.iter().any(live) {
                    let mut fresh = initial(cfg).actors[cfg.msgs.len()].clone();
                    fresh.pc = Pc::CLock;
                    s.actors.push(fresh);
                }
            }
            return Ok(s);
        }
        Action::Timeout(i) => {
            s.actors[i].pc = Pc::SleepDec;
            return Ok(s);
        }
        Action::WakeOne(i, j) => {
            s.actors[j].pc = Pc::SleepReload;
            s.actors[j].woken = true;
            s.actors[i].pc = Pc::PReturned;
            return Ok(s);
        }
        Action::Step(_) => {}
    }
    let Action::Step(i) = act else { unreachable!() };
    let (m, actors) = (&mut s.mem, &mut s.actors);
    match actors[i].pc {
        Pc::Finished | Pc::Asleep => unreachable!(),
        Pc::SnapP(_) | Pc::SnapC(_) => step_snapshot(m, &mut actors[i], cfg)?,
        Pc::PCommit(_) | Pc::CCommit(_) => step_commit(m, &mut actors[i], i as u8, cfg)?,
        Pc::SleepInc | Pc::SleepCheck | Pc::SleepWait | Pc::SleepReload | Pc::SleepDec => {
            step_sleep(m, &mut actors[i], cfg)?
        }
        Pc::PLock
        | Pc::PRead
        | Pc::FpTryLock
        | Pc::FpRead
        | Pc::FpPunch
        | Pc::FpUnlock
        | Pc::FpWakeCheck
        | Pc::FpWake
        | Pc::RLock
        | Pc::RTryLock
        | Pc::RRead
        | Pc::RSkip
        | Pc::RAfterP
        | Pc::RUnlock
        | Pc::WSkip
        | Pc::WPay
        | Pc::WHdr
        | Pc::PUnlock
        | Pc::PWakeCheck
        | Pc::PWake
        | Pc::PWakeOne
        | Pc::PReturned
        | Pc::PUnlockFull => step_producer(m, actors, i, cfg)?,
        Pc::CLock
        | Pc::CRead
        | Pc::CPunchStart
        | Pc::CAfterSnap
        | Pc::CReadHdr
        | Pc::CReadPay
        | Pc::CAfterCommit1
        | Pc::CPunch
        | Pc::CPunchLate
        | Pc::CUnlock
        | Pc::CWakeCheck
        | Pc::CWake
        | Pc::CReturn => step_consumer(m, actors, i, cfg)?,
        Pc::XWait
        | Pc::XLockP
        | Pc::XReadP
        | Pc::XLockC
        | Pc::XReadC
        | Pc::XUnlockC
        | Pc::XUnlockP
        | Pc::XWakeP
        | Pc::XWakeC => step_closer(m, actors, i)?,
        Pc::OStart | Pc::OAfterC | Pc::OCheck => step_observer(&mut actors[i])?,
    }
    check_positions(&s.mem, &g)?;
    Ok(s)
}

/// Seqlock snapshots (`SnapP`, `SnapC`): read a slot between two looks at its `seq`, then
/// return to `ret`.
fn step_snapshot(m: &Mem, a: &mut Actor, cfg: &Config) -> R {
    match a.pc {
        Pc::SnapP(0) => {
            a.snap_s = m.pseq;
            a.pc = Pc::SnapP(1);
        }
        Pc::SnapP(1) => {
            a.snap_p.tail = m.pslots[(a.snap_s & 1) as usize].tail;
            a.pc = Pc::SnapP(2);
        }
        Pc::SnapP(2) => {
            let sl = m.pslots[(a.snap_s & 1) as usize];
            a.snap_p.puts = sl.puts;
            a.snap_p.closed = sl.closed;
            a.pc = Pc::SnapP(3);
        }
        Pc::SnapP(_) => {
            if m.pseq == a.snap_s || cfg.bug == Bug::NoSeqRecheck {
                if a.snap_p != m.pslots[(m.pseq & 1) as usize] {
                    return Err(format!("torn producer snapshot {:?}", a.snap_p));
                }
                a.pc = a.ret;
            } else {
                a.pc = Pc::SnapP(0);
            }
        }
        Pc::SnapC(0) => {
            a.snap_s = m.cseq;
            a.pc = Pc::SnapC(1);
        }
        Pc::SnapC(1) => {
            let sl = m.cslots[(a.snap_s & 1) as usize];
            a.snap_c.head = sl.head;
            a.snap_c.gets = sl.gets;
            a.pc = Pc::SnapC(2);
        }
        Pc::SnapC(2) => {
            let sl = m.cslots[(a.snap_s & 1) as usize];
            a.snap_c.reclaimed = sl.reclaimed;
            a.snap_c.punch_to = sl.punch_to;
            a.pc = Pc::SnapC(3);
        }
        Pc::SnapC(_) => {
            if m.cseq == a.snap_s || cfg.bug == Bug::NoSeqRecheck {
                if a.snap_c != m.cslots[(m.cseq & 1) as usize] {
                    return Err(format!("torn consumer snapshot {:?}", a.snap_c));
                }
                a.pc = a.ret;
            } else {
                a.pc = Pc::SnapC(0);
            }
        }
        _ => unreachable!("not a snapshot pc: {:?}", a.pc),
    }
    Ok(())
}

/// Commits (`PCommit`, `CCommit`): fill the inactive slot in two halves, then one seq
/// store; return to `ret`.
fn step_commit(m: &mut Mem, a: &mut Actor, me: u8, cfg: &Config) -> R {
    match a.pc {
        Pc::PCommit(0) => {
            m.pslots[((m.pseq + 1) & 1) as usize].tail = a.st.tail;
            a.pc = Pc::PCommit(1);
        }
        Pc::PCommit(1) => {
            let sl = &mut m.pslots[((m.pseq + 1) & 1) as usize];
            sl.puts = a.st.puts;
            sl.closed = a.st.closed;
            a.pc = Pc::PCommit(2);
        }
        Pc::PCommit(_) => {
            if m.pm != me {
                return Err("producer commit without pmutex".into());
            }
            let before = m.pslots[(m.pseq & 1) as usize].puts;
            m.pseq += 1;
            if a.st.puts > before {
                if let Some(id) = a.in_flight(cfg) {
                    m.committed |= 1 << id;
                }
            }
            a.pc = a.ret;
        }
        Pc::CCommit(0) => {
            let sl = &mut m.cslots[((m.cseq + 1) & 1) as usize];
            sl.head = a.c.head;
            sl.gets = a.c.gets;
            a.pc = Pc::CCommit(1);
        }
        Pc::CCommit(1) => {
            let sl = &mut m.cslots[((m.cseq + 1) & 1) as usize];
            sl.reclaimed = a.c.reclaimed;
            sl.punch_to = a.c.punch_to;
            a.pc = Pc::CCommit(2);
        }
        Pc::CCommit(_) => {
            if m.cm != me {
                return Err("consumer commit without cmutex".into());
            }
            let before = m.cslots[(m.cseq & 1) as usize];
            m.cseq += 1;
            if a.role == Role::Consumer && a.c.gets > before.gets {
                // The batch is taken now: each producer's messages in order.
                a.committed = true;
                for &id in &a.batch {
                    let p = (id / 4) as usize;
                    if m.taken[p] != id % 4 {
                        return Err(format!("message {id} taken out of order"));
                    }
                    m.taken[p] += 1;
                }
            }
            a.pc = a.ret;
        }
        _ => unreachable!("not a commit pc: {:?}", a.pc),
    }
    Ok(())
}

/// Sleeping on a futex word, counted (`SleepInc` .. `SleepDec`).
fn step_sleep(m: &mut Mem, a: &mut Actor, cfg: &Config) -> R {
    match a.pc {
        Pc::SleepInc => {
            let w = if a.role == Role::Consumer {
                &mut m.getters
            } else {
                &mut m.putters
            };
            if cfg.bug != Bug::UncountedSleep {
                a.sleep_epoch = w.register();
            } else {
                a.sleep_epoch = w.epoch;
            }
            a.sleep_val = *w;
            a.pc = Pc::SleepCheck;
        }
        // The last look at the other side's commit counter before sleeping.
        Pc::SleepCheck => {
            let word = if a.role == Role::Consumer {
                m.pseq
            } else {
                m.cseq
            };
            a.pc = if word != a.seen {
                Pc::SleepDec
            } else {
                Pc::SleepWait
            };
        }
        // futex_wait on the sleeper word: sleeps only while it holds the value registered.
        Pc::SleepWait => {
            let w = if a.role == Role::Consumer {
                m.getters
            } else {
                m.putters
            };
            let word = if a.role == Role::Consumer {
                m.pseq
            } else {
                m.cseq
            };
            a.pc = if cfg.bug == Bug::SleepOnCommitCounter {
                if word == a.seen {
                    Pc::Asleep
                } else {
                    Pc::SleepReload
                }
            } else if w == a.sleep_val {
                Pc::Asleep
            } else {
                Pc::SleepReload
            };
            a.woken = false;
        }
        // Back from the futex: a new epoch means claimed (look again); a count that moved
        // alone means another sleeper came or went (look at the counter, sleep again).
        Pc::SleepReload => {
            let w = if a.role == Role::Consumer {
                m.getters
            } else {
                m.putters
            };
            a.sleep_val = w;
            a.pc = if w.epoch != a.sleep_epoch {
                Pc::SleepDec
            } else if a.woken && cfg.bug != Bug::WokenCountsItselfOut {
                // Woken in its epoch: a claim of some counted it out already.
                if a.role == Role::Consumer {
                    Pc::CLock
                } else {
                    Pc::PLock
                }
            } else if a.woken {
                Pc::SleepDec
            } else {
                Pc::SleepCheck
            };
        }
        Pc::SleepDec => {
            let counted = cfg.bug != Bug::UncountedSleep;
            if a.role == Role::Consumer {
                if counted {
                    m.getters.deregister(a.sleep_epoch);
                }
                a.pc = Pc::CLock;
            } else {
                if counted {
                    m.putters.deregister(a.sleep_epoch);
                }
                a.pc = Pc::PLock;
            }
        }
        _ => unreachable!("not a sleep pc: {:?}", a.pc),
    }
    Ok(())
}

/// The producer: `put_frames` with one payload.
fn step_producer(m: &mut Mem, actors: &mut [Actor], i: usize, cfg: &Config) -> R {
    let (g, me) = (cfg.geo, i as u8);
    let a = &mut actors[i];
    match a.pc {
        Pc::PLock => {
            m.pm = me;
            a.pc = Pc::PRead;
        }
        Pc::PRead => {
            a.st = m.pslots[(m.pseq & 1) as usize];
            if a.st.closed {
                return Err("a put found the queue closed".into());
            }
            a.fresh = false;
            a.tried = false;
            a.place = None;
            decide(a, cfg)?;
        }
        Pc::FpTryLock => {
            if a.snap_c.punch_to == 0 || a.second {
                fp_done(a, cfg)?;
            } else if lockable_mem(actors, m.cm) {
                m.cm = me;
                actors[i].pc = Pc::FpRead;
            } else {
                fp_done(&mut actors[i], cfg)?; // try_lock failed: use the snapshot
            }
        }
        Pc::FpRead => {
            a.c = m.cslots[(m.cseq & 1) as usize];
            if a.c.punch_to == 0 {
                a.pc = Pc::FpUnlock;
            } else {
                check_punch(&a.c)?;
                a.pc = Pc::FpPunch;
            }
        }
        Pc::FpPunch => {
            punch(m, &g, a.c.reclaimed, a.c.punch_to);
            a.c.reclaimed = a.c.punch_to;
            a.c.punch_to = 0;
            a.pc = Pc::CCommit(0);
            a.ret = Pc::FpUnlock;
        }
        Pc::FpUnlock => {
            m.cm = NONE;
            a.pc = Pc::FpWakeCheck;
        }
        Pc::FpWakeCheck => {
            a.second = true;
            if m.putters.count > 0 {
                a.pc = Pc::FpWake;
            } else {
                a.pc = Pc::SnapC(0);
                a.ret = Pc::FpTryLock;
            }
        }
        Pc::FpWake => {
            if m.putters.claim() {
                wake_all(actors, Role::Producer(0));
            }
            let a = &mut actors[i];
            a.pc = Pc::SnapC(0);
            a.ret = Pc::FpTryLock;
        }
        Pc::RLock => {
            m.cm = me;
            a.pc = Pc::RRead;
        }
        Pc::RTryLock => {
            if lockable_mem(actors, m.cm) {
                m.cm = me;
                actors[i].pc = Pc::RRead;
            } else {
                // Not taken: place the frame as if the ring were not empty.
                let a = &mut actors[i];
                a.rewind = false;
                decide(a, cfg)?;
            }
        }
        Pc::RRead => {
            a.c = m.cslots[(m.cseq & 1) as usize];
            let t = a.st.tail;
            if a.c.head != t || a.c.reclaimed != t || a.c.punch_to != 0 {
                a.place = None;
                a.pc = Pc::RUnlock;
            } else {
                a.pc = Pc::RSkip;
            }
        }
        Pc::RSkip => {
            let old = a.st.tail;
            m.ring[(g.phys(old) / 8) as usize] = geometry::SKIP;
            let next = geometry::realign(&g, old).expect("realign only off a lap start");
            a.st.tail = next;
            a.c.head = next;
            a.c.reclaimed = next;
            a.pc = Pc::PCommit(0);
            a.ret = Pc::RAfterP;
        }
        Pc::RAfterP => {
            a.pc = Pc::CCommit(0);
            a.ret = Pc::RUnlock;
            a.place = geometry::place(&g, a.c.head, a.c.head, geometry::frame_len(a.cur_len(cfg)));
            if a.place.is_none() {
                return Err("an empty realigned ring refused a frame".into());
            }
            a.hint_recl = a.c.head;
        }
        Pc::RUnlock => {
            m.cm = NONE;
            if a.place.is_some() {
                a.pc = Pc::WSkip;
            } else if a.rewind {
                // The ring was not empty after all: place the frame as usual.
                a.rewind = false;
                decide(a, cfg)?;
            } else {
                a.pc = Pc::PUnlockFull;
            }
        }
        Pc::WSkip => {
            let p = a.place.expect("placed");
            if let Some(sk) = p.skip {
                m.ring[(g.phys(sk) / 8) as usize] = geometry::SKIP;
            }
            a.k = 0;
            a.pc = Pc::WPay;
        }
        Pc::WPay => {
            let p = a.place.expect("placed");
            let id = a.in_flight(cfg).expect("a message in flight");
            let at = g.phys(p.at) + geometry::FRAME_HEADER + a.k * 8;
            m.ring[(at / 8) as usize] = cell_of(id);
            a.k += 1;
            if a.k * 8 == cfg.msg_len(id) {
                a.pc = Pc::WHdr;
            }
        }
        Pc::WHdr => {
            let p = a.place.expect("placed");
            let id = a.in_flight(cfg).expect("a message in flight");
            m.ring[(g.phys(p.at) / 8) as usize] =
                geometry::encode_header(cfg.msg_len(id) as u32, false);
            a.early = m.getters.count.into();
            a.st.tail = p.tail;
            a.st.puts += 1;
            a.pc = Pc::PCommit(0);
            a.ret = Pc::PUnlock;
        }
        Pc::PUnlock => {
            m.pm = NONE;
            a.pc = Pc::PWakeCheck;
        }
        Pc::PWakeCheck => {
            let getters = if cfg.bug == Bug::WakeCheckBeforeCommit {
                a.early
            } else {
                m.getters.count.into()
            };
            a.pc = if getters > 0 {
                Pc::PWake
            } else {
                Pc::PReturned
            };
        }
        Pc::PWake => {
            // A claim of all and its wake are one step: a sleeper that registers between
            // them (in the new epoch) is woken spuriously, which the real code allows too.
            // A claim of some (one: a put commits one message) wakes in the next step.
            match m.getters.claim_up_to(1) {
                Claim::Some => actors[i].pc = Pc::PWakeOne,
                claim => {
                    if claim == Claim::All || cfg.bug == Bug::WakeCheckBeforeCommit {
                        wake_all(actors, Role::Consumer);
                    }
                    actors[i].pc = Pc::PReturned;
                }
            }
        }
        Pc::PWakeOne => {
            // None asleep (else `Action::WakeOne`): the wake-up not delivered would leave
            // the count short, so the next epoch and a wake of all.
            if cfg.bug != Bug::NoWakeFallback {
                m.getters.next_epoch();
                wake_all(actors, Role::Consumer);
            }
            actors[i].pc = Pc::PReturned;
        }
        Pc::PReturned => {
            let id = a.in_flight(cfg).expect("a message in flight");
            m.returned |= 1 << id;
            a.next += 1;
            a.pc = if a.in_flight(cfg).is_some() {
                Pc::PLock
            } else {
                Pc::Finished
            };
        }
        Pc::PUnlockFull => {
            m.pm = NONE;
            a.pc = Pc::SleepInc;
        }
        _ => unreachable!("not a producer pc: {:?}", a.pc),
    }
    Ok(())
}

/// The consumer: `take_frames(batch)` in a loop.
fn step_consumer(m: &mut Mem, actors: &mut [Actor], i: usize, cfg: &Config) -> R {
    let (g, me) = (cfg.geo, i as u8);
    let a = &mut actors[i];
    match a.pc {
        Pc::CLock => {
            m.cm = me;
            a.pc = Pc::CRead;
        }
        Pc::CRead => {
            a.c = m.cslots[(m.cseq & 1) as usize];
            a.batch.clear();
            a.committed = false;
            a.seen_p = None;
            a.closed = false;
            a.finished_punch = a.c.punch_to != 0;
            if a.c.punch_to != 0 {
                check_punch(&a.c)?;
                a.pc = Pc::CPunchStart;
            } else {
                a.start_head = a.c.head;
                a.start_reclaimed = a.c.reclaimed;
                consume(a, cfg)?;
            }
        }
        Pc::CPunchStart => {
            punch(m, &g, a.c.reclaimed, a.c.punch_to);
            a.c.reclaimed = a.c.punch_to;
            a.c.punch_to = 0;
            a.start_head = a.c.head;
            a.start_reclaimed = a.c.reclaimed;
            a.pc = Pc::CCommit(0);
            a.ret = Pc::CAfterCommit1; // resumes the read loop (no batch yet)
            a.r = u64::MAX;
        }
        Pc::CAfterSnap => {
            a.seen_p = Some(a.snap_s);
            a.closed = a.snap_p.closed;
            a.hint_tail = a.snap_p.tail;
            g.validate(a.c.reclaimed, a.c.head, a.hint_tail)
                .map_err(|e| format!("consumer found corrupt positions: {e:?}"))?;
            if a.c.head == a.hint_tail {
                reclaim_step(a, cfg)?;
            } else {
                a.pc = Pc::CReadHdr;
            }
        }
        Pc::CReadHdr => {
            let word = m.ring[(g.phys(a.c.head) / 8) as usize];
            match geometry::front(&g, a.c.head, a.hint_tail, word) {
                Ok(Front::Skip { next }) => {
                    a.c.head = next;
                    consume(a, cfg)?;
                }
                Ok(Front::Frame { len, .. }) => {
                    a.rd_hdr = a.c.head;
                    a.rd_len = len;
                    a.rd_id = NONE;
                    a.rd_bad = false;
                    a.k = 0;
                    if len == 0 {
                        return Err("read an empty frame (the model puts none)".into());
                    }
                    a.pc = Pc::CReadPay;
                }
                Err(e) => return Err(format!("consumer read a corrupt frame: {e:?}")),
            }
        }
        Pc::CReadPay => {
            let at = g.phys(a.rd_hdr) + geometry::FRAME_HEADER + a.k * 8;
            let v = m.ring[(at / 8) as usize];
            if a.k == 0 {
                a.rd_id = (v & 0xff) as u8;
            }
            if v != cell_of(a.rd_id) {
                a.rd_bad = true;
            }
            a.k += 1;
            if a.k * 8 == a.rd_len {
                let id = a.rd_id;
                if a.rd_bad
                    || id >= 32
                    || m.committed & (1 << id) == 0
                    || cfg.msg_len(id) != a.rd_len
                {
                    return Err(format!("torn or uncommitted frame read (id {id})"));
                }
                a.batch.push(id);
                a.c.head += geometry::frame_len(a.rd_len);
                a.c.gets += 1;
                consume(a, cfg)?;
            }
        }
        Pc::CAfterCommit1 => {
            if a.r == u64::MAX {
                // after the start-of-get discard: go on reading
                consume(a, cfg)?;
            } else {
                a.pc = Pc::CPunch;
            }
        }
        Pc::CPunch => {
            punch(m, &g, a.c.reclaimed, a.r);
            a.c.punch_to = 0;
            a.c.reclaimed = a.r;
            a.pc = Pc::CCommit(0);
            a.ret = Pc::CUnlock;
        }
        Pc::CPunchLate => {
            punch(m, &g, a.start_reclaimed, a.r);
            a.pc = Pc::CUnlock;
        }
        Pc::CUnlock => {
            m.cm = NONE;
            a.pc = if a.c.head != a.start_head || a.finished_punch {
                Pc::CWakeCheck
            } else {
                Pc::CReturn
            };
        }
        Pc::CWakeCheck => {
            a.pc = if m.putters.count > 0 {
                Pc::CWake
            } else {
                Pc::CReturn
            };
        }
        Pc::CWake => {
            if m.putters.claim() {
                wake_all(actors, Role::Producer(0));
            }
            actors[i].pc = Pc::CReturn;
        }
        Pc::CReturn => {
            if !a.batch.is_empty() {
                for &id in &a.batch {
                    if m.received & (1 << id) != 0 {
                        return Err(format!("message {id} received twice"));
                    }
                    m.received |= 1 << id;
                }
                a.got += a.batch.len() as u8;
                a.batch.clear();
                a.committed = false;
                a.pc = if cfg.gets.is_some_and(|n| a.got >= n) {
                    Pc::Finished // its get budget is spent: no more gets
                } else {
                    Pc::CLock
                };
            } else if a.closed {
                a.pc = Pc::Finished;
            } else {
                a.seen = a.seen_p.expect("an empty get looked at the producers");
                a.pc = Pc::SleepInc;
            }
        }
        _ => unreachable!("not a consumer pc: {:?}", a.pc),
    }
    Ok(())
}

/// The closer: closes both sides, then wakes every sleeper.
fn step_closer(m: &mut Mem, actors: &mut [Actor], i: usize) -> R {
    let me = i as u8;
    let a = &mut actors[i];
    match a.pc {
        Pc::XWait => a.pc = Pc::XLockP,
        Pc::XLockP => {
            m.pm = me;
            a.pc = Pc::XReadP;
        }
        Pc::XReadP => {
            a.st = m.pslots[(m.pseq & 1) as usize];
            a.st.closed = true;
            a.pc = Pc::PCommit(0);
            a.ret = Pc::XLockC;
        }
        Pc::XLockC => {
            m.cm = me;
            a.pc = Pc::XReadC;
        }
        Pc::XReadC => {
            a.c = m.cslots[(m.cseq & 1) as usize];
            a.pc = Pc::CCommit(0);
            a.ret = Pc::XUnlockC;
        }
        Pc::XUnlockC => {
            m.cm = NONE;
            a.pc = Pc::XUnlockP;
        }
        Pc::XUnlockP => {
            m.pm = NONE;
            a.pc = Pc::XWakeP;
        }
        Pc::XWakeP => {
            m.getters.claim();
            wake_all(actors, Role::Consumer);
            actors[i].pc = Pc::XWakeC;
        }
        Pc::XWakeC => {
            m.putters.claim();
            wake_all(actors, Role::Producer(0));
            actors[i].pc = Pc::Finished;
        }
        _ => unreachable!("not a closer pc: {:?}", a.pc),
    }
    Ok(())
}

/// The observer: `snapshot()` as `len()` does.
fn step_observer(a: &mut Actor) -> R {
    match a.pc {
        Pc::OStart => {
            a.pc = Pc::SnapC(0);
            a.ret = Pc::OAfterC;
        }
        Pc::OAfterC => {
            a.obs_c = a.snap_c;
            a.pc = Pc::SnapP(0);
            a.ret = Pc::OCheck;
        }
        Pc::OCheck => {
            if a.obs_c.gets > a.snap_p.puts {
                return Err("len() snapshot saw more gets than puts".into());
            }
            a.pc = Pc::Finished;
        }
        _ => unreachable!("not an observer pc: {:?}", a.pc),
    }
    Ok(())
}

fn lockable_mem(actors: &[Actor], owner: u8) -> bool {
    owner == NONE || actors[owner as usize].dead
}

fn check_punch(c: &CS) -> R {
    if c.reclaimed <= c.punch_to && c.punch_to <= c.head && c.punch_to.is_multiple_of(8) {
        Ok(())
    } else {
        Err(format!("discard step out of order: {c:?}"))
    }
}

/// futex_wake_all on the getters word (`Consumer`) or the putters word (producers).
fn wake_all(actors: &mut [Actor], sleepers: Role) {
    for b in actors.iter_mut() {
        let on = match b.role {
            Role::Consumer => Role::Consumer,
            Role::Producer(_) => Role::Producer(0),
            _ => continue,
        };
        if !b.dead && b.pc == Pc::Asleep && on == sleepers {
            b.pc = Pc::SleepReload;
            b.woken = true;
        }
    }
}

impl Actor {
    fn in_flight(&self, cfg: &Config) -> Option<u8> {
        let Role::Producer(p) = self.role else {
            return None;
        };
        ((self.next as usize) < cfg.msgs[p as usize].len()).then(|| cfg.msg_id(p, self.next))
    }
    fn cur_len(&self, cfg: &Config) -> u64 {
        cfg.msg_len(self.in_flight(cfg).expect("a message in flight"))
    }
}

/// refresh_consumer_hints is done: the last snapshot becomes the hints.
fn fp_done(a: &mut Actor, cfg: &Config) -> R {
    a.hint_recl = a.snap_c.reclaimed;
    a.hint_gets = a.snap_c.gets;
    a.hint_at = a.st.tail;
    a.seen = a.snap_s;
    a.fresh = true;
    a.tried = false;
    decide(a, cfg)
}

/// `place_one`'s decision (local computation on the handle's hints); sets the next pc.
fn decide(a: &mut Actor, cfg: &Config) -> R {
    let g = &cfg.geo;
    let st = a.st;
    let (recl, gets) = (a.hint_recl, a.hint_gets);
    let flen = geometry::frame_len(a.cur_len(cfg));
    let valid = recl.is_multiple_of(8)
        && recl <= st.tail
        && recl.checked_add(g.cap).is_some_and(|l| st.tail <= l)
        && gets <= st.puts;
    if !valid {
        if a.fresh {
            return Err("producer found consumer positions invalid".into());
        }
    } else if st.puts - gets < cfg.maxsize {
        // Empty past wrap_at: try (without waiting for cmutex) to move the ring to its lap
        // start, once per look at the hints; on failure, go on as below.
        if cfg.bug != Bug::EarlyWrap && !a.tried && geometry::rewind_wanted(g, st.tail, recl) {
            a.tried = true;
            a.rewind = true;
            a.pc = Pc::RTryLock;
            return Ok(());
        }
        let place = if cfg.bug == Bug::EarlyWrap {
            place_preferring_wrap
        } else {
            geometry::place
        };
        if let Some(p) = place(g, st.tail, recl, flen) {
            // `wrap_hint_is_stale`: past wrap_at, on hints refreshed wrap_at/4 bytes ago,
            // look again before appending.
            let stale = g.phys(st.tail) >= g.wrap_at()
                && st.tail.wrapping_sub(a.hint_at) >= g.wrap_at() / 4;
            if a.fresh || p.skip.is_some() || !stale {
                a.place = Some(p);
                a.k = 0;
                a.pc = Pc::WSkip;
                return Ok(());
            }
        }
        if a.fresh && recl == st.tail {
            a.rewind = false;
            a.pc = Pc::RLock;
            return Ok(());
        }
    }
    if a.fresh {
        a.pc = Pc::PUnlockFull;
        return Ok(());
    }
    // refresh_consumer_hints: snapshot, then maybe finish a half-done discard.
    a.second = false;
    a.pc = Pc::SnapC(0);
    a.ret = Pc::FpTryLock;
    Ok(())
}

/// The consumer's read loop: the next frame, a look at the producers, or the end of the pass.
fn consume(a: &mut Actor, cfg: &Config) -> R {
    let g = &cfg.geo;
    let budget = cfg.gets.map_or(usize::MAX, |n| (n - a.got) as usize);
    if a.batch.len() < cfg.batch.max(1).min(budget) {
        if a.c.head >= a.hint_tail || a.hint_tail - a.c.head > g.cap {
            if a.seen_p.is_none() {
                a.pc = Pc::SnapP(0);
                a.ret = Pc::CAfterSnap;
                return Ok(());
            }
        } else {
            a.pc = Pc::CReadHdr;
            return Ok(());
        }
    }
    reclaim_step(a, cfg)
}

/// End of a pass: commit what was taken (in two steps when pages are discarded), unlock.
fn reclaim_step(a: &mut Actor, cfg: &Config) -> R {
    let g = &cfg.geo;
    if a.c.head == a.start_head {
        a.pc = Pc::CUnlock;
        return Ok(());
    }
    let emptied = a.c.head == a.hint_tail;
    let (r, discards) = geometry::reclaim(g, a.c.reclaimed, a.c.head, emptied);
    a.r = r;
    if discards.iter().any(Option::is_some) && cfg.bug == Bug::ReclaimBeforePunch {
        a.c.reclaimed = r;
        a.pc = Pc::CCommit(0);
        a.ret = Pc::CPunchLate;
    } else if discards.iter().any(Option::is_some) {
        a.c.punch_to = r;
        a.pc = Pc::CCommit(0);
        a.ret = Pc::CAfterCommit1;
    } else {
        a.c.reclaimed = r;
        a.pc = Pc::CCommit(0);
        a.ret = Pc::CUnlock;
    }
    Ok(())
}

/// `geometry::place` as it was before issue 17 (`Bug::EarlyWrap`): past `wrap_at`, wrap to the
/// next lap's start whenever the frame fits before `reclaimed`.
fn place_preferring_wrap(
    g: &Geometry,
    tail: u64,
    reclaimed: u64,
    flen: u64,
) -> Option<geometry::Placement> {
    let limit = reclaimed + g.cap;
    let phys = g.phys(tail);
    let lap_end = tail - phys + g.cap;
    let fits_after = tail + flen <= lap_end.min(limit);
    let fits_wrapped = lap_end + flen <= limit;
    let prefer_wrap = phys >= g.wrap_at() && fits_wrapped;
    if fits_after && !prefer_wrap {
        Some(geometry::Placement {
            skip: None,
            at: tail,
            tail: tail + flen,
        })
    } else if fits_wrapped {
        Some(geometry::Placement {
            skip: Some(tail),
            at: lap_end,
            tail: lap_end + flen,
        })
    } else {
        None
    }
}

/// Why a put may wait for a get (see "When a put waits" in geometry.rs): `None` when the
/// committed state says the queue is not full for a frame of `flen` bytes, i.e. it must
/// take the frame without any get.
fn full_because(m: &Mem, cfg: &Config, flen: u64) -> Option<String> {
    let g = &cfg.geo;
    let p = m.pslots[(m.pseq & 1) as usize];
    let c = m.cslots[(m.cseq & 1) as usize];
    if p.puts - c.gets >= cfg.maxsize {
        return Some(format!("{} items queued", p.puts - c.gets));
    }
    // Bytes in use: committed frames and skip headers, and taken bytes not given back yet;
    // not the lap's end after a skip (unusable until a get passes it, but not in use).
    let (mut h, mut lost) = (c.head, 0);
    while h < p.tail {
        let word = m.ring[(g.phys(h) / 8) as usize];
        h = match geometry::front(g, h, p.tail, word) {
            Ok(Front::Skip { next }) => {
                lost += next - h - geometry::FRAME_HEADER;
                next
            }
            Ok(Front::Frame { next, .. }) => next,
            Err(e) => return Some(format!("a corrupt frame at {h}: {e:?}")),
        };
    }
    let in_use = p.tail - c.reclaimed - lost;
    let largest = cfg
        .msgs
        .iter()
        .flat_map(|l| l.iter())
        .map(|&n| geometry::frame_len(n))
        .max()
        .unwrap_or(0);
    (in_use + 2 * flen + largest - 32 >= g.cap)
        .then(|| format!("{in_use} of {} bytes in use", g.cap))
}

fn final_checks(s: &State, cfg: &Config) -> R {
    let m = &s.mem;
    for (i, a) in s.actors.iter().enumerate() {
        if a.dead || a.pc == Pc::Finished {
            continue;
        }
        if let (Some(_), Role::Producer(_), Pc::Asleep) = (cfg.gets, a.role, a.pc) {
            // No get is to come: the put may wait only on a full queue.
            let flen = geometry::frame_len(a.cur_len(cfg));
            if full_because(m, cfg, flen).is_some() {
                continue;
            }
            let p = m.pslots[(m.pseq & 1) as usize];
            let c = m.cslots[(m.cseq & 1) as usize];
            return Err(format!(
                "liveness: actor {i}'s put of a {flen}-byte frame waits for a get on a queue \
                 that is not full ({p:?} {c:?})"
            ));
        }
        if cfg.gets.is_some() && a.role == Role::Consumer && a.pc == Pc::Asleep {
            // Waiting for messages while some of its budget is left: only on an empty queue
            // (else a wake-up was lost).
            let p = m.pslots[(m.pseq & 1) as usize];
            let c = m.cslots[(m.cseq & 1) as usize];
            if p.puts == c.gets {
                continue;
            }
        }
        return Err(format!("stuck: actor {i} ({:?}) at {:?}", a.role, a.pc));
    }
    if cfg.gets.is_some() {
        // Messages may stay queued: the consumers stopped.
        return Ok(());
    }
    if m.received & m.lost != 0 {
        return Err("a message a killed consumer took was received again".into());
    }
    let missing = m.returned & !(m.received | m.lost);
    if missing != 0 {
        return Err(format!("messages lost: {missing:#b}"));
    }
    if s.kills_left == cfg.kills && m.received != cfg.all_msgs() {
        return Err(format!("without kills, received {:#b}", m.received));
    }
    Ok(())
}

/// What one exploration saw.
#[derive(Debug)]
struct Explored {
    states: usize,
    finals: usize,
    /// Steps some actor reached (so a test can show the rare paths were taken).
    covered: HashSet<Pc>,
}

/// A 128-bit fingerprint of a state (two independently salted hashes): the visited set holds
/// fingerprints, not states (hash compaction; a collision, odds about n^2 / 2^129, would
/// only skip a state).
fn fingerprint(s: &State) -> u128 {
    use std::hash::{Hash, Hasher};
    let s = &canonical(s);
    let mut h1 = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h1);
    let mut h2 = std::collections::hash_map::DefaultHasher::new();
    0x5eed_u32.hash(&mut h2);
    s.hash(&mut h2);
    (h1.finish() as u128) << 64 | h2.finish() as u128
}

/// `s` with the sleeper epochs that cannot change what happens next made equal, so that
/// states differing only in them are explored once. Of an epoch, only whether it equals the
/// sleeper word's current epoch is ever looked at (`SleepWait`, `SleepReload`, `SleepDec`),
/// and an epoch once left never comes back within a run (a run claims a word a few times;
/// the real word has 2^15 epochs), so the word's epoch becomes 0 and a sleeper's 0 (current)
/// or 1 (older); a sleeper's values outside a sleep are never read again and become 0.
/// Without this, `protocol_full` multiplied its states by every epoch count a run reaches and
/// did not finish in 17 minutes (2026-12-02).
fn canonical(s: &State) -> State {
    let mut c = s.clone();
    let (ge, pe) = (c.mem.getters.epoch, c.mem.putters.epoch);
    c.mem.getters.epoch = 0;
    c.mem.putters.epoch = 0;
    for a in &mut c.actors {
        let base = match a.role {
            Role::Consumer => ge,
            Role::Producer(_) => pe,
            Role::Closer | Role::Observer => continue,
        };
        let sleeping = !a.dead
            && matches!(
                a.pc,
                Pc::SleepCheck | Pc::SleepWait | Pc::Asleep | Pc::SleepReload | Pc::SleepDec
            );
        if sleeping {
            a.sleep_epoch = u8::from(a.sleep_epoch != base);
            a.sleep_val.epoch = u8::from(a.sleep_val.epoch != base);
        } else {
            a.sleep_epoch = 0;
            a.sleep_val = Sleep::default();
        }
        if a.pc != Pc::SleepReload {
            a.woken = false; // read only there
        }
    }
    c
}

/// Explores every reachable state depth-first; on a violation, the error names it with the
/// path that led there.
fn explore(cfg: &Config) -> Result<Explored, String> {
    let mut covered = HashSet::new();
    let init = initial(cfg);
    let mut seen: HashSet<u128> = HashSet::new();
    seen.insert(fingerprint(&init));
    // The stack is the current path.
    let mut stack: Vec<(State, Vec<Action>, Option<Action>)> =
        vec![(init.clone(), enabled(&init, cfg), None)];
    let mut finals = 0;
    while let Some(top) = stack.last_mut() {
        let Some(act) = top.1.pop() else {
            stack.pop();
            continue;
        };
        let next = match apply(&top.0, act, cfg) {
            Ok(n) => n,
            Err(why) => return Err(trace(&stack, act, &why)),
        };
        if !seen.insert(fingerprint(&next)) {
            continue;
        }
        covered.extend(next.actors.iter().map(|a| a.pc));
        let en = enabled(&next, cfg);
        if en.is_empty() {
            finals += 1;
            if let Err(why) = final_checks(&next, cfg) {
                return Err(trace(&stack, act, &why));
            }
        }
        stack.push((next, en, Some(act)));
    }
    Ok(Explored {
        states: seen.len(),
        finals,
        covered,
    })
}

fn trace(stack: &[(State, Vec<Action>, Option<Action>)], last: Action, why: &str) -> String {
    let mut out = format!("{why}\npath:\n");
    for (st, _, act) in stack.iter().skip(1) {
        let act = act.expect("every state past the first came from an action");
        let who = match act {
            Action::Step(i) | Action::Timeout(i) | Action::Kill(i) | Action::WakeOne(i, _) => i,
        };
        out += &format!("  {act:?} -> {:?}\n", st.actors[who].pc);
    }
    out + &format!("  {last:?}: fails")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP48_PUNCH: Geometry = Geometry::with(48, 0, 8);
    const CAP32_PUNCH: Geometry = Geometry::with(32, 0, 8);
    const CAP32_KEEP: Geometry = Geometry::with(32, 32, 8);
    /// `wrap_at` 0: every put that finds the ring empty off a lap start moves it there.
    const CAP64_PUNCH: Geometry = Geometry::with(64, 0, 8);
    /// `wrap_at` 16: puts append up to 16 bytes into a lap before they move an empty ring.
    const CAP64_WRAP16: Geometry = Geometry::with(64, 16, 8);

    fn cfg(geo: Geometry, msgs: &'static [&'static [u64]], consumers: usize, kills: u8) -> Config {
        Config {
            geo,
            maxsize: 2,
            msgs,
            consumers,
            batch: 2,
            observer: false,
            kills,
            gets: None,
            bug: Bug::None,
        }
    }

    /// A liveness configuration (see the module docs): the consumers stop after `gets`
    /// messages, nobody closes the queue, no kills, no item bound.
    fn live(geo: Geometry, msgs: &'static [&'static [u64]], consumers: usize, gets: u8) -> Config {
        Config {
            maxsize: 9,
            batch: 1,
            gets: Some(gets),
            ..cfg(geo, msgs, consumers, 0)
        }
    }

    fn run(cfg: Config) -> HashSet<Pc> {
        let t = std::time::Instant::now();
        let e = explore(&cfg).unwrap_or_else(|why| panic!("{cfg:?}: {why}"));
        eprintln!(
            "model: {} states, {} final, {:.1?}: {cfg:?}",
            e.states,
            e.finals,
            t.elapsed()
        );
        assert!(e.finals > 0);
        e.covered
    }

    fn assert_covers(covered: &HashSet<Pc>, pcs: &[Pc]) {
        for pc in pcs {
            assert!(covered.contains(pc), "the model never reached {pc:?}");
        }
    }

    /// Small configurations, quick enough for debug builds.
    #[test]
    fn protocol_small() {
        // One producer whose second message needs a realign (24 + 8 bytes do not fit at 16
        // in a 48-byte ring... they do after the skip), pages discarded on every get.
        let c = run(cfg(CAP48_PUNCH, &[&[8, 24]], 1, 0));
        assert_covers(&c, &[Pc::Asleep, Pc::CPunch]);
        // The same with one process killed at any step.
        let mut k = cfg(CAP32_PUNCH, &[&[8]], 1, 1);
        k.batch = 1;
        let c = run(k);
        assert_covers(&c, &[Pc::CPunchStart, Pc::Asleep]);
        // Full ring by bytes (no discards): producers wait for room.
        let mut full = cfg(CAP32_KEEP, &[&[8, 8, 8]], 1, 0);
        full.maxsize = 9;
        let c = run(full);
        assert_covers(&c, &[Pc::WSkip, Pc::Asleep, Pc::SleepInc]);
        // Two consumers asleep: a put claims one of them and wakes one.
        let mut two = cfg(CAP32_PUNCH, &[&[8]], 2, 0);
        two.batch = 1;
        let c = run(two);
        assert_covers(&c, &[Pc::PWakeOne]);
    }

    /// Issue 17: a put into a queue that is not full completes without any get. One message
    /// passes through, then two more are put with no get to come (the issue's `put`, `get`,
    /// `put`, `put`); and the same after two puts and one get (the rest of the backlog stays
    /// queued). Before the fix the last put waited forever (`Bug::EarlyWrap` below).
    #[test]
    fn puts_need_no_get_unless_full() {
        let c = run(live(CAP64_PUNCH, &[&[8, 8, 8]], 1, 1));
        assert_covers(&c, &[Pc::RTryLock, Pc::RSkip, Pc::WPay]);
        run(live(CAP64_WRAP16, &[&[8, 8, 8, 8]], 1, 1));
    }

    /// The planted mistakes are found, so the checks are not vacuous.
    #[test]
    fn planted_bugs_are_found() {
        for (bug, kills) in [
            (Bug::NoSeqRecheck, 0),
            (Bug::WakeCheckBeforeCommit, 0),
            (Bug::UncountedSleep, 0),
            (Bug::ReclaimBeforePunch, 0),
            (Bug::EarlyWrap, 0),
            (Bug::SleepOnCommitCounter, 0),
            (Bug::WokenCountsItselfOut, 0),
            (Bug::NoWakeFallback, 0),
        ] {
            let mut c = if bug == Bug::EarlyWrap {
                live(CAP64_PUNCH, &[&[8, 8, 8]], 1, 1)
            } else if matches!(bug, Bug::WokenCountsItselfOut | Bug::NoWakeFallback) {
                let mut two = cfg(CAP32_PUNCH, &[&[8]], 2, kills);
                two.batch = 1;
                two
            } else if bug == Bug::ReclaimBeforePunch {
                cfg(CAP32_PUNCH, &[&[8, 8, 8]], 1, kills)
            } else {
                cfg(CAP48_PUNCH, &[&[8, 24]], 1, kills)
            };
            c.maxsize = 9;
            c.bug = bug;
            let why = explore(&c).expect_err(&format!("{bug:?} went unnoticed"));
            eprintln!("{bug:?}: {}", why.lines().next().unwrap_or(""));
        }
    }

    /// The larger configurations: two producers or two consumers, one or two kills, the
    /// observer. `cargo test --release --lib ring::model -- --ignored --nocapture`. Since
    /// the claims of some (a `futex_wake(1)` may wake either sleeper) the two-consumer runs
    /// branch more: two consumers with one kill alone took 137 million states and about
    /// half an hour of one CPU on the 2-CPU dev VM (2026-12-03); all of it took 5 minutes
    /// before.
    #[test]
    #[ignore = "minutes of model checking: cargo test --release --lib ring::model -- --ignored"]
    fn protocol_full() {
        let mut k = cfg(CAP48_PUNCH, &[&[8, 24]], 1, 1);
        k.batch = 1;
        run(k);
        let c = run(cfg(CAP48_PUNCH, &[&[16, 24], &[8]], 1, 0));
        assert_covers(&c, &[Pc::RSkip, Pc::FpTryLock, Pc::PWake, Pc::CWake]);
        run(cfg(CAP48_PUNCH, &[&[8, 24]], 2, 0));
        let c = run(cfg(CAP48_PUNCH, &[&[8, 24]], 2, 1));
        assert_covers(&c, &[Pc::CPunchStart]);
        // A producer needing room finishes a killed consumer's discard step.
        let mut room = cfg(CAP32_PUNCH, &[&[8, 8, 8]], 1, 1);
        room.maxsize = 9;
        room.batch = 1;
        let c = run(room);
        assert_covers(&c, &[Pc::FpPunch, Pc::CPunchStart, Pc::FpWakeCheck]);
        let mut obs = cfg(CAP48_PUNCH, &[&[8, 24]], 1, 0);
        obs.observer = true;
        run(obs);
        let mut two = cfg(CAP48_PUNCH, &[&[8, 24]], 1, 2);
        two.batch = 1;
        run(two);
        // Two consumers asleep for two messages: claims of some, woken in either order.
        let mut some = cfg(CAP32_PUNCH, &[&[8, 8]], 2, 0);
        some.batch = 1;
        let c = run(some);
        assert_covers(&c, &[Pc::PWakeOne]);
    }

    /// Two producers, one killed at any step (inside a put it may hold the producer mutex
    /// with a frame half written: the other takes the mutex over and writes there); and two
    /// consumers on a ring that fills by bytes, one killed.
    /// `cargo test --release --lib ring::model -- --ignored --nocapture` (about 35 million
    /// states, 4 minutes).
    #[test]
    #[ignore = "minutes of model checking: cargo test --release --lib ring::model -- --ignored"]
    fn protocol_full_more_kills() {
        let mut c = cfg(CAP32_KEEP, &[&[8], &[8, 8]], 1, 1);
        c.maxsize = 9;
        c.batch = 1;
        run(c);
        let mut c = cfg(CAP32_KEEP, &[&[8, 8]], 2, 1);
        c.maxsize = 9;
        run(c);
    }
}
