//! How a forked child's result reaches its parent without a socket of its own.
//!
//! Creating, passing and closing a socketpair and a pidfd for every child cost about a
//! fifth of a fork+join. Instead, each thread that forks holds a [`Results`]: a table of
//! shared result slots (`shm::slots`) and one SEQPACKET socketpair, made once. When the
//! thread ends, its `Results` goes to a spare list for the next thread that forks (children
//! it started may still be joined from anywhere: the slots are shared under a lock).
//!
//! - Before the fork the parent takes a free slot and stamps it with a fresh token.
//! - A child whose encoded result fits a slot (about 4 KiB) and carries no fds writes it there
//!   and publishes it with one store; then it exits. That is the whole protocol in the
//!   common case: the parent just blocks in `waitpid` and reads the slot after reaping.
//! - A larger result goes into a sealed memfd; that memfd and any fds inside the result
//!   (handles) go in one message on the shared socket, tagged with the token; the slot says
//!   so. Messages are sent without blocking. If the socket is full (hundreds of unjoined
//!   children with large results), the child raises a flag in its slot and stops itself
//!   (`SIGSTOP`); whoever waits for it sees the stop (`WUNTRACED`), drains the socket into a
//!   stash, and continues it (`SIGCONT`). So the parent never has to watch the child and the
//!   socket at once, and a child never waits for a parent that isn't waiting for it.
//! - A child that dies before publishing leaves the slot `RUNNING`: join reports how it ended.
//!
//! Everything read from a slot or from the socket is validated: the token must match, lengths
//! are bounded, the memfd must be sealed and as long as announced.

use std::cell::Cell;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use super::channel::{Frame, Tag};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::fork::PerProcess;
use crate::shm::slots::{self, SlotTable};
use crate::sys::thread::fork_generation;
use crate::sys::{mem, proc, socket};

/// Result slots and the socket for results that don't fit them (see the module docs).
#[derive(Debug)]
pub(crate) struct Results {
    /// The fork generation of the process that made it (`crate::fork`): a forked child
    /// inherits its parent's, and must not use them.
    generation: u64,
    table: SlotTable,
    rx: OwnedFd,
    tx: OwnedFd,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    free: Vec<u32>,
    next: u32,
    serial: u64,
    /// Messages drained from the socket: token, fds, whether the kernel cut fds off.
    stash: Vec<(u64, Vec<OwnedFd>, bool)>,
}

/// A slot taken for one child.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(crate) results: &'static Results,
    pub(crate) slot: u32,
    pub(crate) token: u64,
}

/// The `Results` of threads that have ended, for the next thread that forks. Per process
/// (`crate::fork`): a forked child never touches its parent's list, whose lock another
/// thread may have held at the fork.
static SPARE: PerProcess<Mutex<Vec<&'static Results>>> = PerProcess::new();

fn spare() -> &'static Mutex<Vec<&'static Results>> {
    SPARE.get_or_init(Mutex::default)
}

/// A thread's `Results`; handed to [`SPARE`] when the thread ends.
struct Mine(Cell<Option<&'static Results>>);

impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            // (`try_lock`: never block in a thread's exit; at worst one `Results` is idle.)
            if r.generation == fork_generation() {
                if let Ok(mut spare) = spare().try_lock() {
                    spare.push(r);
                }
            }
        }
    }
}

thread_local! {
    static MINE: Mine = const { Mine(Cell::new(None)) };
}

/// This thread's `Results`: one it already has, a spare one, or a new one. They are never
/// freed: each lives as long as children started from it may still report.
pub(crate) fn for_this_thread() -> Result<&'static Results> {
    let generation = fork_generation();
    if let Some(r) = MINE.with(|m| m.0.get()) {
        if r.generation == generation {
            return Ok(r);
        }
        // Inherited by the thread that forked this process: its parent's, not ours.
    }
    if let Some(r) = spare().lock().unwrap_or_else(|e| e.into_inner()).pop() {
        MINE.with(|m| m.0.set(Some(r)));
        return Ok(r);
    }
    let table = SlotTable::new().context("cannot map the result slots")?;
    let (rx, tx) = socket::seqpacket_pair().context("cannot create the result socket")?;
    let r: &'static Results = Box::leak(Box::new(Results {
        generation,
        table,
        rx,
        tx,
        inner: Mutex::new(Inner {
            next: 1,
            ..Inner::default()
        }),
    }));
    MINE.with(|m| m.0.set(Some(r)));
    Ok(r)
}

/// In a freshly forked child: the parent's `Results` are not ours to take slots from. (Also
/// seen by `for_this_thread` from the generation; this spares the child the look.)
pub(crate) fn forget_in_child() {
    MINE.with(|m| m.0.set(None));
}

impl Results {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a free slot for a child about to be forked.
    pub(crate) fn take_slot(&'static self) -> Result<Ticket> {
        let mut g = self.lock();
        let slot = match g.free.pop() {
            Some(s) => s,
            None if (g.next as usize) < slots::SLOTS => {
                g.next += 1;
                g.next - 1
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    format!(
                        "{} forked children of this thread have not been joined yet: join \
                         some before starting more",
                        slots::SLOTS - 1
                    ),
                ))
            }
        };
        g.serial += 1;
        let token = g.serial;
        drop(g);
        self.table.reset(slot, token);
        Ok(Ticket {
            results: self,
            slot,
            token,
        })
    }

    /// Gives back the slot of a reaped child (and drops anything stashed for it).
    pub(crate) fn release(&self, t: Ticket) {
        let mut g = self.lock();
        g.stash.retain(|(token, _, _)| *token != t.token);
        g.free.push(t.slot);
    }

    /// Reads every message waiting on the socket into the stash.
    fn drain(&self, g: &mut Inner) {
        loop {
            let mut buf = [0u8; 16];
            let mut fds = Vec::new();
            match socket::recv_msg(self.rx.as_fd(), &mut buf, &mut fds, true, false) {
                Ok(r) if r.len == 8 && !r.truncated => {
                    let token = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                    g.stash.push((token, fds, r.fds_truncated));
                }
                Ok(r) if r.len == 0 && fds.is_empty() => return, // cannot happen: we hold tx
                Ok(_) => {} // not ours to understand: dropped (its fds are closed)
                Err(_) => return,
            }
        }
    }

    /// Called when the child of `t` was seen stopped: if it stopped itself to wait for
    /// room on the socket, drain the socket and let it go on.
    pub(crate) fn service_stop(&self, t: Ticket, pid: i32) {
        let req = self.table.request(t.slot);
        if req.load(Ordering::SeqCst) == 1 {
            let mut g = self.lock();
            self.drain(&mut g);
            drop(g);
            req.store(0, Ordering::SeqCst);
            let _ = proc::kill(pid, libc::SIGCONT);
        }
    }

    /// Child side: hands the outcome of the target to the parent (see the module docs).
    pub(crate) fn deliver(&self, slot: u32, tag: Tag, body: &[u8], fds: &[BorrowedFd<'_>]) {
        let t = &self.table;
        if fds.is_empty() && t.write_body(slot, body) {
            t.publish(
                slot,
                slots::INLINE_BODY,
                tag as u32,
                0,
                body.len() as u64,
                0,
            );
            return;
        }
        if let Err(why) = self.send(slot, tag, body, fds) {
            let msg = format!("cannot hand the result to the parent: {why}");
            let msg = &msg.as_bytes()[..msg.len().min(slots::INLINE)];
            t.write_body(slot, msg);
            t.publish(
                slot,
                slots::INLINE_BODY,
                Tag::Failed as u32,
                0,
                msg.len() as u64,
                0,
            );
        }
    }

    fn send(&self, slot: u32, tag: Tag, body: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        let t = &self.table;
        let memfd = if t.write_body(slot, body) {
            None
        } else {
            Some(mem::memfd_with(c"multiproc-result", body).context("cannot make a memfd")?)
        };
        let mut all: Vec<BorrowedFd<'_>> = memfd.iter().map(|m| m.as_fd()).collect();
        all.extend_from_slice(fds);
        if all.len() > socket::MAX_FDS_PER_MSG {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the result holds {} handles; at most {} can be returned",
                    fds.len(),
                    socket::MAX_FDS_PER_MSG - 1
                ),
            ));
        }
        let flags = if memfd.is_some() { slots::IN_MEMFD } else { 0 };
        let token = t.token(slot).to_le_bytes();
        loop {
            match socket::send_msg(self.tx.as_fd(), &[IoSlice::new(&token)], &all, true) {
                Ok(_) => break,
                // The socket is full, or too many fds are in flight for this user
                // (ETOOMANYREFS): ask whoever waits for us to drain it.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ETOOMANYREFS) =>
                {
                    t.request(slot).store(1, Ordering::SeqCst);
                    proc::stop_self();
                }
                Err(e) => return Err(Error::os("cannot send the result", e)),
            }
        }
        t.publish(
            slot,
            slots::SENT,
            tag as u32,
            flags,
            body.len() as u64,
            fds.len() as u32,
        );
        Ok(())
    }

    /// Parent side, after reaping the child of `t`: the frame it published, `None` when it
    /// ended before publishing one. An error when what it published is damaged.
    pub(crate) fn take(&self, t: Ticket) -> Result<Option<Frame>> {
        let p = self.table.published(t.slot);
        if p.token != t.token || p.state == slots::RUNNING {
            return Ok(None);
        }
        let tag = u8::try_from(p.tag)
            .ok()
            .and_then(Tag::from_u8)
            .ok_or_else(|| damaged("an unknown tag"))?;
        match p.state {
            slots::INLINE_BODY => {
                let body = self
                    .table
                    .inline_body(t.slot, p.len)
                    .ok_or_else(|| damaged("a length out of range"))?;
                Ok(Some(Frame {
                    kind: tag as u8,
                    body,
                    fds: Vec::new(),
                }))
            }
            slots::SENT => {
                let (mut fds, cut) = self.take_stashed(t.token)?;
                if cut {
                    return Err(damaged("a message whose fds the kernel cut off"));
                }
                let body = if p.flags & slots::IN_MEMFD != 0 {
                    if fds.is_empty() {
                        return Err(damaged("no memfd"));
                    }
                    let memfd = fds.remove(0);
                    read_memfd(memfd.as_fd(), p.len)?
                } else {
                    self.table
                        .inline_body(t.slot, p.len)
                        .ok_or_else(|| damaged("a length out of range"))?
                };
                if fds.len() != p.nfds as usize {
                    return Err(damaged("a different number of handles than announced"));
                }
                Ok(Some(Frame {
                    kind: tag as u8,
                    body,
                    fds,
                }))
            }
            _ => Err(damaged("an unknown state")),
        }
    }

    fn take_stashed(&self, token: u64) -> Result<(Vec<OwnedFd>, bool)> {
        let mut g = self.lock();
        // The child has been reaped: its message (sent before it published) is stashed
        // already or waiting on the socket.
        for pass in 0..2 {
            if let Some(i) = g.stash.iter().position(|(tk, _, _)| *tk == token) {
                let (_, fds, cut) = g.stash.swap_remove(i);
                return Ok((fds, cut));
            }
            if pass == 0 {
                self.drain(&mut g);
            }
        }
        Err(damaged("a result message that never arrived"))
    }
}

fn read_memfd(fd: BorrowedFd<'_>, len: u64) -> Result<Vec<u8>> {
    let size = mem::file_size(fd).context("cannot stat the result memfd")?;
    let sealed = mem::check_sealed(fd).unwrap_or(false);
    if !sealed || size != len {
        return Err(damaged(
            "a result memfd that is unsealed or of the wrong size",
        ));
    }
    let len = usize::try_from(len).map_err(|_| damaged("a result too large for memory"))?;
    mem::read_prefix(fd, len).context("cannot read the result memfd")
}

fn damaged(what: &str) -> Error {
    Error::new(
        ErrorKind::ChildFailed,
        format!("the child's result slot holds {what}"),
    )
}

#[cfg(test)]
mod tests {
    //! A forked child writes its slot and the result socket: whatever it leaves there, the
    //! parent's `take` gives a frame, nothing, or an error — never a panic, and never an
    //! allocation the child did not pay for (a claimed length is checked against the slot or
    //! the memfd before anything is allocated).

    use super::*;
    use crate::codec::alloc_probe;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// An fd a child could attach to its result message.
    fn attachment(kind: u8, len: usize) -> OwnedFd {
        match kind % 3 {
            0 => mem::memfd_with(c"sealed", &vec![5u8; len]).unwrap(),
            1 => {
                let fd =
                    rustix::fs::memfd_create(c"unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
                rustix::fs::ftruncate(&fd, len as u64).unwrap();
                fd
            }
            _ => socket::stream_pair().unwrap().0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// `valid`: the child published a well-formed result (inline, or in a sealed memfd
        /// with `extra` other fds) that the other fields then damage or not.
        #[test]
        fn whatever_a_child_publishes_is_a_frame_or_an_error(
            valid in proptest::option::of((any::<bool>(), 0usize..3000, 0usize..3)),
            state in prop_oneof![3 => 1u32..=2, 1 => any::<u32>()],
            tag in prop_oneof![
                3 => prop::sample::select(vec![1u32, 2, 3, 4, 10]),
                1 => any::<u32>(),
            ],
            flags in prop_oneof![0u32..2, any::<u32>()],
            len in prop_oneof![0u64..300, 0u64..7000, any::<u64>()],
            nfds in prop_oneof![0u32..4, any::<u32>()],
            own_token in prop::bool::weighted(0.9),
            body in vec(any::<u8>(), 0..300),
            message in proptest::option::of(vec((any::<u8>(), 0usize..6000), 0..3)),
        ) {
            let (state, flags, len, nfds, message) = match valid {
                Some((false, n, _)) => (slots::INLINE_BODY, 0, (n % slots::INLINE) as u64, 0, None),
                Some((true, n, extra)) => {
                    let mut m = vec![(0u8, n)];
                    m.extend((0..extra).map(|i| (i as u8, 10)));
                    (slots::SENT, slots::IN_MEMFD, n as u64, extra as u32, Some(m))
                }
                None => (state, flags, len, nfds, message),
            };
            let r = for_this_thread().unwrap();
            let t = r.take_slot().unwrap();
            if !own_token {
                r.table.reset(t.slot, t.token ^ 0x5a5a);
            }
            r.table.write_body(t.slot, &body);
            // The message comes before the publication (as a child sends it).
            let fds: Vec<OwnedFd> = message
                .iter()
                .flatten()
                .map(|&(kind, len)| attachment(kind, len))
                .collect();
            let memfd_bytes: usize = message.iter().flatten().map(|&(_, l)| l).sum();
            if message.is_some() {
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                let token = t.token.to_le_bytes();
                socket::send_msg(r.tx.as_fd(), &[IoSlice::new(&token)], &borrowed, true).unwrap();
            }
            drop(fds);
            r.table.publish(t.slot, state, tag, flags, len, nfds);
            let (got, peak) = alloc_probe::peak_bytes(|| r.take(t));
            prop_assert!(
                peak <= (64 << 10) + slots::INLINE + memfd_bytes,
                "{peak} bytes allocated"
            );
            match got {
                Ok(None) => prop_assert!(!own_token || state == slots::RUNNING),
                Ok(Some(f)) => {
                    prop_assert!(own_token);
                    prop_assert!(state == slots::INLINE_BODY || state == slots::SENT);
                    prop_assert!(Tag::from_u8(f.kind).is_some());
                    prop_assert_eq!(f.body.len() as u64, len);
                    if let Some((true, n, _)) = valid {
                        prop_assert!(f.body.len() == n && f.body.iter().all(|&b| b == 5));
                    }
                }
                Err(e) if valid.is_some() && own_token && Tag::from_u8(tag as u8).is_some()
                    && tag < 256 =>
                {
                    prop_assert!(false, "a well-formed result was refused: {}", e);
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ChildFailed, "{}", e),
            }
            // A message the publication did not claim stays stashed: drop it with its fds.
            let _ = r.take_stashed(t.token);
            r.release(t);
        }
    }
}
