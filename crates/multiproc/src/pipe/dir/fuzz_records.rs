//! Records a peer controls, over arbitrary bytes: what [`Dir::take`] makes of them.
//!
//! Any process holding a connection's end maps its ring and can put any record there (or
//! rewrite one after it was committed). Whatever the bytes, taking a record gives a data
//! record, a marker, or a clear error (the record is consumed): never a panic, and the
//! records after a bad one still come.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// What taking one record gave: its bytes and typedness, its marker, or the error's kind.
#[derive(Debug, PartialEq)]
enum Took {
    Data(Vec<u8>, bool),
    Marker(u32, bool),
    Error(ErrorKind),
}

fn take_one(d: &Dir) -> Option<Took> {
    match d.take(|body, typed| (body.to_vec(), typed)) {
        Ok(Some(Record::Data((b, typed)))) => Some(Took::Data(b, typed)),
        Ok(Some(Record::Marker(seq, typed))) => Some(Took::Marker(seq, typed)),
        Ok(None) => None,
        Err(e) => Some(Took::Error(e.kind())),
    }
}

/// What a record of these bytes must read as (the record format in the module docs).
fn expected(bytes: &[u8], typed: bool) -> Took {
    match bytes.split_last() {
        Some((&TAG_DATA, body)) => Took::Data(body.to_vec(), typed),
        Some((&TAG_MARKER, &[a, b, c, d])) => Took::Marker(u32::from_le_bytes([a, b, c, d]), typed),
        _ => Took::Error(ErrorKind::Codec),
    }
}

/// A record's bytes: arbitrary, or (more often than chance) ending in one of the two tags.
fn arb_record() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let tail = prop_oneof![Just(None), Just(Some(TAG_DATA)), Just(Some(TAG_MARKER))];
    (vec(any::<u8>(), 0..120), tail, any::<bool>()).prop_map(|(mut b, tail, typed)| {
        b.extend(tail);
        (b, typed)
    })
}

/// The offset in the segment of the first copy of `pattern`, within the direction's area.
fn find(seg: &Segment, pattern: &[u8]) -> Option<usize> {
    let mut area = Vec::new();
    assert!(seg.read_bytes(AREAS_AT, area_len(), &mut area));
    area.windows(pattern.len())
        .position(|w| w == pattern)
        .map(|p| AREAS_AT + p)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Arbitrary records put through the ring come back as their bytes say: data, a marker
    /// or a `Codec` error, in order, each consumed.
    #[test]
    fn arbitrary_records_are_data_markers_or_errors(records in vec(arb_record(), 0..12)) {
        let (d, _) = Dir::create(false).unwrap();
        let mut sent = Vec::new();
        for (bytes, typed) in &records {
            match d.put(&[bytes], *typed, std::time::Duration::ZERO) {
                Ok(true) => sent.push(expected(bytes, *typed)),
                r => prop_assert!(bytes.is_empty(), "{} bytes: {r:?}", bytes.len()),
            }
        }
        let mut got = Vec::new();
        while let Some(t) = take_one(&d) {
            got.push(t);
            prop_assert!(got.len() <= sent.len(), "more records than were put");
        }
        prop_assert_eq!(got, sent);
    }

    /// A record rewritten in place after its commit, with whatever bytes (its body and the
    /// ring's frame bytes before it): takes give records or errors, never a panic, and end;
    /// then the direction either refuses new records with an error or carries them again.
    #[test]
    fn records_rewritten_in_place_fail_cleanly(
        before in 0usize..24,
        junk in vec(any::<u8>(), 1..64),
        records in vec(arb_record(), 0..4),
    ) {
        let (d, _) = Dir::create(false).unwrap();
        let marker = *b"\x01fuzz-record-here\x02";
        let mut victim = marker.to_vec();
        victim.push(TAG_DATA);
        for (bytes, typed) in &records {
            let _ = d.put(&[bytes], *typed, std::time::Duration::ZERO);
        }
        prop_assert!(d.put(&[&victim], true, std::time::Duration::ZERO).unwrap());
        let _ = d.put(&[b"after", &[TAG_DATA]], false, std::time::Duration::ZERO);
        let at = find(d.segment(), &marker).expect("the record is in the ring");
        let from = at.saturating_sub(before).max(AREAS_AT);
        prop_assert!(d.segment().write_bytes(from, &junk));
        // Bounded: every take consumes a record, resets the ring or reports it closed.
        let mut takes = 0;
        while let Some(t) = take_one(&d) {
            takes += 1;
            if takes > 64 {
                // A ring that reports the same error on every take (closed) is an answer.
                prop_assert!(matches!(t, Took::Error(_)), "{t:?}");
                break;
            }
        }
        let fresh = b"fresh record";
        if let Ok(true) = d.put(&[fresh, &[TAG_DATA]], false, std::time::Duration::ZERO) {
            let mut seen = false;
            for _ in 0..64 {
                match take_one(&d) {
                    Some(Took::Data(b, false)) if b == fresh => {
                        seen = true;
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            prop_assert!(seen, "a record put after the damage comes back");
        }
    }
}
