//! A chunk's outcomes as the parent reads them (the format is in `protocol.rs`, the worker's
//! side in `worker.rs`): a value or an error per task. Everything is checked: the bytes come
//! from another process.

use serde::de::DeserializeOwned;

use super::protocol::{Failure, FailureEntry, OutcomesHead};
use super::wire::De;
use crate::codec::ident;
use crate::error::{Error, ErrorKind, Result};

fn fewer(pid: i32) -> Error {
    Error::new(
        ErrorKind::ChildFailed,
        format!("pool worker {pid} sent fewer results than tasks"),
    )
}

fn malformed(pid: i32, msg: &str) -> Error {
    Error::new(
        ErrorKind::ChildFailed,
        format!("pool worker {pid} sent a malformed result: {msg}"),
    )
}

/// A chunk's outcomes as sent (format in `protocol.rs`), split into the values and the list of
/// failed tasks. Everything is checked: the bytes come from another process.
struct Outcomes<'a> {
    values: &'a [u8],
    /// Failed tasks not read yet, and the bytes of their entries.
    failed: u32,
    failures: &'a [u8],
    pid: i32,
    count: usize,
    /// The index of the last failure read (they must increase).
    last: Option<u32>,
}

impl<'a> Outcomes<'a> {
    fn parse(bytes: &'a [u8], count: usize, pid: i32) -> Result<Outcomes<'a>> {
        let (head, values, failures) = OutcomesHead::decode(bytes).map_err(|_| fewer(pid))?;
        if head.failed as usize > count {
            return Err(malformed(pid, "more failures than tasks"));
        }
        Ok(Outcomes {
            values,
            failed: head.failed,
            failures,
            pid,
            count,
            last: None,
        })
    }

    /// The next failure entry: its task index and error.
    fn next_failure(&mut self) -> Option<Result<(u32, Error)>> {
        if self.failed == 0 {
            return None;
        }
        self.failed -= 1;
        let pid = self.pid;
        let r = (|| {
            let (entry, rest) = FailureEntry::decode(self.failures)
                .map_err(|e| malformed(pid, &format!("a task's outcome: {e}")))?;
            let (index, m) = (entry.index, entry.message);
            if index as usize >= self.count || self.last.is_some_and(|l| index <= l) {
                return Err(malformed(pid, "a failed task's index is out of order"));
            }
            let e = match entry.failure {
                Failure::Panicked => Error::new(
                    ErrorKind::ChildPanicked,
                    format!("task panicked in pool worker {pid}: {m}"),
                ),
                Failure::Failed => Error::new(
                    ErrorKind::Codec,
                    format!("task failed in pool worker {pid}: {m}"),
                ),
            };
            self.failures = rest;
            self.last = Some(index);
            Ok((index, e))
        })();
        if r.is_err() {
            self.failed = 0;
        }
        Some(r)
    }
}

/// The encoded values of a chunk's outcomes, after their type tag, which must be `R`'s.
///
/// # Errors
/// [`ErrorKind::Codec`] naming the types when it is another type's.
fn values_of<R>(values: &[u8], pid: i32) -> Result<&[u8]> {
    ident::check::<R>(values).map_err(|e| {
        Error::new(
            ErrorKind::Codec,
            format!("the results of pool worker {pid}: {}", e.message()),
        )
    })
}

/// Decodes the outcomes of a chunk of `count` tasks, as sent by a worker, appending one
/// `Result` per task (always `count` of them).
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    pid: i32,
    out: &mut Vec<Result<R>>,
) {
    out.reserve(count);
    let mut o = match Outcomes::parse(bytes, count, pid) {
        Ok(o) => o,
        Err(e) => {
            let msg = e.message().to_string();
            out.extend((0..count).map(|_| Err(Error::new(ErrorKind::ChildFailed, msg.clone()))));
            return;
        }
    };
    let values = match values_of::<R>(o.values, pid) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.message().to_string();
            out.extend((0..count).map(|_| Err(Error::new(ErrorKind::Codec, msg.clone()))));
            return;
        }
    };
    let mut de = De::new(values);
    let mut next = o.next_failure();
    let mut i = 0;
    while i < count {
        match next {
            Some(Ok((index, _))) if index as usize == i => {
                let Some(Ok((_, e))) = next.take() else {
                    unreachable!()
                };
                out.push(Err(e));
                next = o.next_failure();
            }
            Some(Err(e)) => {
                let msg = e.message().to_string();
                out.extend(
                    (i..count).map(|_| Err(Error::new(ErrorKind::ChildFailed, msg.clone()))),
                );
                return;
            }
            _ => match R::deserialize(&mut de) {
                Ok(v) => out.push(Ok(v)),
                Err(e) => {
                    let msg = format!("a task's result does not decode: {e}");
                    out.extend((i..count).map(|_| Err(malformed(pid, &msg))));
                    return;
                }
            },
        }
        i += 1;
    }
}

/// Like [`decode_outcomes`], for callers that want values only: appends them to `out`, or
/// returns the error of the first failed task. No `Result` per task, one deserializer for
/// the whole chunk.
pub(crate) fn decode_values<R: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    pid: i32,
    out: &mut Vec<R>,
) -> Result<()> {
    let mut o = Outcomes::parse(bytes, count, pid)?;
    let values = values_of::<R>(o.values, pid)?;
    if let Some(r) = o.next_failure() {
        return Err(r?.1);
    }
    let mut de = De::new(values);
    for _ in 0..count {
        match R::deserialize(&mut de) {
            Ok(v) => out.push(v),
            Err(e) => {
                return Err(malformed(
                    pid,
                    &format!("a task's result does not decode: {e}"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::alloc_probe;
    use crate::codec::ident;
    use crate::pool::worker::{encode_items, run_items};

    fn half(x: u32) -> u32 {
        if x % 3 == 1 {
            panic!("no {x}");
        }
        x / 2
    }

    fn run(items: &[u32]) -> Vec<u8> {
        let mut args = Vec::new();
        ident::put_tag::<u32>(&mut args);
        let n = encode_items(items.iter().copied(), usize::MAX, &mut args)
            .0
            .unwrap();
        assert_eq!(n as usize, items.len());
        let mut out = Vec::new();
        run_items(&half, n, &args, &mut out).unwrap();
        out
    }

    #[test]
    fn outcomes_round_trip_with_panics_between_values() {
        let items: Vec<u32> = (0..10).chain([300, 70_000]).collect();
        let out = run(&items);
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&out, items.len(), 7, &mut all);
        assert_eq!(all.len(), items.len());
        for (x, r) in items.iter().zip(&all) {
            match r {
                Ok(v) => assert_eq!(*v, x / 2),
                Err(e) => {
                    assert_eq!(x % 3, 1);
                    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                    assert!(e.message().contains(&format!("no {x}")), "{e}");
                }
            }
        }
        // Values only: the first failure (item 1) is the error.
        let mut vals: Vec<u32> = Vec::new();
        let e = decode_values(&out, items.len(), 7, &mut vals).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildPanicked);
        assert!(e.message().contains("no 1"), "{e}");
        // Panics back to back, first and last.
        let out = run(&[1, 4, 0, 7]);
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&out, 4, 7, &mut all);
        let shown: Vec<String> = all
            .iter()
            .map(|r| match r {
                Ok(v) => v.to_string(),
                Err(e) => e.message().rsplit(' ').next().unwrap_or("").to_string(),
            })
            .collect();
        assert_eq!(shown, ["1", "4", "0", "7"]);
        assert!(all[0].is_err() && all[1].is_err() && all[2].is_ok() && all[3].is_err());
        let ok = run(&[0, 2, 300, 70_001]);
        let mut vals: Vec<u32> = Vec::new();
        decode_values(&ok, 4, 7, &mut vals).unwrap();
        assert_eq!(vals, vec![0, 1, 150, 35_000]);
    }

    /// Issue 12, point 2: arguments of another type than the function takes fail every task
    /// of the chunk with a `Codec` error (none is decoded); results of another type than
    /// the caller expects likewise.
    #[test]
    fn arguments_and_results_of_another_type_are_codec_errors() {
        let mut args = Vec::new();
        ident::put_tag::<(u8, u8)>(&mut args);
        let n = encode_items([(1u8, 2u8), (3, 4)].into_iter(), usize::MAX, &mut args)
            .0
            .unwrap();
        let mut out = Vec::new();
        run_items(&half, n, &args, &mut out).unwrap();
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&out, 2, 7, &mut all);
        for r in &all {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
            assert!(e.message().contains("expected a `u32`"), "{e}");
        }
        let mut vals: Vec<u32> = Vec::new();
        assert_eq!(
            decode_values(&out, 2, 7, &mut vals).unwrap_err().kind(),
            ErrorKind::Codec
        );
        // Results: `u32` values read as `i32` (the same bytes would decode).
        let out = run(&[0, 2]);
        let mut all: Vec<Result<i32>> = Vec::new();
        decode_outcomes(&out, 2, 7, &mut all);
        for r in &all {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
            assert!(e.message().contains("expected a `i32`"), "{e}");
        }
        let mut vals: Vec<i32> = Vec::new();
        let e = decode_values(&out, 2, 7, &mut vals).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(vals.is_empty());
        let mut vals: Vec<u32> = Vec::new();
        decode_values(&out, 2, 7, &mut vals).unwrap();
        assert_eq!(vals, [0, 1]);
    }

    /// Decodes `bytes` as the outcomes of a chunk of `count` tasks of result type `R`, both
    /// ways, with the allocations measured: always `count` outcomes, never a panic, and no
    /// more allocated at once than the bytes there pay for.
    fn decode_checked<R: DeserializeOwned>(bytes: &[u8], count: usize) {
        let budget = (1 << 20) + 512 * bytes.len() + count * 64;
        let (all, peak) = alloc_probe::peak_bytes(|| {
            let mut all: Vec<Result<R>> = Vec::new();
            decode_outcomes(bytes, count, 7, &mut all);
            all
        });
        assert_eq!(all.len(), count);
        assert!(peak <= budget, "{peak} bytes for {} bytes", bytes.len());
        let (r, peak) = alloc_probe::peak_bytes(|| {
            let mut vals: Vec<R> = Vec::new();
            decode_values(bytes, count, 7, &mut vals).map(|()| vals.len())
        });
        if let Ok(n) = r {
            assert_eq!(n, count);
            assert!(
                all.iter().all(|r| r.is_ok()),
                "values only when every task returned"
            );
        }
        assert!(peak <= budget, "{peak} bytes for {} bytes", bytes.len());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 500,
            ..Default::default()
        })]

        /// A chunk's outcomes are bytes a worker wrote: whatever they are, the parent gets an
        /// outcome per task (values or errors), never a panic.
        #[test]
        fn arbitrary_outcomes_decode_or_fail_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            count in 0usize..40,
        ) {
            decode_checked::<u32>(&bytes, count);
            decode_checked::<String>(&bytes, count);
            decode_checked::<Vec<(u64, Option<String>)>>(&bytes, count);
        }

        /// The same for real outcomes (values and failures), cut or damaged.
        #[test]
        fn damaged_outcomes_decode_or_fail_cleanly(
            items in proptest::collection::vec(0u32..1000, 0..30),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 1u8..),
                0..3,
            ),
        ) {
            let mut bytes = run(&items);
            let full = bytes.len();
            for (at, b) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= b;
            }
            bytes.truncate(cut.index(full + 1));
            decode_checked::<u32>(&bytes, items.len());
            if flips.is_empty() && bytes.len() == full {
                let mut all: Vec<Result<u32>> = Vec::new();
                decode_outcomes(&bytes, items.len(), 7, &mut all);
                for (x, r) in items.iter().zip(&all) {
                    match r {
                        Ok(v) => proptest::prop_assert_eq!(*v, x / 2),
                        Err(e) => proptest::prop_assert_eq!(e.kind(), ErrorKind::ChildPanicked),
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_or_garbage_outcomes_are_errors() {
        let out = run(&[0, 2, 4, 6]);
        for cut in 0..out.len() {
            let mut all: Vec<Result<u32>> = Vec::new();
            decode_outcomes(&out[..cut], 4, 7, &mut all);
            assert_eq!(all.len(), 4);
            assert!(all.iter().any(|r| r.is_err()));
            let mut vals: Vec<u32> = Vec::new();
            assert!(decode_values(&out[..cut], 4, 7, &mut vals).is_err());
        }
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&[9, 1, 2, 3], 2, 7, &mut all);
        assert_eq!(all.len(), 2);
        assert!(all
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::ChildFailed));
    }
}
