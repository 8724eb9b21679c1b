//! [`Value<T>`] and [`Array<T>`]: plain data in shared memory, with a lock.
//!
//! # Safety
//!
//! The data lives in an `UnsafeCell` (Value) or a raw payload range (Array) in memory other
//! processes map. `T: ShmSafe` guarantees any bytes are a valid `T` (a hostile peer can't make
//! us read an invalid value) and that `T` holds no pointers. Plain reads and writes happen only
//! with the object's robust lock held, as volatile copies (another process is outside the
//! compiler's view); no `&T`/`&mut T` to lock-protected data is ever handed out. Atomic types
//! (no lock needed) are reached through [`Value::atomic`], which is only offered for atomics.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::atomic::{AtomicU64 as Word, Ordering};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{wrap, LockError};
use super::{Acquired, RawMutex};
use crate::error::{Error, ErrorKind, Result};
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
    const KIND: u8 = 8;
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

/// A `T` in shared memory with a robust lock (Python's `multiprocessing.Value`).
///
/// `T` must be [`ShmSafe`](crate::shm::ShmSafe): plain data valid for every bit pattern, with
/// no pointers (checked at compile time). [`get`](Value::get)/[`set`](Value::set) take the
/// lock for one access; [`get_lock`](Value::get_lock) holds it across several (a
/// read-modify-write). For atomic types, [`atomic`](Value::atomic) gives lock-free access.
///
/// The lock is re-entrant, like Python's (an `RLock`): while a thread holds a guard, its own
/// `get`, `set` and `get_lock` take one more level instead of waiting for themselves, and the
/// lock is released when its last guard is dropped (in any order).
///
/// ```
/// let v = multiproc::Value::new(1.5f64)?;
/// v.set(2.5);
/// {
///     let g = v.get_lock().unwrap();
///     g.set(g.get() * 2.0);
///     v.set(v.get() + 1.0); // the same thread: no deadlock
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
        f.debug_struct("Value").field("value", &self.get()).finish()
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

    /// Takes the value's lock (Python's `with v.get_lock():`); the guard reads and writes the
    /// value. Re-entrant: a thread that holds the lock already takes one more level.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding it:
    /// the value may be half-written.
    #[doc(alias = "acquire")]
    pub fn get_lock(&self) -> std::result::Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        let a = self
            .st()
            .lock
            .lock_reentrant(Deadline::never())
            .unwrap_or(Acquired::Clean);
        wrap(
            a,
            ValueGuard {
                st: self.st(),
                _not_send: PhantomData,
            },
        )
    }
}

impl<T: ShmSafe + Copy> Value<T> {
    /// Reads the value under its lock (Python's `v.value`). A dead previous holder is ignored.
    #[doc(alias = "value")]
    pub fn get(&self) -> T {
        let g = self.get_lock().unwrap_or_else(LockError::into_inner);
        g.get()
    }

    /// Writes the value under its lock (Python's `v.value = x`).
    #[doc(alias = "value")]
    pub fn set(&self, value: T) {
        let g = self.get_lock().unwrap_or_else(LockError::into_inner);
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

/// Holds a [`Value`]'s lock. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: ShmSafe> {
    st: &'a ValueState<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe + Copy> ValueGuard<'_, T> {
    /// Reads the value.
    pub fn get(&self) -> T {
        // SAFETY: the lock is held (this guard), so no other party writes; the cell is valid
        // and aligned, and any bytes are a valid T (ShmSafe).
        unsafe { self.st.value.get().read_volatile() }
    }

    /// Writes the value.
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; we hold the lock, so we are the only writer.
        unsafe { self.st.value.get().write_volatile(value) }
    }
}

impl<T: ShmSafe> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.st.lock.unlock_reentrant();
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

const ARRAY_KIND: u8 = 9;
const DATA_AT: usize = 64;

/// A fixed-length array of `T` in shared memory with a robust, re-entrant lock (Python's
/// `multiprocessing.Array`, whose lock is an `RLock`).
///
/// ```
/// let a = multiproc::Array::from_slice(&[1u32, 2, 3])?;
/// a.set(1, 20);
/// assert_eq!(a.to_vec(), vec![1, 20, 3]);
/// assert_eq!(a.get(7), None);
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
        {
            let g = a.get_lock().unwrap_or_else(LockError::into_inner);
            g.copy_from_slice(items);
        }
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
            let g = a.get_lock().unwrap_or_else(LockError::into_inner);
            for i in 0..len {
                g.set(i, value);
            }
        }
        Ok(a)
    }

    fn create(len: usize) -> Result<Array<T>> {
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
        let seg = Segment::create(SegmentKind::Object(ARRAY_KIND), bytes)?;
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

    fn lock(&self) -> &RawMutex {
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

    /// Takes the array's lock, to read and write several elements consistently. Re-entrant
    /// (as Python's `RLock`): a thread that holds the lock already takes one more level, so
    /// [`get`](Self::get)/[`set`](Self::set) work while it holds a guard.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding it.
    #[doc(alias = "acquire")]
    pub fn get_lock(&self) -> std::result::Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        let a = self
            .lock()
            .lock_reentrant(Deadline::never())
            .unwrap_or(Acquired::Clean);
        wrap(
            a,
            ArrayGuard {
                array: self,
                _not_send: PhantomData,
            },
        )
    }

    fn locked(&self) -> ArrayGuard<'_, T> {
        self.get_lock().unwrap_or_else(LockError::into_inner)
    }

    /// Element `i` (under the lock), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        self.locked().get(i)
    }

    /// Sets element `i` (under the lock).
    ///
    /// # Panics
    ///
    /// If `i >= len()` (Python's `IndexError`).
    pub fn set(&self, i: usize, value: T) {
        self.locked().set(i, value)
    }

    /// A copy of all elements (under the lock; Python's `arr[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        self.locked().to_vec()
    }
}

/// Holds an [`Array`]'s lock. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: ShmSafe + Copy> {
    array: &'a Array<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe + Copy> ArrayGuard<'_, T> {
    fn ptr(&self, i: usize) -> *mut T {
        assert!(i < self.array.len);
        // SAFETY: `DATA_AT + i * size_of::<T>()` is inside the payload (checked at create or
        // open: DATA_AT + len * size <= payload_len, and i < len), and aligned for T (payload
        // is 64-aligned, DATA_AT is 64, align_of::<T>() <= 64 divides size_of::<T>()).
        unsafe { (self.array.seg.payload().add(DATA_AT) as *mut T).add(i) }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.array.len == 0
    }

    /// Element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.array.len {
            return None;
        }
        // SAFETY: in bounds and aligned (see `ptr`); the lock is held, so no one else writes;
        // any bytes are a valid T (ShmSafe).
        Some(unsafe { self.ptr(i).read_volatile() })
    }

    /// Sets element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn set(&self, i: usize, value: T) {
        assert!(
            i < self.array.len,
            "Array index {i} out of range for length {}",
            self.array.len
        );
        // SAFETY: as in `get`; we hold the lock, so we are the only writer.
        unsafe { self.ptr(i).write_volatile(value) }
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.array.len)
            .map(|i| self.get(i).expect("in range"))
            .collect()
    }

    /// Overwrites every element from `items`.
    ///
    /// # Panics
    ///
    /// If `items.len() != len()`.
    pub fn copy_from_slice(&self, items: &[T]) {
        assert_eq!(items.len(), self.array.len, "Array length mismatch");
        for (i, v) in items.iter().enumerate() {
            self.set(i, *v);
        }
    }
}

impl<T: ShmSafe + Copy> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.array.lock().unlock_reentrant();
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
