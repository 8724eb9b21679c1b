//! [`ShareableList`]: Python's `multiprocessing.shared_memory.ShareableList`, in its own
//! layout, so that a list made by either side is read and written by the other.
//!
//! Layout (CPython 3.11–3.13, native byte order; `n` items; offsets relative to the data):
//! ```text
//! 0                    n                      i64
//! 8                    offsets[0..=n]         i64 each; offsets[0] = 0, offsets[n] = data size
//! 8 (n + 2)            data                   item i at offsets[i], in its format:
//!                                               "q" i64, "d" f64, "xxxxxxx?" bool (byte 7),
//!                                               "xxxxxx?x" None, "<k>s" k bytes NUL-padded
//! 8 (n + 2) + data     formats                8 bytes each, NUL-padded ASCII
//! ... + 8 n            codes                  1 byte each: 0 number/bool, 1 str, 2 bytes, 3 None
//! ```
//!
//! Everything is read from memory another process writes: every count, offset and format is
//! checked before use, and a bad one is an error ([`ErrorKind::InvalidHandle`]), never a
//! panic or an access outside the block.

use super::SharedMemory;
use crate::error::{Error, ErrorKind, Result};

/// One item of a [`ShareableList`]: the types Python's `ShareableList` holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// Python `int` (64-bit).
    Int(i64),
    /// Python `float`.
    Float(f64),
    /// Python `bool`.
    Bool(bool),
    /// Python `str` (UTF-8; trailing NULs are not kept, as in Python).
    Str(String),
    /// Python `bytes` (trailing NULs are not kept, as in Python).
    Bytes(Vec<u8>),
    /// Python `None`.
    None,
}

const FMT_INT: &str = "q";
const FMT_FLOAT: &str = "d";
const FMT_BOOL: &str = "xxxxxxx?";
const FMT_NONE: &str = "xxxxxx?x";

/// The bytes a str or bytes item of `len` bytes is given (Python: a multiple of 8, with
/// room for at least one NUL).
fn alloc_for(len: usize) -> usize {
    8 * (len / 8 + 1)
}

impl Item {
    fn format(&self) -> String {
        match self {
            Item::Int(_) => FMT_INT.into(),
            Item::Float(_) => FMT_FLOAT.into(),
            Item::Bool(_) => FMT_BOOL.into(),
            Item::None => FMT_NONE.into(),
            Item::Str(s) => format!("{}s", alloc_for(s.len())),
            Item::Bytes(b) => format!("{}s", alloc_for(b.len())),
        }
    }

    fn code(&self) -> u8 {
        match self {
            Item::Str(_) => 1,
            Item::Bytes(_) => 2,
            Item::None => 3,
            _ => 0,
        }
    }

    /// The item's bytes in a slot of `size` bytes with format `fmt`.
    fn encode(&self, fmt: &str, size: usize) -> Vec<u8> {
        let mut out = vec![0u8; size];
        match self {
            Item::Int(v) => out[..8].copy_from_slice(&v.to_ne_bytes()),
            Item::Float(v) => out[..8].copy_from_slice(&v.to_ne_bytes()),
            Item::Bool(v) => out[7] = u8::from(*v),
            Item::None => {}
            Item::Str(s) => out[..s.len()].copy_from_slice(s.as_bytes()),
            Item::Bytes(b) => out[..b.len()].copy_from_slice(b),
        }
        debug_assert!(fmt.ends_with('s') || size >= 8);
        out
    }
}

/// A fixed-length list of [`Item`]s in a [`SharedMemory`] block, in the layout of Python's
/// `multiprocessing.shared_memory.ShareableList`: Python's `ShareableList(name=...)` reads
/// and writes a list of ours, and we one of Python's.
///
/// ```
/// use multiproc::shm::{Item, ShareableList};
/// let list = ShareableList::create(&[Item::Int(1), Item::Str("hello".into()), Item::None])?;
/// list.set(0, Item::Float(2.5))?;
/// assert_eq!(list.get(0)?, Item::Float(2.5));
/// assert_eq!(list.get(1)?, Item::Str("hello".into()));
/// // A str or bytes item has the room it was created with (a multiple of 8 bytes).
/// assert!(list.set(1, Item::Str("far too long for the slot".into())).is_err());
/// list.shm().unlink()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Like Python's, it has no lock: an item written while another process reads it may be
/// read half old, half new (each 8-byte word is whole). Guard it with a
/// [`Lock`](crate::Lock) when that matters.
#[derive(Clone, Debug)]
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
}

fn bad(why: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::InvalidHandle,
        format!("not a valid ShareableList: {}", why.into()),
    )
}

impl ShareableList {
    /// A new list holding `items`, in a named block under a fresh Python-like name
    /// (Python's `ShareableList(items)`); [`shm`](Self::shm)`().name()` tells it.
    ///
    /// # Errors
    /// As [`SharedMemory::create_unique`].
    pub fn create(items: &[Item]) -> Result<ShareableList> {
        Self::build(items, None)
    }

    /// A new list holding `items`, in a block named `name` (Python's
    /// `ShareableList(items, name=name)`).
    ///
    /// # Errors
    /// As [`SharedMemory::create_named`].
    pub fn create_named(name: &str, items: &[Item]) -> Result<ShareableList> {
        Self::build(items, Some(name))
    }

    fn build(items: &[Item], name: Option<&str>) -> Result<ShareableList> {
        let n = items.len();
        let formats: Vec<String> = items.iter().map(Item::format).collect();
        let mut offsets = vec![0u64];
        for f in &formats {
            let size = slot_size(f).expect("our own formats are valid");
            offsets.push(offsets.last().expect("one at least") + size as u64);
        }
        let data = *offsets.last().expect("one at least") as usize;
        let size = 8 * (n + 2) + data + 9 * n;
        let shm = match name {
            Some(nm) => SharedMemory::create_named(nm, size)?,
            None => SharedMemory::create_unique(size)?,
        };
        let mut head = Vec::with_capacity(8 * (n + 2));
        head.extend_from_slice(&(n as i64).to_ne_bytes());
        for o in &offsets {
            head.extend_from_slice(&(*o as i64).to_ne_bytes());
        }
        shm.write_at(0, &head)?;
        let data_start = 8 * (n + 2);
        let mut body = Vec::with_capacity(data);
        for (item, f) in items.iter().zip(&formats) {
            body.extend_from_slice(&item.encode(f, slot_size(f).expect("valid")));
        }
        shm.write_at(data_start, &body)?;
        let mut meta = Vec::with_capacity(9 * n);
        for f in &formats {
            let mut b = [0u8; 8];
            b[..f.len()].copy_from_slice(f.as_bytes());
            meta.extend_from_slice(&b);
        }
        meta.extend(items.iter().map(Item::code));
        shm.write_at(data_start + data, &meta)?;
        Ok(ShareableList { shm, len: n })
    }

    /// Opens the list in the block named `name` (Python's `ShareableList(name=name)`),
    /// checking its layout.
    ///
    /// # Errors
    /// As [`SharedMemory::open`]; [`ErrorKind::InvalidHandle`] when the block does not hold
    /// a plausible list.
    pub fn open(name: &str) -> Result<ShareableList> {
        Self::from_shm(SharedMemory::open(name)?)
    }

    /// The list in `shm` (received from another process, say), checking its layout.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidHandle`] when the block does not hold a plausible list.
    pub fn from_shm(shm: SharedMemory) -> Result<ShareableList> {
        let n = read_i64(&shm, 0)?;
        let size = shm.size() as u64;
        // 8 (n + 2) header bytes and 9 n bytes of formats and codes at least.
        let need = u64::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(17))
            .and_then(|b| b.checked_add(16));
        if need.is_none_or(|need| need > size) {
            return Err(bad(format!("item count {n} does not fit in {size} bytes")));
        }
        let list = ShareableList {
            shm,
            len: n as usize,
        };
        list.layout()?;
        Ok(list)
    }

    /// The block behind the list (for its name, `unlink`, or sending it).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The number of items (fixed).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks the offsets; returns where the data, formats and codes start.
    fn layout(&self) -> Result<(usize, usize, usize)> {
        let n = self.len;
        let data_start = 8 * (n + 2);
        let mut prev = read_i64(&self.shm, 8)?;
        if prev != 0 {
            return Err(bad("the first offset is not 0"));
        }
        for i in 1..=n {
            let o = read_i64(&self.shm, 8 * (i + 1))?;
            if o < prev + 8 || (o - prev) % 8 != 0 {
                return Err(bad(format!("offset {i} ({o}) does not follow {prev}")));
            }
            prev = o;
        }
        let data = prev as u64;
        let formats = (data_start as u64).checked_add(data);
        let end = formats.and_then(|f| f.checked_add(9 * n as u64));
        match (formats, end) {
            (Some(f), Some(e)) if e <= self.shm.size() as u64 => {
                Ok((data_start, f as usize, f as usize + 8 * n))
            }
            _ => Err(bad(format!(
                "{data} bytes of data do not fit in {} bytes",
                self.shm.size()
            ))),
        }
    }

    fn index(&self, i: usize) -> Result<()> {
        if i >= self.len {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("index {i} out of range for a list of {} items", self.len),
            ));
        }
        Ok(())
    }

    /// Item `i`'s slot: its offset, size, format and code (all checked).
    fn slot(&self, i: usize) -> Result<(usize, usize, String, u8)> {
        let (data_start, formats, codes) = self.layout()?;
        let (start, room) = self.room(i)?;
        let mut f = [0u8; 8];
        self.shm.read_at(formats + 8 * i, &mut f)?;
        let fmt = std::str::from_utf8(&f)
            .map_err(|_| bad(format!("format of item {i} is not text")))?
            .trim_end_matches('\0')
            .to_string();
        let size = slot_size(&fmt).ok_or_else(|| bad(format!("unknown format {fmt:?}")))?;
        if size > room {
            return Err(bad(format!("item {i}'s format {fmt:?} overflows its slot")));
        }
        let mut code = [0u8; 1];
        self.shm.read_at(codes + i, &mut code)?;
        let at = data_start
            .checked_add(start)
            .ok_or_else(|| bad(format!("item {i}'s offset {start} overflows")))?;
        Ok((at, size, fmt, code[0]))
    }

    /// Item `i`'s offset in the data and its room in bytes (another process may have
    /// changed the offsets since `layout` looked: checked again).
    fn room(&self, i: usize) -> Result<(usize, usize)> {
        let start = read_i64(&self.shm, 8 * (i + 1))?;
        let end = read_i64(&self.shm, 8 * (i + 2))?;
        match (
            usize::try_from(start),
            end.checked_sub(start).map(usize::try_from),
        ) {
            (Ok(s), Some(Ok(r))) => Ok((s, r)),
            _ => Err(bad(format!("item {i} has offsets {start}..{end}"))),
        }
    }

    /// Item `i` (Python's `list[i]`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] past the end; [`ErrorKind::InvalidHandle`] when the
    /// item's format or code (written by another process) is not valid.
    pub fn get(&self, i: usize) -> Result<Item> {
        self.index(i)?;
        let (at, size, fmt, code) = self.slot(i)?;
        let mut b = vec![0u8; size];
        self.shm.read_at(at, &mut b)?;
        let word = |b: &[u8]| <[u8; 8]>::try_from(&b[..8]).expect("8 bytes");
        Ok(match (fmt.as_str(), code) {
            (FMT_INT, 0) => Item::Int(i64::from_ne_bytes(word(&b))),
            (FMT_FLOAT, 0) => Item::Float(f64::from_ne_bytes(word(&b))),
            (FMT_BOOL, 0) => Item::Bool(b[7] != 0),
            (FMT_NONE, 3) => Item::None,
            (f, 1 | 2) if f.ends_with('s') => {
                let keep = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
                b.truncate(keep);
                if code == 2 {
                    Item::Bytes(b)
                } else {
                    Item::Str(
                        String::from_utf8(b)
                            .map_err(|_| bad(format!("item {i} is not valid UTF-8")))?,
                    )
                }
            }
            (f, c) => return Err(bad(format!("item {i} has format {f:?} with code {c}"))),
        })
    }

    /// Sets item `i` (Python's `list[i] = value`). A number, bool or `None` fits any slot;
    /// a str or bytes fits the room its slot was created with.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] past the end or for a str/bytes longer than the slot
    /// (Python's `ValueError`); [`ErrorKind::InvalidHandle`] as for [`get`](Self::get).
    pub fn set(&self, i: usize, value: Item) -> Result<()> {
        self.index(i)?;
        let (at, _, fmt, _) = self.slot(i)?;
        let (_, room) = self.room(i)?;
        let new_fmt = match &value {
            Item::Str(s) if s.len() > room => None,
            Item::Bytes(b) if b.len() > room => None,
            Item::Str(_) | Item::Bytes(_) if fmt.ends_with('s') => Some(fmt),
            Item::Str(_) | Item::Bytes(_) => Some(format!("{room}s")),
            other => Some(other.format()),
        };
        let Some(new_fmt) = new_fmt else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("item {i} has room for {room} bytes: the value is longer"),
            ));
        };
        let (_, formats, codes) = self.layout()?;
        let size = slot_size(&new_fmt).expect("valid");
        self.shm.write_at(at, &value.encode(&new_fmt, size))?;
        let mut f = [0u8; 8];
        f[..new_fmt.len()].copy_from_slice(new_fmt.as_bytes());
        self.shm.write_at(formats + 8 * i, &f)?;
        self.shm.write_at(codes + i, &[value.code()])
    }

    /// All items, in order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

/// The bytes an item of format `fmt` takes, or `None` for a format we do not know.
fn slot_size(fmt: &str) -> Option<usize> {
    match fmt {
        FMT_INT | FMT_FLOAT | FMT_BOOL | FMT_NONE => Some(8),
        f => {
            let k: usize = f.strip_suffix('s')?.parse().ok()?;
            (f.len() <= 8 && k > 0).then_some(k)
        }
    }
}

fn read_i64(shm: &SharedMemory, at: usize) -> Result<i64> {
    let mut b = [0u8; 8];
    shm.read_at(at, &mut b)
        .map_err(|_| bad(format!("offset {at} is past the end of the block")))?;
    Ok(i64::from_ne_bytes(b))
}

impl serde::Serialize for ShareableList {
    /// As its [`SharedMemory`]: an fd (and its name) in a message that carries fds.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for ShareableList {
    /// Its [`SharedMemory`], then the layout checks of [`ShareableList::from_shm`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(d)?;
        ShareableList::from_shm(shm).map_err(crate::handle::de_err::<D::Error>)
    }
}
