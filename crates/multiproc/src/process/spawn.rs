//! The Spawn start method: execute the current binary again and run a `fn(A) -> R` in it.
//!
//! The parent starts `/proc/self/exe` with one extra fd (a stream socket) whose number is in
//! the environment variable [`ENV_FD`]. Before the child's `main` runs, a constructor in
//! `.init_array` ([`boot`]) sees the variable, removes it, reads the bootstrap frame (entry
//! point, encoded arguments, their fds), runs the target, sends back the result frame and
//! exits. So no setup call is needed, in a plain binary or in a `cargo test` binary.
//!
//! The entry point travels as two offsets from a reference function in this crate: that of a
//! monomorphized trampoline `call::<A, R>` and that of the user's `fn(A) -> R`. Offsets within
//! one binary are the same in every run (ASLR moves the whole image), and the child checks it
//! runs the same binary: same file (device, inode, size, mtime) and the same distance between
//! two functions of this crate.
//!
//! # Safety
//!
//! Functions travel to a child as offsets from an anchor symbol of the same binary and are
//! transmuted back there (the child checked the binary's identity first); the spawn path's
//! `pre_exec` hook calls only async-signal-safe functions.

#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::channel::{self, FrameReader, Tag};
use super::{current, registry, Link, Outcome, Started};
use crate::codec::{ident, Codec, Postcard};
use crate::error::{Context, Error, Result};
use crate::handle;
use crate::sys::{proc, socket};

/// Environment variable naming the bootstrap fd of a spawned child.
pub(crate) const ENV_FD: &str = "MULTIPROC_SPAWN_FD";

/// The trampoline of an [`Entry`]: runs a spawned child's target (`call::<A, R, M>`).
type EntryTrampoline = fn(usize, Vec<u8>, Vec<OwnedFd>, OwnedFd) -> i32;
/// The trampoline of a [`RunFnRef`]: `run_ref::<A, R, K>`.
type RunTrampoline = fn(usize, &[u8], &mut Vec<u8>) -> std::result::Result<(), String>;
/// The trampoline of a [`CtxFnRef`]: `run_ctx_ref::<C, A, R, K>`.
type CtxTrampoline =
    fn(usize, &mut dyn std::any::Any, &[u8], &mut Vec<u8>) -> std::result::Result<(), String>;

/// The function-pointer type of a trampoline, which an offset is turned back into.
pub(crate) trait Trampoline: Copy {
    /// Its address.
    fn addr(self) -> usize;
    /// The trampoline at `addr`.
    ///
    /// # Safety
    /// `addr` is the address of a function of exactly this type.
    unsafe fn at(addr: usize) -> Self;
}

macro_rules! trampolines {
    ($($t:ty),*) => { $(
        impl Trampoline for $t {
            fn addr(self) -> usize {
                self as usize
            }
            unsafe fn at(addr: usize) -> Self {
                // SAFETY: the caller's promise: `addr` is a function of this type.
                unsafe { std::mem::transmute::<usize, $t>(addr) }
            }
        }
    )* };
}
trampolines!(EntryTrampoline, RunTrampoline, CtxTrampoline);

/// A function of this binary together with the trampoline that runs it (a monomorphized
/// instance that knows its types), as offsets from [`anchor`], so that it can be sent to
/// another process running the same binary: a forked child (same addresses) or a spawned
/// one (whose boot checked it runs the same binary). `T` is the trampoline's type, one per
/// way of running a function:
///
/// - [`Entry`]: a spawned child's target (the bootstrap's entry point);
/// - [`RunFnRef`]: a `fn(A) -> R` run by a [`Runner`] (the pool's tasks, its initializer);
/// - [`CtxFnRef`]: a `fn(&C, A) -> R` run by a [`CtxRunner`].
///
/// Distinct types, so that one kind of reference is never called as another. A child
/// trusts its parent: a reference is only ever decoded from what the parent sent.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct FnRef<T> {
    trampoline: isize,
    target: isize,
    #[serde(skip)]
    kind: PhantomData<T>,
}

impl<T> Clone for FnRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for FnRef<T> {}

impl<T> PartialEq for FnRef<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.trampoline, self.target) == (other.trampoline, other.target)
    }
}

impl<T> Eq for FnRef<T> {}

impl<T> std::fmt::Debug for FnRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnRef")
            .field("trampoline", &self.trampoline)
            .field("target", &self.target)
            .finish()
    }
}

/// Which function a spawned child runs.
pub(crate) type Entry = FnRef<EntryTrampoline>;
/// A `fn(A) -> R` with its [`Runner`].
pub(crate) type RunFnRef = FnRef<RunTrampoline>;
/// A `fn(&C, A) -> R` with its [`CtxRunner`].
pub(crate) type CtxFnRef = FnRef<CtxTrampoline>;

impl<T: Trampoline> FnRef<T> {
    fn new(trampoline: T, target: usize) -> FnRef<T> {
        // Make sure the constructor that runs spawned children is linked into this binary.
        std::hint::black_box(&BOOT);
        let base = anchor();
        FnRef {
            trampoline: trampoline.addr().wrapping_sub(base) as isize,
            target: target.wrapping_sub(base) as isize,
            kind: PhantomData,
        }
    }

    /// The raw offsets (for a wire format that writes them itself).
    pub(crate) fn to_parts(self) -> (i64, i64) {
        (self.trampoline as i64, self.target as i64)
    }

    /// Back from [`to_parts`](FnRef::to_parts).
    pub(crate) fn from_parts(trampoline: i64, target: i64) -> FnRef<T> {
        FnRef {
            trampoline: trampoline as isize,
            target: target as isize,
            kind: PhantomData,
        }
    }

    /// The trampoline, and the target's address, in this process.
    fn resolve(self) -> (T, usize) {
        let base = anchor();
        let tramp = base.wrapping_add(self.trampoline as usize);
        // SAFETY: `trampoline` is the offset of a trampoline of type `T` made by
        // `FnRef::<T>::new` in this binary — in the parent of a forked child (same image,
        // same addresses) or of a spawned child whose `boot` checked the binary's identity
        // and fingerprint — relocated by the same anchor. The child trusts its parent.
        let tramp = unsafe { T::at(tramp) };
        (tramp, base.wrapping_add(self.target as usize))
    }
}

#[inline(never)]
fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

#[inline(never)]
fn anchor2() -> usize {
    anchor2 as fn() -> usize as usize
}

/// The distance between two functions of this crate: differs between different binaries.
fn fingerprint() -> isize {
    (anchor2 as fn() -> usize as usize).wrapping_sub(anchor as fn() -> usize as usize) as isize
}

/// What a worker does with a `fn(A) -> R` it is handed by reference ([`RunFnRef`]): decode
/// inputs from `input`, call the function, append encoded outputs to `out`. The pool's
/// workers implement this; the unsafe part (turning an offset back into a function) stays here.
pub(crate) trait Runner: 'static {
    /// Runs `f` over `input`; `Err` when the input is malformed.
    fn run<A: DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String>;
}

impl RunFnRef {
    /// A reference to `f`, run by `K`.
    pub(crate) fn of<A, R, K>(f: fn(A) -> R) -> RunFnRef
    where
        A: DeserializeOwned,
        R: Serialize,
        K: Runner,
    {
        FnRef::new(run_ref::<A, R, K> as RunTrampoline, f as usize)
    }

    /// Calls the referenced function through its runner, in this process.
    pub(crate) fn call(self, input: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let (tramp, target) = self.resolve();
        tramp(target, input, out)
    }
}

fn run_ref<A: DeserializeOwned, R: Serialize, K: Runner>(
    target: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    // SAFETY: `target` was made by `RunFnRef::of::<A, R, K>` from a `fn(A) -> R` of this same
    // binary (see `FnRef::resolve`), relocated by the same anchor.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    K::run(f, input, out)
}

/// What a worker does with a `fn(&C, A) -> R` it is handed by reference ([`CtxFnRef`]): as
/// [`Runner`], with state of the worker's passed through untouched (the pool keeps the
/// decoded context there).
pub(crate) trait CtxRunner: 'static {
    /// Runs `f` over `input`, with `state`; `Err` when the input is malformed.
    fn run<C: DeserializeOwned + 'static, A: DeserializeOwned, R: Serialize>(
        f: fn(&C, A) -> R,
        state: &mut dyn std::any::Any,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String>;
}

impl CtxFnRef {
    /// A reference to `f`, run by `K`.
    pub(crate) fn of<C, A, R, K>(f: fn(&C, A) -> R) -> CtxFnRef
    where
        C: DeserializeOwned + 'static,
        A: DeserializeOwned,
        R: Serialize,
        K: CtxRunner,
    {
        FnRef::new(run_ctx_ref::<C, A, R, K> as CtxTrampoline, f as usize)
    }

    /// Calls the referenced function through its runner, in this process.
    pub(crate) fn call(
        self,
        state: &mut dyn std::any::Any,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let (tramp, target) = self.resolve();
        tramp(target, state, input, out)
    }
}

fn run_ctx_ref<C: DeserializeOwned + 'static, A: DeserializeOwned, R: Serialize, K: CtxRunner>(
    target: usize,
    state: &mut dyn std::any::Any,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    // SAFETY: `target` was made by `CtxFnRef::of::<C, A, R, K>` from a `fn(&C, A) -> R` of
    // this same binary (see `FnRef::resolve`), relocated by the same anchor.
    let f: fn(&C, A) -> R = unsafe { std::mem::transmute::<usize, fn(&C, A) -> R>(target) };
    K::run(f, state, input, out)
}

impl Entry {
    /// The entry point that runs `f` in a spawned child.
    pub(crate) fn of<A, R, M>(f: fn(A) -> R) -> Entry
    where
        A: DeserializeOwned,
        R: Outcome<M>,
    {
        FnRef::new(call::<A, R, M> as EntryTrampoline, f as usize)
    }
}

/// Runs in the child: decode `A`, call the target, send the result; returns the exit code.
fn call<A: DeserializeOwned, R: Outcome<M>, M>(
    target: usize,
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
    sock: OwnedFd,
) -> i32 {
    // SAFETY: `target` was computed by `Entry::of::<A, R, M>` in the parent from a `fn(A) -> R`
    // of this same binary (checked by `boot` against the binary's identity and fingerprint),
    // relocated by the same anchor, so it is the address of that function here.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    // The arguments start with their type's tag (`codec/ident.rs`): a value of another
    // type is refused before it is decoded.
    let args: Result<A> = handle::with_imported_fds(fds, || {
        ident::check::<A>(&args).and_then(|value| Postcard::decode(value))
    });
    match args {
        Ok(a) => super::run_target::<R, M>(super::Sink::Socket(sock), move || f(a)),
        Err(e) => {
            let msg = format!("cannot decode the arguments in the child: {e}");
            let _ = channel::send_frame(sock.as_fd(), Tag::BadArgs as u8, msg.as_bytes(), &[]);
            1
        }
    }
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    fingerprint: isize,
}

fn identity() -> std::io::Result<Identity> {
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok(Identity {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: st.st_mtime,
        fingerprint: fingerprint(),
    })
}

#[derive(Serialize, Deserialize)]
struct Boot {
    identity: Identity,
    entry: Entry,
    args: Vec<u8>,
    /// Who the child is (its name, daemon flag, parent).
    who: current::Identity,
}

/// Starts the current binary again as a child that runs `entry` on `args`.
pub(crate) fn exec_child(
    entry: Entry,
    args: &[u8],
    fds: Vec<OwnedFd>,
    who: current::Identity,
) -> Result<Started> {
    let daemon = who.daemon;
    let boot = Boot {
        identity: identity().context("cannot stat the current executable")?,
        entry,
        args: args.to_vec(),
        who,
    };
    let frame = crate::codec::to_vec(&boot)?;
    let (parent_sock, child_sock) = socket::stream_pair().context("cannot create socketpair")?;
    let child_fd = child_sock.as_raw_fd();
    let parent_pid = proc::getpid();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.env(ENV_FD, child_fd.to_string());
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (fcntl, prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            proc::clear_cloexec_raw(child_fd)?;
            if daemon && !proc::die_with_parent(parent_pid) {
                proc::exit_now(1);
            }
            Ok(())
        });
    }
    let mut children = registry::lock();
    let reaped = registry::reap_detached(&mut children);
    let child = cmd.spawn().context("cannot execute the current binary");
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            drop(children);
            drop(reaped);
            return Err(e);
        }
    };
    let pid = child.id() as i32;
    // (A spawned child inherits no memory, so nothing is pinned for it.)
    registry::add(&mut children, pid, daemon, None, crate::shm::Pins::none());
    drop(children);
    drop(reaped);
    // std's Child neither waits nor kills on drop; we reap it ourselves.
    drop(child);
    drop(child_sock);
    let fail = |e: Error| {
        let _ = proc::kill(pid, libc::SIGKILL);
        let _ = proc::reap(pid, true);
        registry::remove(pid);
        e
    };
    let pidfd = proc::pidfd_open(pid).map_err(|e| fail(Error::os("pidfd_open failed", e)))?;
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    channel::send_frame(parent_sock.as_fd(), Tag::Boot as u8, &frame, &borrowed).map_err(fail)?;
    Ok(Started {
        pid,
        link: Link::Socket {
            pidfd,
            sock: parent_sock,
        },
        reader: FrameReader::default(),
    })
}

static IS_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes that this process is a multiproc child (forked or spawned).
pub(crate) fn mark_child() {
    IS_CHILD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// True in a process started by multiproc (Fork or Spawn); the same as
/// [`parent_process`](super::parent_process)`().is_some()`.
pub fn is_spawned_child() -> bool {
    IS_CHILD.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs before `main` in every binary that links multiproc's Spawn support.
#[used]
#[link_section = ".init_array"]
static BOOT: extern "C" fn() = boot;

extern "C" fn boot() {
    let Some(fd) = std::env::var_os(ENV_FD) else {
        return;
    };
    // Not for our own children: they get their own value.
    std::env::remove_var(ENV_FD);
    let code = std::panic::catch_unwind(|| run_spawned(fd)).unwrap_or(1);
    registry::finish_children();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    proc::exit_now(code);
}

fn run_spawned(fd: std::ffi::OsString) -> i32 {
    // Rust's runtime ignores SIGPIPE before main; do the same for a child that skips main.
    proc::ignore_sigpipe();
    mark_child();
    let Some(raw) = fd
        .to_str()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&n| n >= 0)
    else {
        eprintln!("multiproc: bad {ENV_FD} value");
        return 1;
    };
    // SAFETY: the parent passed this fd number, open and not CLOEXEC, for the child to own;
    // nothing else in this fresh process refers to it.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let _ = rustix::io::fcntl_setfd(&sock, rustix::io::FdFlags::CLOEXEC);
    let fail = |sock: &OwnedFd, msg: String| {
        let _ = channel::send_frame(sock.as_fd(), Tag::Failed as u8, msg.as_bytes(), &[]);
        1
    };
    let frame = match FrameReader::default().read_blocking(&sock) {
        Ok(f) if Tag::Boot.of(&f) => f,
        Ok(_) => return fail(&sock, "unexpected bootstrap frame".into()),
        Err(e) => return fail(&sock, format!("cannot read the bootstrap frame: {e}")),
    };
    let boot: Boot = match Postcard::decode(&frame.body) {
        Ok(b) => b,
        Err(e) => return fail(&sock, format!("bad bootstrap frame: {e}")),
    };
    match identity() {
        Ok(id) if id == boot.identity => {}
        _ => {
            return fail(
                &sock,
                "the spawned child is not running the parent's binary (was it rebuilt?)".into(),
            )
        }
    }
    current::set(Box::new(boot.who));
    // The binary's identity and fingerprint are checked above.
    let (tramp, target) = boot.entry.resolve();
    tramp(target, boot.args, frame.fds, sock)
}
