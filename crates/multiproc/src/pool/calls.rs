//! The one implementation of the task calls. [`Pool`](super::Pool),
//! [`WithContext`](super::WithContext) and [`ClosurePool`](super::ClosurePool) differ only in
//! what their tasks run (a [`Code`]); each of their calls says which and comes here.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dispatch::{Code, Link, Submit};
use super::job::{Job, Outcome};
use super::result::{finish_list, finish_one, AsyncResult, Imap};
use super::{worker, Shared};
use crate::error::{Error, ErrorKind, Result};

/// A task call about to be made: on which pool, running what, with which chunksize
/// (`None`: Python's default for `map`, one task per chunk for `imap`).
pub(crate) struct Calls<'p> {
    pub(crate) pool: &'p Arc<Shared>,
    pub(crate) code: Code,
    pub(crate) chunksize: Option<usize>,
}

impl Calls<'_> {
    pub(crate) fn map<A, R>(self, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        // Taken before submitting, so that nobody else is woken to read the results.
        let driver = self.pool.link.try_drive();
        self.map_async::<A, R>(items)?.take_list(driver)
    }

    pub(crate) fn map_async<A, R>(
        self,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        check_chunksize(self.chunksize)?;
        let it = items.into_iter();
        match it.size_hint() {
            // The length is known: no need to gather the items first.
            (lo, Some(hi)) if lo == hi => self.map_submit(it, lo),
            // Python makes a list too, to know the length (and so the chunksize).
            _ => {
                let items: Vec<A> = it.collect();
                let len = items.len();
                self.map_submit(items.into_iter(), len)
            }
        }
    }

    fn map_submit<A, R>(
        self,
        mut it: impl Iterator<Item = A>,
        len: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let link = &self.pool.link;
        let chunksize = self
            .chunksize
            .unwrap_or_else(|| len.div_ceil(self.pool.processes * 4).max(1));
        link.begin()?;
        let job = Arc::new(Job::default());
        // Room for small arguments; bigger ones grow the buffer (the first one only).
        let mut hint = 4 + chunksize.min(len).saturating_mul(4).min(1 << 24);
        loop {
            let (p, rest) = next_payload(it, chunksize, Some(link), &mut hint);
            it = rest;
            match p {
                Some(p) => submit_chunk(link, &job, self.code.clone(), p),
                None => break,
            }
        }
        link.end_job();
        Ok(AsyncResult::new(link.clone(), job, finish_list::<R>))
    }

    pub(crate) fn apply<A, R>(self, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(arg)?.get()
    }

    pub(crate) fn apply_async<A, R>(self, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let link = &self.pool.link;
        link.begin()?;
        let job = Arc::new(Job::default());
        let p = next_payload(std::iter::once(arg), 1, None, &mut 64)
            .0
            .expect("one item");
        submit_chunk(link, &job, self.code, p);
        link.end_job();
        Ok(AsyncResult::new(link.clone(), job, finish_one::<R>))
    }

    pub(crate) fn imap<'a, A, R>(
        self,
        items: impl IntoIterator<Item = A> + 'a,
        unordered: bool,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let chunksize = self.chunksize.unwrap_or(1);
        check_chunksize(Some(chunksize))?;
        let link = &self.pool.link;
        link.begin()?;
        let mut it = Some(items.into_iter());
        let mut hint = 4 + chunksize.saturating_mul(4).min(1 << 20);
        let feed_link = link.clone();
        let feed = Box::new(move || {
            let (p, rest) = next_payload(it.take()?, chunksize, Some(&feed_link), &mut hint);
            it = Some(rest);
            p
        });
        Ok(Imap::start(self.pool.clone(), self.code, feed, unordered))
    }
}

/// Encodes up to `n` items as a chunk payload (`count u32 | tag(A) u64 | arguments`: the
/// arguments' type tag, `codec/ident.rs`, checked by the worker).
/// (The iterator goes in and comes back by value: see [`worker::encode_items`].)
fn encode_chunk<A: Serialize, I: Iterator<Item = A>>(
    items: I,
    n: usize,
    buf: &mut Vec<u8>,
) -> (std::result::Result<u32, (Error, u32)>, I) {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    crate::codec::ident::put_tag::<A>(buf);
    let (r, items) = worker::encode_items(items, n, buf);
    let count = match &r {
        Ok(c) | Err((_, c)) => *c,
    };
    buf[..4].copy_from_slice(&count.to_le_bytes());
    (r, items)
}

/// Adds a chunk to `job` and sends it (or fails it locally when encoding failed).
pub(crate) fn submit_chunk(link: &Link, job: &Arc<Job>, code: Code, payload: Payload) {
    match payload {
        Ok((payload, count)) => {
            let index = job.add_chunk(count as usize);
            link.submit(Submit {
                job: job.clone(),
                index,
                code,
                payload: Arc::new(payload),
            });
        }
        Err((e, count)) => {
            let index = job.add_chunk(count as usize);
            job.complete(
                index,
                Outcome::Failed {
                    kind: e.kind(),
                    message: format!("cannot send a task's argument: {}", e.message()),
                },
            );
        }
    }
}

/// A chunk's encoded arguments and count, or why they could not be encoded (and the count).
pub(crate) type Payload = std::result::Result<(Vec<u8>, u32), (Error, u32)>;

/// Encodes the next chunk of up to `n` items. `hint` is the room to start with; it becomes
/// the size of this chunk (plus a little) for the next one, so that a run of chunks grows no
/// buffer after the first. With a `link`, the buffer is one a finished chunk left behind
/// (memory already mapped and likely cached), when there is one.
/// The iterator goes in and comes back by value (see [`worker::encode_items`]).
fn next_payload<A: Serialize, I: Iterator<Item = A>>(
    items: I,
    n: usize,
    link: Option<&Link>,
    hint: &mut usize,
) -> (Option<Payload>, I) {
    let mut buf = match link {
        Some(l) => l.buffer(*hint),
        None => Vec::with_capacity(*hint),
    };
    let (r, items) = encode_chunk(items, n, &mut buf);
    *hint = (buf.len() + buf.len() / 8 + 16).min(1 << 24);
    let p = match r {
        Ok(0) => None,
        Ok(count) => Some(Ok((buf, count))),
        Err(e) => Some(Err(e)),
    };
    (p, items)
}

fn check_chunksize(chunksize: Option<usize>) -> Result<()> {
    if chunksize == Some(0) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "chunksize must be at least 1",
        ));
    }
    Ok(())
}
