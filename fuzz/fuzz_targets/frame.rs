//! Fuzzes the pipe frame decoder and reassembler (`crates/multiproc/src/pipe/frame.rs`), the
//! code that reads bytes a peer process controls. The input is split into frames by
//! `split_fuzz_input` (u16 length prefixes); whatever the bytes, decoding must not panic,
//! and every completed message must respect the frame headers' claims.
//!
//! `cargo +nightly fuzz run frame` (from `fuzz/`). Crashes land in `fuzz/artifacts/frame/`;
//! commit them (and interesting inputs into `fuzz/corpus/frame/`): the unit test
//! `pipe::frame::tests::replay_fuzz_corpus` replays every file there.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/multiproc/src/pipe/frame.rs"]
mod frame;

fuzz_target!(|data: &[u8]| {
    frame::check_fuzz_input(data);
});
