//! Fuzzes the decoding of handle descriptions a peer controls (every kind of handle, with
//! forged segments, sockets and unsealed memfds in the fd table): `multiproc::fuzz`.
//!
//! `cargo +nightly fuzz run handles` (from `fuzz/`). Commit crashes and interesting inputs
//! into `fuzz/corpus/handles/`: the unit test `fuzz::tests::replay_fuzz_corpus` replays them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multiproc::fuzz::check_handle_input(data);
});
