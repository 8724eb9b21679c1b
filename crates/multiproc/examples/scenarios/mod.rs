//! The seed tutorial's programs (see `shared/SCENARIOS.md`), each a function that runs the
//! program with real processes, prints what the seed prints, and checks the outcome.
//!
//! Shared by the tour (`examples/tour.rs`), one thin example per scenario, and the
//! integration tests (`tests/it/scenarios.rs`).
#![allow(dead_code)]

/// One scenario of the tour.
pub struct Scenario {
    /// `S1` ... `S14`, `P1`.
    pub id: &'static str,
    /// What it shows, as in the verdict line.
    pub title: &'static str,
    /// Runs it; `Err(why)` when the outcome is not the one the scenario promises.
    pub run: fn() -> Result<(), String>,
}

// Scenario modules, one per seed program (append yours in id order).
mod common_pc;
pub mod p1_pool_map;
pub mod s01_print_race;
pub mod s02_print_lock;
pub mod s03_ticket_race;
pub mod s04_ticket_lock;
pub mod s05_queue_basics;
pub mod s06_shared_queue;
pub mod s07_many_to_many;
pub mod s08_endless_consumer;
pub mod s09_sentinel;
pub mod s10_two_consumers;
pub mod s11_sentinels;
pub mod s11b_close;
pub mod s12_joinable;
pub mod s13_pipe_hello;
pub mod s14_pipe_eof;
mod sync_common;

/// Every scenario, in order.
pub fn all() -> Vec<Scenario> {
    vec![
        // Scenario { id: "S1", title: "...", run: s01_print_race::run },
        Scenario {
            id: "S1",
            title: "print race without a lock",
            run: s01_print_race::run,
        },
        Scenario {
            id: "S2",
            title: "print with a lock",
            run: s02_print_lock::run,
        },
        Scenario {
            id: "S3",
            title: "ticket office race",
            run: s03_ticket_race::run,
        },
        Scenario {
            id: "S4",
            title: "ticket office with a lock",
            run: s04_ticket_lock::run,
        },
        Scenario {
            id: "S5",
            title: "bounded queue and the non-blocking calls",
            run: s05_queue_basics::run,
        },
        Scenario {
            id: "S6",
            title: "one queue shared by several processes",
            run: s06_shared_queue::run,
        },
        Scenario {
            id: "S7",
            title: "9 producers, 10 consumers, Queue(3); the 10th ended by close",
            run: s07_many_to_many::run,
        },
        Scenario {
            id: "S8",
            title: "a consumer with no stop signal (bounded wait, then terminated)",
            run: s08_endless_consumer::run,
        },
        Scenario {
            id: "S9",
            title: "stop by sentinel",
            run: s09_sentinel::run,
        },
        Scenario {
            id: "S10",
            title: "1 producer, 2 consumers, sentinels from main",
            run: s10_two_consumers::run,
        },
        Scenario {
            id: "S11",
            title: "3 producers, 4 consumers, 4 sentinels",
            run: s11_sentinels::run,
        },
        Scenario {
            id: "S11b",
            title: "3 producers, 4 consumers, close instead of sentinels",
            run: s11b_close::run,
        },
        Scenario {
            id: "S12",
            title: "JoinableQueue with daemon consumers",
            run: s12_joinable::run,
        },
        Scenario {
            id: "S13",
            title: "a pipe: the child sends, the parent receives",
            run: s13_pipe_hello::run,
        },
        Scenario {
            id: "S14",
            title: "a pipe's end-of-file needs every copy closed",
            run: s14_pipe_eof::run,
        },
        Scenario {
            id: "P1",
            title: "pool map",
            run: p1_pool_map::run,
        },
    ]
}

/// Runs the scenario with `id` and prints its verdict line; exits non-zero when it failed.
pub fn main_for(id: &str) {
    let sc = all()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no scenario {id}"));
    if !run_and_report(&sc) {
        std::process::exit(1);
    }
}

/// Runs one scenario and prints `ID title: ok` or `ID title: FAILED (why)`; true when ok.
pub fn run_and_report(sc: &Scenario) -> bool {
    use std::io::Write;
    let r = std::panic::catch_unwind(sc.run)
        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => {
            println!("{} {}: ok", sc.id, sc.title);
            true
        }
        Err(why) => {
            println!("{} {}: FAILED ({})", sc.id, sc.title, why);
            false
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}
