//! The comparative benchmark: multiproc beside Python's `multiprocessing` (and raw floors)
//! measured in the same run on the same machine. Prints a table and writes the rows as JSON.
//!
//! ```text
//! cargo run --release -p multiproc-bench -- [--quick] [--json PATH] [--svg PATH] [FILTER...]
//! ```
//! Each row: what was measured, our median, the baseline's median (Python, same run), the
//! ratio (how many times better we are: > 1 means faster), and a reference (a floor or a
//! peer) with our ratio to it. See bench/README.md.

mod chart;
mod harness;
mod load;
mod pipe;
mod pool;
mod process;
mod python;
mod queue;
mod remote;
mod shm;
mod sync;

use harness::{Config, Row};

/// A group of rows: its name (for filtering) and the function that measures it.
type Group = (&'static str, fn(&Config) -> Vec<Row>);

fn main() {
    // The "exec the own binary" floor runs this binary with this variable: exit at once.
    if std::env::var_os("MULTIPROC_BENCH_EXIT_NOW").is_some() {
        std::process::exit(0);
    }
    // The remote group's pool workers are this binary started with this variable.
    if let Ok(spec) = std::env::var(remote::WORKER_ENV) {
        remote::worker_main(&spec);
    }
    let cfg = Config::from_args();
    let mut rows: Vec<Row> = Vec::new();
    let groups: Vec<Group> = vec![
        ("process", process::rows),
        ("sync", sync::rows),
        ("queue", queue::rows),
        ("pipe", pipe::rows),
        ("pool", pool::rows),
        ("shm", shm::rows),
        ("load", load::rows),
        ("remote", remote::rows),
        ("python", python::rows),
    ];
    for (name, f) in groups {
        if cfg.wants_group(name) {
            eprintln!("== {name}");
            rows.extend(f(&cfg));
        }
    }
    harness::report(&cfg, &rows);
}
