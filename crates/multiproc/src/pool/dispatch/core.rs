//! The state the pool's handles, its driver and its dispatcher thread share ([`Core`], under
//! [`Link::core`](super::Link::core)): the chunks waiting, and each worker's sending side
//! ([`Feed`]); what is done with a worker's messages, and how chunks are handed to workers.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::{Code, Submit, PIPELINE, SPARE_MAX_BYTES};
use crate::error::ErrorKind;
use crate::pool::job::Outcome;
use crate::pool::mailbox::{Mailbox, SLOTS};
use crate::pool::protocol::{
    CodeKind, ContextPart, Kind, Place, ResultsHead, Task, RESULTS_INLINE_HEAD,
};
use crate::process::channel::{self, FrameReader};
use crate::sys::socket;

/// A frame to send: its header bytes, then (for a task) the chunk's arguments.
pub(super) struct Out {
    pub(super) head: Vec<u8>,
    pub(super) body: Option<Arc<Vec<u8>>>,
    /// Bytes sent already.
    pub(super) pos: usize,
}

impl Out {
    pub(super) fn quit() -> Out {
        let mut head = Vec::new();
        channel::push_header(&mut head, Kind::Quit as u8, 0);
        Out {
            head,
            body: None,
            pos: 0,
        }
    }
}

pub(super) struct InFlight {
    pub(super) sub: Submit,
    pub(super) seq: u64,
    pub(super) attempts: u32,
    /// Its slot in the worker's mailbox (where its outcomes come back when they fit).
    pub(super) slot: usize,
}

/// The sending side of one worker: what it was given and what is still to be written to
/// its socket. Lives in [`Core`], at the same index as the worker in the dispatcher.
pub(super) struct Feed {
    pub(super) pid: i32,
    pub(super) sock: Arc<OwnedFd>,
    /// Results read so far (whoever reads holds the [`Core`] lock).
    pub(super) reader: FrameReader,
    /// Why it is going away, when it said so (a Failed frame, a malformed message).
    pub(super) note: Option<String>,
    /// It misbehaved: the dispatcher kills it.
    pub(super) kill: bool,
    /// The seq of the chunk it began last, and the slots for chunks' bytes.
    pub(super) mailbox: Mailbox,
    /// Frames not sent yet (the first one maybe in part).
    pub(super) out: VecDeque<Out>,
    pub(super) inflight: VecDeque<InFlight>,
    /// Chunks given to it (for maxtasksperchild).
    pub(super) assigned: usize,
    /// The id of the context it holds (0: none), once it has run the chunks sent so far.
    pub(super) context: u64,
    pub(super) quitting: bool,
    pub(super) ended: bool,
}

impl Feed {
    /// Writes queued frames without blocking, as far as the socket takes them.
    pub(super) fn flush(&mut self) {
        while let Some(o) = self.out.front_mut() {
            let body: &[u8] = o.body.as_ref().map_or(&[], |b| &b[..]);
            let (h, b) = if o.pos < o.head.len() {
                (&o.head[o.pos..], body)
            } else {
                (&[][..], &body[o.pos - o.head.len()..])
            };
            match socket::send_msg(
                self.sock.as_fd(),
                &[IoSlice::new(h), IoSlice::new(b)],
                &[],
                true,
            ) {
                Ok(n) => {
                    o.pos += n;
                    if o.pos >= o.head.len() + body.len() {
                        self.out.pop_front();
                    }
                }
                Err(_) => break, // WouldBlock: poll says when; EPIPE: the pidfd will say.
            }
        }
    }
}

/// The state shared by the pool's handles and the dispatcher (under
/// [`Link::core`](super::Link::core)). Workers are added and removed by the dispatcher only.
pub(crate) struct Core {
    pub(super) maxtasks: Option<usize>,
    pub(super) retries: u32,
    pub(super) workers: Vec<Feed>,
    pub(super) pending: VecDeque<(Submit, u32)>,
    pub(super) closing: bool,
    pub(super) terminating: bool,
    /// The dispatcher has stopped: nothing more runs.
    pub(super) stopped: bool,
    pub(super) open_jobs: usize,
    pub(super) broken: Option<String>,
    pub(super) seq: u64,
    /// A caller is reading the workers' sockets (see the docs of `dispatch`).
    pub(super) driver: bool,
    /// The dispatcher's current poll includes the workers' sockets.
    pub(super) dispatcher_reads: bool,
    /// Argument buffers of finished chunks, for the next chunks (at most `spare_max`).
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) spare_max: usize,
}

impl Core {
    /// Keeps a finished chunk's argument buffer for [`Link::buffer`](super::Link::buffer).
    pub(super) fn recycle(&mut self, payload: Arc<Vec<u8>>) {
        if let Ok(v) = Arc::try_unwrap(payload) {
            if v.capacity() <= SPARE_MAX_BYTES && self.spare.len() < self.spare_max {
                self.spare.push(v);
            }
        }
    }

    /// Whether nobody would read results that come now: the dispatcher must be woken.
    pub(super) fn unread(&self) -> bool {
        !self.driver && !self.dispatcher_reads
    }

    /// Reads what worker `i` sent and handles every whole frame. True when something
    /// completed (a chunk's results, a failure).
    pub(super) fn read(&mut self, i: usize) -> bool {
        let mut progress = false;
        loop {
            let w = &mut self.workers[i];
            let more = w.reader.pump(&*w.sock, true);
            let mut any = false;
            while self.workers[i].reader.complete() {
                any = true;
                progress = true;
                match self.workers[i].reader.take_raw() {
                    Ok((kind, raw)) => self.frame(i, kind, raw),
                    Err(e) => {
                        self.bad_worker(i, format!("it sent a malformed message ({e})"));
                        return true;
                    }
                }
            }
            if !more || !any {
                return progress;
            }
        }
    }

    pub(super) fn bad_worker(&mut self, i: usize, why: String) {
        let w = &mut self.workers[i];
        if w.note.is_none() {
            w.note = Some(why);
        }
        w.kill = true;
    }

    /// Handles one frame from worker `i`: `raw` is the whole frame, header included.
    pub(super) fn frame(&mut self, i: usize, kind: u8, raw: Vec<u8>) {
        let pid = self.workers[i].pid;
        let body = &raw[channel::HEADER..];
        let kind = match Kind::decode(kind) {
            Ok(k) => k,
            Err(e) => return self.bad_worker(i, format!("it sent {e}")),
        };
        match kind {
            Kind::Ready => {}
            Kind::Results => {
                let head = match ResultsHead::decode(body) {
                    Ok(h) => h,
                    Err(e) => return self.bad_worker(i, format!("it sent a bad result: {e}")),
                };
                let w = &mut self.workers[i];
                match w.inflight.front() {
                    Some(f)
                        if f.seq == head.seq
                            && f.sub.job.lock().slots[f.sub.index].count == head.count as usize => {
                    }
                    _ => {
                        return self
                            .bad_worker(i, "it sent a result for a task it did not hold".into())
                    }
                }
                let outcome = match head.outcomes {
                    Place::Inline(_) => Outcome::Ran {
                        bytes: raw,
                        start: channel::HEADER + RESULTS_INLINE_HEAD,
                        pid,
                    },
                    Place::InSlot(len) => {
                        // Copied out now: the slot is written again for the chunk after next.
                        let slot = w.inflight.front().expect("checked above").slot;
                        let mut bytes = Vec::new();
                        let ok = usize::try_from(len)
                            .is_ok_and(|len| w.mailbox.take_outcomes(slot, len, &mut bytes));
                        if !ok {
                            return self.bad_worker(i, "it sent a malformed result".into());
                        }
                        Outcome::Ran {
                            bytes,
                            start: 0,
                            pid,
                        }
                    }
                };
                let w = &mut self.workers[i];
                let mut f = w.inflight.pop_front().expect("checked above");
                self.maybe_quit(i);
                f.sub.job.complete(f.sub.index, outcome);
                let payload = std::mem::take(&mut f.sub.payload);
                drop(f);
                self.recycle(payload);
            }
            Kind::InitFailed => {
                let msg = format!(
                    "the pool's initializer panicked in worker {pid}: {}",
                    String::from_utf8_lossy(body)
                );
                self.workers[i].note = Some(msg.clone());
                self.break_pool(msg);
            }
            Kind::Failed => {
                let msg = String::from_utf8_lossy(body).into_owned();
                self.workers[i].note = Some(msg);
            }
            Kind::Task | Kind::Quit => self.bad_worker(i, "it sent an unexpected message".into()),
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.pending.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty())
    }

    /// Whether a worker has bytes the socket did not take yet (the dispatcher must poll
    /// for room).
    pub(super) fn stuck(&self) -> bool {
        self.workers.iter().any(|w| !w.out.is_empty())
    }

    /// Hands pending chunks to workers with room, least loaded first, and writes them.
    pub(super) fn assign(&mut self) {
        for level in 0..PIPELINE {
            for i in 0..self.workers.len() {
                if self.pending.is_empty() {
                    return;
                }
                let max = self.maxtasks;
                let w = &self.workers[i];
                if w.ended
                    || w.quitting
                    || w.inflight.len() != level
                    || max.is_some_and(|m| w.assigned >= m)
                {
                    continue;
                }
                let (sub, attempts) = self.pending.pop_front().expect("not empty");
                self.seq += 1;
                let seq = self.seq;
                let w = &mut self.workers[i];
                let (code, (trampoline, target)) = match &sub.code {
                    Code::Fn(f) => (CodeKind::Fn, f.to_parts()),
                    Code::Closure => (CodeKind::Closure, (0, 0)),
                    Code::Context(f, _) => (CodeKind::Context, f.to_parts()),
                };
                // The context part (see `worker.rs`): its bytes when this worker does not
                // hold it yet.
                let context = match &sub.code {
                    Code::Context(_, c) if w.context == c.id => {
                        Some(ContextPart::Held { id: c.id })
                    }
                    Code::Context(_, c) => {
                        w.context = c.id;
                        Some(ContextPart::New {
                            id: c.id,
                            bytes: &c.bytes,
                        })
                    }
                    _ => None,
                };
                // Chunk n given to this worker uses slot n % SLOTS; the chunk that used it
                // before is done (fewer than PIPELINE are in flight).
                let slot = w.assigned % SLOTS;
                let in_slot = w.mailbox.put_args(slot, &sub.payload);
                let mut head = Vec::new();
                Task {
                    seq,
                    code,
                    trampoline,
                    target,
                    slot: slot as u8,
                    context,
                    args: if in_slot {
                        Place::InSlot(sub.payload.len() as u64)
                    } else {
                        Place::Inline(&sub.payload)
                    },
                }
                .encode_head(&mut head);
                // Too large for the slot: the arguments go as they are, with the header in
                // one write (no copy into a send buffer).
                w.out.push_back(Out {
                    head,
                    body: (!in_slot).then(|| sub.payload.clone()),
                    pos: 0,
                });
                w.assigned += 1;
                w.inflight.push_back(InFlight {
                    sub,
                    seq,
                    attempts,
                    slot,
                });
                w.flush();
            }
        }
    }

    /// Sends Quit to worker `i` once it has done its `maxtasksperchild` chunks.
    pub(super) fn maybe_quit(&mut self, i: usize) {
        let max = self.maxtasks;
        let w = &mut self.workers[i];
        if let Some(m) = max {
            if w.assigned >= m && w.inflight.is_empty() && !w.quitting {
                w.quitting = true;
                w.out.push_back(Out::quit());
                w.flush();
            }
        }
    }

    /// The pool cannot run tasks any more (its initializer fails): fail what waits.
    pub(super) fn break_pool(&mut self, why: String) {
        for (s, _) in self.pending.drain(..) {
            s.fail(ErrorKind::ChildFailed, &why);
        }
        self.broken = Some(why);
    }

    pub(super) fn fail_everything(&mut self, kind: ErrorKind, why: &str) {
        for (s, _) in self.pending.drain(..) {
            s.fail(kind, why);
        }
        for w in &mut self.workers {
            for f in w.inflight.drain(..) {
                f.sub.fail(kind, why);
            }
        }
    }
}
