//! The process builder has no start-method setting: the verb (`fork` or `spawn`) is the
//! start method.
use multiproc::{Process, StartMethod};

fn main() {
    let _ = Process::builder().start_method(StartMethod::Spawn);
}
