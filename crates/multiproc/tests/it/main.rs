//! Process-level integration tests: one binary, one module per area.
//!
//! Every cross-process test is bounded (timeouts or the watchdog in `util`), so a bug shows
//! as a failure, never a hang.

#[macro_use]
mod util;

mod api;
mod dict;
mod fork;
mod fork_refs;
mod hostile;
mod layers;
mod listener;
mod names;
mod pipe;
mod pool;
mod pool_api;
mod process;
mod queue;
mod readiness;
mod scenarios;
mod shared_memory;
mod sync;
mod timeouts;
mod typeid;
