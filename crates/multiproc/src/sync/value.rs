//! [`Value<T>`] and [`Array<T>`]: plain data in shared memory, with a lock.
//!
//! # Safety
//!
//! The data lives in an `UnsafeCell` (Value) or a raw payload range (Array) in memory other
//! processes map. `T: ShmSafe` guarantees any bytes are a valid `T` (a hostile peer can't make
//! us read an invalid value) and that `T` holds no pointers. The data is touched only with the
//! object's robust lock held: by volatile copies (`get`/`set`), or through the `&T`/`&mut T`
//! (`&[T]`/`&mut [T]`) a guard's `Deref`/`DerefMut` hands out, for `T: Copy` only (so never
//! an atomic, which [`Value::atomic`] reaches without the lock). While the lock is held no
//! honest process touches the data; a dishonest one that writes without it changes the bytes
//! under the reference, which yields wrong values of `T` and nothing worse — the reasoning
//! the queue's `FrameRef::bytes` rests on too.
//!
//! Inside this process the lock is re-entrant (Python's is an `RLock`): a thread holding a
//! guard may take more levels (`v.get()`, another `lock()`). A reference handed out by one
//! guard must then not meet an access through another path, so the first guard that
//! dereferences *lends* the data: this thread's lending record (a thread-local list of
//! object addresses, never in shared memory, which a peer could forge) holds the object until
//! that guard is dropped, and every other access from this thread — `v.get()`, `v.set()`,
//! another guard's `get`, `set` or deref — panics meanwhile, as a `RefCell` does, instead of
//! aliasing. Accesses through the lending guard itself are checked by the borrow checker
//! (`set` takes `&mut self`). Other threads cannot touch the data without the lock.

#![allow(unsafe_code)]

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::atomic::{AtomicU64 as Word, Ordering};
use std::time::{Duration, Instant};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{owned, timed, tried, LockTimeoutError, TryLockError};
use super::RawMutex;
use crate::error::{Error, ErrorKind, OwnerDied, Result};
use crate::shm::{Segment, SegmentKind, Shared, ShmObject, ShmSafe};
use crate::sys::Deadline;

#[repr(C)]
pub(crate) struct ValueState<T> {
    lock: RawMutex,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only read or written (by volatile copies) with `lock` held, or reached as
// `&T` when `T` is an atomic type (sealed `Atomic` trait), which is safe to share.
unsafe impl<T: ShmSafe> Sync for ValueState<T> {}
// SAFETY: a RawMutex and a ShmSafe T: valid for all bit patterns, no pointers; concurrent
// access is synchronized as described on the Sync impl.
unsafe impl<T: ShmSafe> ShmSafe for ValueState<T> {}
impl<T: ShmSafe> ShmObject for ValueState<T> {
    const KIND: u8 = crate::kinds::object::VALUE;
}

mod sealed {
    pub trait Sealed {}
}

/// Atomic types, usable in a [`Value`] without its lock.
pub trait Atomic: ShmSafe + sealed::Sealed {}
macro_rules! atomic {
    ($($t:ty),*) => { $( impl sealed::Sealed for $t {} impl Atomic for $t {} )* };
}
atomic!(
    AtomicU8,
    AtomicU32,
    AtomicU64,
    AtomicI32,
    AtomicI64,
    AtomicUsize
);

/// This thread's lending record (see the module docs): the objects, by the address of their
/// lock word in this process, whose data a guard of this thread has lent out by a deref.
mod lending {
    use std::cell::RefCell;

    use crate::sys::thread::fork_generation;

    thread_local! {
        /// (address, fork generation when lent): an entry copied into a fork child with the
        /// forking thread's locals belongs to the parent's guards, and is ignored there.
        static LENT: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    }

    /// True when a guard of this thread has lent the object at `at` out.
    pub(super) fn is_lent(at: usize) -> bool {
        let gen = fork_generation();
        // Unreachable thread locals (a guard used while the thread is torn down): assume the
        // worst, so that nothing aliases.
        LENT.try_with(|l| l.borrow().iter().any(|&(a, g)| a == at && g == gen))
            .unwrap_or(true)
    }

    /// Records that the object at `at` is lent out.
    pub(super) fn lend(at: usize) {
        let gen = fork_generation();
        LENT.with(|l| {
            let mut l = l.borrow_mut();
            l.retain(|&(_, g)| g == gen);
            l.push((at, gen));
        });
    }

    /// Ends the lending of the object at `at` (its lending guard is dropped).
    pub(super) fn give_back(at: usize) {
        let _ = LENT.try_with(|l| l.borrow_mut().retain(|&(a, _)| a != at));
    }
}

/// One guard's part in the lending protocol (see the module docs).
struct Lender {
    /// The object's address (its lock word) in this process.
    at: usize,
    /// This guard has lent the data out (and holds the record until dropped).
    lent: Cell<bool>,
}

impl Lender {
    fn new<L>(lock: &L) -> Lender {
        Lender {
            at: lock as *const L as usize,
            lent: Cell::new(false),
        }
    }

    /// Before an access through this guard: panics when another guard of this thread has
    /// lent the data out.
    #[inline]
    fn check(&self) {
        if !self.lent.get() && lending::is_lent(self.at) {
            lent_elsewhere();
        }
    }

    /// Before handing out a reference: lends the data out, once per guard.
    #[inline]
    fn lend(&self) {
        if !self.lent.get() {
            if lending::is_lent(self.at) {
                lent_elsewhere();
            }
            lending::lend(self.at);
            self.lent.set(true);
        }
    }
}

impl Drop for Lender {
    fn drop(&mut self) {
        if self.lent.get() {
            lending::give_back(self.at);
        }
    }
}

#[cold]
#[track_caller]
fn lent_elsewhere() -> ! {
    panic!(
        "a Value or Array was accessed while a guard of the same thread had lent it out \
         (dereferenced it); use that guard, or drop it first"
    )
}

/// A `T` in shared memory with a robust lock (Python's `multiprocessing.Value`).
///
/// `T` must be [`ShmSafe`]: plain data valid for every bit pattern, with
/// no pointers (checked at compile time). [`get`](Value::get)/[`set`](Value::set) take the
/// lock for one access; [`lock`](Value::lock) (Python's `get_lock()`) holds it across
/// several, and its guard dereferences to the `T`: `*v.lock()? += 1` is Python's
/// `with v.get_lock(): v.value += 1`. For atomic types, [`atomic`](Value::atomic) gives
/// lock-free access.
///
/// The lock has the four forms of every lock: [`lock`](Value::lock),
/// [`try_lock`](Value::try_lock), [`lock_timeout`](Value::lock_timeout),
/// [`lock_deadline`](Value::lock_deadline). It is re-entrant, like Python's (an `RLock`):
/// while a thread holds a guard, its own `get`, `set` and `lock` take one more level instead
/// of waiting for themselves, and the lock is released when its last guard is dropped (in any
/// order). Once a guard has been dereferenced it has *lent* the value out until it is dropped:
/// any other access from the same thread meanwhile panics rather than alias the reference
/// (see the module notes in the source).
///
/// ```
/// use multiproc::{OwnerDied, Value};
/// let v = Value::new(1.5f64)?;
/// v.set(2.5);
/// {
///     let mut g = v.lock().unwrap_or_else(OwnerDied::into_inner);
///     *g *= 2.0;
/// }
/// {
///     let mut g = v.lock().unwrap();
///     g.set(g.get() + 0.5);
///     v.set(v.get() + 0.5); // the same thread, no deref: no deadlock, no panic
/// }
/// assert_eq!(v.get(), 6.0);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Value<T: ShmSafe> {
    inner: Shared<ValueState<T>>,
}

impl<T: ShmSafe> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            inner: self.inner.clone(),
        }
    }
}

impl<T: ShmSafe> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Value {
            inner: Shared::deserialize(d)?,
        })
    }
}

impl<T: ShmSafe + Copy + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Value");
        if lending::is_lent(&self.st().lock as *const RawMutex as usize) {
            d.field("value", &format_args!("<lent out by a guard>"));
        } else {
            d.field("value", &self.get());
        }
        d.finish()
    }
}

impl<T: ShmSafe> Value<T> {
    /// A new value in shared memory.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn new(value: T) -> Result<Value<T>> {
        let mut value = Some(value);
        Ok(Value {
            inner: Shared::new(|s: &ValueState<T>| {
                s.lock.init();
                // SAFETY: nobody else can see the object yet (Shared::new runs `init` before
                // handing it out); the cell is valid and aligned for T.
                unsafe { s.value.get().write(value.take().expect("init runs once")) };
            })?,
        })
    }

    fn st(&self) -> &ValueState<T> {
        self.inner.get()
    }

    fn guard(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            st: self.st(),
            lender: Lender::new(&self.st().lock),
            _not_send: PhantomData,
        }
    }

    /// Takes the value's lock (Python's `with v.get_lock():`); the guard reads and writes the
    /// value (`*g`, `g.get()`, `g.set(x)`). Re-entrant: a thread that holds the lock already
    /// takes one more level.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the guard) when the previous holder died holding it: the value may
    /// be half-written. The only error.
    #[doc(alias = "get_lock", alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<ValueGuard<'_, T>, OwnerDied<ValueGuard<'_, T>>> {
        owned(self.st().lock.lock_reentrant_forever(), self.guard())
    }

    /// Takes the value's lock (or one more level of it) without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when another thread holds it;
    /// [`TryLockError::OwnerDied`] with the guard.
    pub fn try_lock(
        &self,
    ) -> std::result::Result<ValueGuard<'_, T>, TryLockError<ValueGuard<'_, T>>> {
        tried(self.st().lock.try_lock_reentrant(), || self.guard())
    }

    /// Takes the value's lock, waiting at most `timeout` (any `Duration`).
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`]; [`LockTimeoutError::OwnerDied`] with the guard.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        timed(
            self.st().lock.lock_reentrant(Deadline::within(timeout)),
            || self.guard(),
        )
    }

    /// Takes the value's lock, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        timed(
            self.st().lock.lock_reentrant(Deadline::at(deadline)),
            || self.guard(),
        )
    }
}

/// Named values (see docs/names.md): the same methods as the named
/// [`Lock`](crate::Lock)'s, checked for `T` by its type tag on open (`codec/ident.rs`).
impl<T: ShmSafe> Value<T> {
    fn named_what() -> (u32, u64) {
        (
            crate::kinds::object::VALUE as u32,
            crate::codec::ident::tag_of::<T>(),
        )
    }

    /// A new value under the name `name`, which unrelated processes of this user open with
    /// [`open_named`](Self::open_named). The name appears only once the value is set, and
    /// stays until [`unlink`](Self::unlink) or [`shm::unlink_named`](crate::shm::unlink_named).
    ///
    /// ```
    /// use multiproc::Value;
    /// # let name = format!("doc_value_named_{}", std::process::id());
    /// let v = Value::create_named(&name, 1.5f64)?;
    /// let other = Value::<f64>::open_named(&name)?; // in any process of this user
    /// other.set(2.5);
    /// assert_eq!(v.get(), 2.5);
    /// // The wrong type is refused.
    /// assert!(Value::<u64>::open_named(&name).is_err());
    /// v.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; [`ErrorKind::InvalidArgument`]
    /// for a bad name; OS errors.
    pub fn create_named(name: &str, value: T) -> Result<Value<T>> {
        let (what, tag) = Self::named_what();
        let mut value = Some(value);
        Ok(Value {
            inner: Shared::create_named(name, what, tag, |s: &ValueState<T>| {
                s.lock.init();
                // SAFETY: nobody else can see the object yet (the name appears after
                // `init`); the cell is valid and aligned for T.
                unsafe { s.value.get().write(value.take().expect("init runs once")) };
            })?,
        })
    }

    /// Opens the value named `name`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidHandle`] when the name holds another
    /// kind of object, a `Value` of another type, or no multiproc object at all.
    pub fn open_named(name: &str) -> Result<Value<T>> {
        let (what, tag) = Self::named_what();
        Ok(Value {
            inner: Shared::open_named(name, what, tag, &|| {
                format!("a Value<{}>", std::any::type_name::<T>())
            })?,
        })
    }

    /// Opens the value named `name`, or creates it holding `value` when there is none.
    ///
    /// # Errors
    /// As [`open_named`](Self::open_named) and [`create_named`](Self::create_named).
    pub fn open_or_create(name: &str, value: T) -> Result<Value<T>>
    where
        T: Copy,
    {
        crate::shm::named::open_or_create(
            name,
            || Self::open_named(name),
            || Self::create_named(name, value),
        )
    }

    /// The name this value was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name()
    }

    /// Removes this value's name (those that have it keep it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name or the name now belongs to another
    /// object; [`ErrorKind::NotFound`] when the name is gone.
    pub fn unlink(&self) -> Result<()> {
        self.inner.unlink()
    }
}

impl<T: ShmSafe + Copy> Value<T> {
    /// Reads the value under its lock (Python's `v.value`). A dead previous holder is ignored.
    ///
    /// # Panics
    ///
    /// When a guard of this thread has lent the value out (see [`Value`]).
    #[doc(alias = "value")]
    pub fn get(&self) -> T {
        let g = self.lock().unwrap_or_else(OwnerDied::into_inner);
        g.get()
    }

    /// Writes the value under its lock (Python's `v.value = x`).
    ///
    /// # Panics
    ///
    /// When a guard of this thread has lent the value out (see [`Value`]).
    #[doc(alias = "value")]
    pub fn set(&self, value: T) {
        let mut g = self.lock().unwrap_or_else(OwnerDied::into_inner);
        g.set(value)
    }
}

impl<T: Atomic> Value<T> {
    /// The atomic itself, for lock-free access.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let v = multiproc::Value::new(AtomicU64::new(0))?;
    /// v.atomic().fetch_add(2, Ordering::Relaxed);
    /// assert_eq!(v.atomic().load(Ordering::Relaxed), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn atomic(&self) -> &T {
        // SAFETY: T is an atomic type: shared access through &T is its purpose, every bit
        // pattern is valid, and nothing writes the cell non-atomically (get/set need Copy,
        // which atomics are not).
        unsafe { &*self.st().value.get() }
    }
}

/// Holds a [`Value`]'s lock (one level of it). Not `Send`.
///
/// For `T: Copy` it dereferences to the value — `*g += 1`, `g.field = x` — and also offers
/// [`get`](Self::get)/[`set`](Self::set) copies. The first deref lends the value out until
/// the guard is dropped (see [`Value`]).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: ShmSafe> {
    st: &'a ValueState<T>,
    lender: Lender,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe + Copy> ValueGuard<'_, T> {
    /// Reads the value.
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the value out.
    pub fn get(&self) -> T {
        self.lender.check();
        // SAFETY: the lock is held (this guard), so no honest party writes; within this
        // thread no other guard has lent the value out (checked), so no `&mut T` to it lives;
        // the cell is valid and aligned, and any bytes are a valid T (ShmSafe).
        unsafe { self.st.value.get().read_volatile() }
    }

    /// Writes the value.
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the value out.
    pub fn set(&mut self, value: T) {
        self.lender.check();
        // SAFETY: as in `get`; we hold the lock, so we are the only writer, and `&mut self`
        // means no reference this guard handed out is alive.
        unsafe { self.st.value.get().write_volatile(value) }
    }
}

impl<T: ShmSafe + Copy> Deref for ValueGuard<'_, T> {
    type Target = T;

    /// The value, in place (lends it out until the guard is dropped).
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the value out.
    fn deref(&self) -> &T {
        self.lender.lend();
        // SAFETY: the lock is held by this guard, and the value is lent to it: until the
        // guard is dropped nothing else in this process reads or writes it (other threads
        // wait for the lock; this thread's other paths panic, see the module docs), and the
        // reference lives no longer than the guard. Valid, aligned, any bytes a valid T; a
        // dishonest process writing without the lock yields wrong values only (module docs).
        unsafe { &*self.st.value.get() }
    }
}

impl<T: ShmSafe + Copy> DerefMut for ValueGuard<'_, T> {
    /// The value, in place, to change (lends it out until the guard is dropped).
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the value out.
    fn deref_mut(&mut self) -> &mut T {
        self.lender.lend();
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference this guard
        // has out.
        unsafe { &mut *self.st.value.get() }
    }
}

impl<T: ShmSafe> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.st.lock.unlock_reentrant();
        // `lender`, dropped next, ends the lending; that it comes after the unlock does not
        // matter, the record being this thread's alone.
    }
}

impl<T: ShmSafe> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValueGuard")
    }
}

// ---------------------------------------------------------------------------------------
// Array
//
// Own segment, kind Object(9). Payload layout:
//   0   lock       RawMutex (16 bytes)
//   16  len        AtomicU64  number of elements
//   24  elem_size  AtomicU64  size_of::<T>() (checked on open)
//   64  data       len * size_of::<T>(), aligned to 64

const ARRAY_KIND: u8 = crate::kinds::object::ARRAY;
const DATA_AT: usize = 64;

/// A fixed-length array of `T` in shared memory with a robust, re-entrant lock (Python's
/// `multiprocessing.Array`, whose lock is an `RLock`).
///
/// [`get`](Array::get)/[`set`](Array::set)/[`to_vec`](Array::to_vec) take the lock for one
/// access; [`lock`](Array::lock) (Python's `get_lock()`) holds it across several, and its
/// guard dereferences to the elements as a slice: `g[3] = 7`, `g.iter().sum()`,
/// `g.sort()`. The lock has the four forms of every lock (`lock`, `try_lock`,
/// `lock_timeout`, `lock_deadline`) and is re-entrant and lent out by a deref as
/// [`Value`]'s is.
///
/// There is no `a[i]` on the array itself: `Index` must return a reference that outlives the
/// call, i.e. one into shared memory with the lock released, which other processes may
/// write at any moment. Index through the guard (`a.lock()?[i]`) or copy with `a.get(i)`.
///
/// ```
/// use multiproc::{Array, OwnerDied};
/// let a = Array::from_slice(&[1u32, 2, 3])?;
/// a.set(1, 20);
/// assert_eq!(a.to_vec(), vec![1, 20, 3]);
/// assert_eq!(a.get(7), None);
/// {
///     let mut g = a.lock().unwrap_or_else(OwnerDied::into_inner);
///     g[2] += 10;
///     g.swap(0, 1);
/// }
/// assert_eq!(a.to_vec(), vec![20, 1, 13]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Array<T: ShmSafe + Copy> {
    seg: Segment,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: ShmSafe + Copy> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            seg: self.seg.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe + Copy + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_vec()).finish()
    }
}

impl<T: ShmSafe + Copy> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, T: ShmSafe + Copy> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        Array::open(seg).map_err(D::Error::custom)
    }
}

impl<T: ShmSafe + Copy> Array<T> {
    /// An array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        let a = Self::create(items.len())?;
        a.locked().copy_from_slice(items);
        Ok(a)
    }

    /// An array of `len` copies of `value`.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn from_elem(value: T, len: usize) -> Result<Array<T>> {
        let a = Self::create(len)?;
        {
            let mut g = a.locked();
            for i in 0..len {
                g.set(i, value);
            }
        }
        Ok(a)
    }

    /// A new array holding a copy of `items` under the name `name`, which unrelated
    /// processes of this user open with [`open_named`](Self::open_named) (see
    /// docs/names.md). The name appears once the items are in place.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; [`ErrorKind::InvalidArgument`]
    /// for a bad name; OS errors (`/dev/shm` full).
    pub fn create_named(name: &str, items: &[T]) -> Result<Array<T>> {
        let a = Self::create_in(items.len(), Some(name))?;
        a.locked().copy_from_slice(items);
        crate::shm::named::publish(&a.seg, name)?;
        Ok(a)
    }

    /// Opens the array named `name`; its length is the creator's.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidHandle`] when the name holds another
    /// kind of object, an `Array` of another element type, or a damaged one.
    pub fn open_named(name: &str) -> Result<Array<T>> {
        let seg = crate::shm::named::open_segment(
            name,
            SegmentKind::Object(ARRAY_KIND),
            Self::identity(),
            &|| format!("an Array<{}>", std::any::type_name::<T>()),
        )?;
        Self::open(seg)
    }

    /// Opens the array named `name`, or creates it holding `items` when there is none (an
    /// existing one keeps its own length and contents).
    ///
    /// # Errors
    /// As [`open_named`](Self::open_named) and [`create_named`](Self::create_named).
    pub fn open_or_create(name: &str, items: &[T]) -> Result<Array<T>> {
        crate::shm::named::open_or_create(
            name,
            || Self::open_named(name),
            || Self::create_named(name, items),
        )
    }

    /// The name this array was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// Removes this array's name (those that have it keep it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name or the name now belongs to another
    /// object; [`ErrorKind::NotFound`] when the name is gone.
    pub fn unlink(&self) -> Result<()> {
        crate::shm::named::unlink_segment(&self.seg)
    }

    fn create(len: usize) -> Result<Array<T>> {
        Self::create_in(len, None)
    }

    /// The identity of a named `Array<T>` (`shm/named.rs`).
    fn identity() -> crate::shm::Identity {
        crate::shm::Identity {
            what: ARRAY_KIND as u32,
            tag: crate::codec::ident::tag_of::<T>(),
        }
    }

    /// An array of `len` zeros, in a named segment (not yet published) when `named`.
    fn create_in(len: usize, named: Option<&str>) -> Result<Array<T>> {
        if std::mem::align_of::<T>() > DATA_AT {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "Array element alignment above 64",
            ));
        }
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(DATA_AT))
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "Array too large"))?;
        let seg = match named {
            None => Segment::create(SegmentKind::Object(ARRAY_KIND), bytes)?,
            Some(_) => crate::shm::named::create_segment(
                SegmentKind::Object(ARRAY_KIND),
                bytes,
                Self::identity(),
                bytes,
            )?,
        };
        let lock: &RawMutex = seg.get(0).expect("array header in bounds");
        lock.init();
        let l: &Word = seg.get(16).expect("array header in bounds");
        l.store(len as u64, Ordering::Relaxed);
        let s: &Word = seg.get(24).expect("array header in bounds");
        s.store(std::mem::size_of::<T>() as u64, Ordering::Relaxed);
        Ok(Array {
            seg,
            len,
            _t: PhantomData,
        })
    }

    /// Validates a segment received from elsewhere.
    fn open(seg: Segment) -> Result<Array<T>> {
        let bad = |m: &'static str| Error::new(ErrorKind::InvalidHandle, m);
        if seg.kind() != SegmentKind::Object(ARRAY_KIND) {
            return Err(bad("not an Array segment"));
        }
        let len: &Word = seg
            .get(16)
            .ok_or_else(|| bad("Array header out of bounds"))?;
        let size: &Word = seg
            .get(24)
            .ok_or_else(|| bad("Array header out of bounds"))?;
        if size.load(Ordering::Relaxed) != std::mem::size_of::<T>() as u64 {
            return Err(bad("Array element type does not match"));
        }
        let len = usize::try_from(len.load(Ordering::Relaxed))
            .map_err(|_| bad("Array length out of range"))?;
        let end = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(DATA_AT))
            .ok_or_else(|| bad("Array length out of range"))?;
        if end > seg.payload_len() {
            return Err(bad("Array length exceeds its segment"));
        }
        seg.get::<RawMutex>(0)
            .ok_or_else(|| bad("Array header out of bounds"))?;
        Ok(Array {
            seg,
            len,
            _t: PhantomData,
        })
    }

    fn raw(&self) -> &RawMutex {
        self.seg.get(0).expect("checked when the handle was made")
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            array: self,
            lender: Lender::new(self.raw()),
            _not_send: PhantomData,
        }
    }

    /// Takes the array's lock, to read and write several elements consistently (Python's
    /// `with a.get_lock():`); the guard dereferences to the elements as a slice. Re-entrant
    /// (as Python's `RLock`): a thread that holds the lock already takes one more level, so
    /// [`get`](Self::get)/[`set`](Self::set) work while it holds a guard that it has not
    /// dereferenced.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the guard) when the previous holder died holding it — the only
    /// error.
    #[doc(alias = "get_lock", alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<ArrayGuard<'_, T>, OwnerDied<ArrayGuard<'_, T>>> {
        owned(self.raw().lock_reentrant_forever(), self.guard())
    }

    /// Takes the array's lock (or one more level of it) without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when another thread holds it;
    /// [`TryLockError::OwnerDied`] with the guard.
    pub fn try_lock(
        &self,
    ) -> std::result::Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        tried(self.raw().try_lock_reentrant(), || self.guard())
    }

    /// Takes the array's lock, waiting at most `timeout` (any `Duration`).
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`]; [`LockTimeoutError::OwnerDied`] with the guard.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        timed(self.raw().lock_reentrant(Deadline::within(timeout)), || {
            self.guard()
        })
    }

    /// Takes the array's lock, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        timed(self.raw().lock_reentrant(Deadline::at(deadline)), || {
            self.guard()
        })
    }

    fn locked(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    /// Element `i` (under the lock), or `None` past the end.
    ///
    /// # Panics
    ///
    /// When a guard of this thread has lent the array out (see [`Array`]).
    pub fn get(&self, i: usize) -> Option<T> {
        self.locked().get(i)
    }

    /// Sets element `i` (under the lock).
    ///
    /// # Panics
    ///
    /// If `i >= len()` (Python's `IndexError`); when a guard of this thread has lent the
    /// array out.
    pub fn set(&self, i: usize, value: T) {
        self.locked().set(i, value)
    }

    /// A copy of all elements (under the lock; Python's `arr[:]`).
    ///
    /// # Panics
    ///
    /// When a guard of this thread has lent the array out.
    pub fn to_vec(&self) -> Vec<T> {
        self.locked().to_vec()
    }
}

/// Holds an [`Array`]'s lock (one level of it). Not `Send`.
///
/// Dereferences to the elements as a slice (`g[i]`, `g[i] = x`, `g.iter()`, `g.fill(0)`);
/// [`get`](Self::get)/[`set`](Self::set) copy single elements. The first deref lends the
/// array out until the guard is dropped (see [`Array`]).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: ShmSafe + Copy> {
    array: &'a Array<T>,
    lender: Lender,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe + Copy> ArrayGuard<'_, T> {
    /// The first element's place.
    fn base(&self) -> *mut T {
        // SAFETY: `DATA_AT + len * size_of::<T>()` lies inside the payload (checked at create
        // or open), so `DATA_AT` does; it is aligned for T (payload is 64-aligned, DATA_AT is
        // 64, align_of::<T>() <= 64 checked at create).
        unsafe { self.array.seg.payload().add(DATA_AT) as *mut T }
    }

    fn ptr(&self, i: usize) -> *mut T {
        assert!(i < self.array.len);
        // SAFETY: `i < len`, so element `i` lies inside the payload (see `base`); aligned as
        // `size_of::<T>()` is a multiple of `align_of::<T>()`.
        unsafe { self.base().add(i) }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.array.len == 0
    }

    /// Element `i`, or `None` past the end (a copy; `g[i]` reads in place).
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the array out.
    pub fn get(&self, i: usize) -> Option<T> {
        self.lender.check();
        if i >= self.array.len {
            return None;
        }
        // SAFETY: in bounds and aligned (see `ptr`); the lock is held, so no honest party
        // writes, and no other guard of this thread has lent the array out (checked), so no
        // `&mut` to it lives; any bytes are a valid T (ShmSafe).
        Some(unsafe { self.ptr(i).read_volatile() })
    }

    /// Sets element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`; when another guard of this thread has lent the array out.
    pub fn set(&mut self, i: usize, value: T) {
        self.lender.check();
        assert!(
            i < self.array.len,
            "Array index {i} out of range for length {}",
            self.array.len
        );
        // SAFETY: as in `get`; we hold the lock, so we are the only writer, and `&mut self`
        // means no reference this guard handed out is alive.
        unsafe { self.ptr(i).write_volatile(value) }
    }

    /// A copy of all elements.
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the array out.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.array.len)
            .map(|i| self.get(i).expect("in range"))
            .collect()
    }

    /// Overwrites every element from `items`.
    ///
    /// # Panics
    ///
    /// If `items.len() != len()`; when another guard of this thread has lent the array out.
    pub fn copy_from_slice(&mut self, items: &[T]) {
        assert_eq!(items.len(), self.array.len, "Array length mismatch");
        for (i, v) in items.iter().enumerate() {
            self.set(i, *v);
        }
    }
}

impl<T: ShmSafe + Copy> Deref for ArrayGuard<'_, T> {
    type Target = [T];

    /// The elements, in place (lends the array out until the guard is dropped).
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the array out.
    fn deref(&self) -> &[T] {
        self.lender.lend();
        // SAFETY: `len` elements from `base` lie inside the mapping, aligned (see `base`),
        // which the array's segment keeps mapped for longer than this borrow of the guard;
        // the lock is held and the array lent to this guard, so nothing else in this process
        // touches it while the slice lives (module docs); any bytes are valid T values.
        unsafe { std::slice::from_raw_parts(self.base(), self.array.len) }
    }
}

impl<T: ShmSafe + Copy> DerefMut for ArrayGuard<'_, T> {
    /// The elements, in place, to change (lends the array out until the guard is dropped).
    ///
    /// # Panics
    ///
    /// When another guard of this thread has lent the array out.
    fn deref_mut(&mut self) -> &mut [T] {
        self.lender.lend();
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference this guard
        // has out.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.array.len) }
    }
}

impl<T: ShmSafe + Copy> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.array.raw().unlock_reentrant();
    }
}

impl<T: ShmSafe + Copy> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArrayGuard")
    }
}

// Keep the imports of atomic types used even if the macro list changes.
const _: fn() = || {
    let _ = AtomicU32::new(0);
};
