//! The checks of the seed tutorial's programs (see `shared/SCENARIOS.md`).
//!
//! Each program is an example of its own, `examples/sNN_*.rs`, written as a user would
//! write it; the module of the same name here includes that file (`#[path]`), runs its
//! `main` as a program with [`observe::observe`] — in a child process, recording what it
//! prints — and checks that the outcome is the one the scenario promises.
//!
//! Shared by the tour (`examples/tour.rs`) and the integration tests (`tests/it/scenarios.rs`).
#![allow(dead_code)]

/// One scenario of the tour.
pub struct Scenario {
    /// `S1` ... `S14`, `P1`.
    pub id: &'static str,
    /// What it shows, as in the verdict line.
    pub title: &'static str,
    /// The program: the example's `main`.
    pub main: fn() -> Result<(), Box<dyn std::error::Error>>,
    /// Runs the program and checks it; `Err(why)` when the outcome is not the one the scenario promises.
    pub run: fn() -> Result<(), String>,
}

// Scenario modules, one per seed program (append yours in id order).
pub mod observe;
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

/// Every scenario, in order.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            id: "S1",
            title: "print race without a lock",
            main: s01_print_race::main,
            run: s01_print_race::run,
        },
        Scenario {
            id: "S2",
            title: "print with a lock",
            main: s02_print_lock::main,
            run: s02_print_lock::run,
        },
        Scenario {
            id: "S3",
            title: "ticket office race",
            main: s03_ticket_race::main,
            run: s03_ticket_race::run,
        },
        Scenario {
            id: "S4",
            title: "ticket office with a lock",
            main: s04_ticket_lock::main,
            run: s04_ticket_lock::run,
        },
        Scenario {
            id: "S5",
            title: "bounded queue and the non-blocking calls",
            main: s05_queue_basics::main,
            run: s05_queue_basics::run,
        },
        Scenario {
            id: "S6",
            title: "one queue shared by several processes",
            main: s06_shared_queue::main,
            run: s06_shared_queue::run,
        },
        Scenario {
            id: "S7",
            title: "9 producers, 10 consumers, Queue(3); the 10th ended by close",
            main: s07_many_to_many::main,
            run: s07_many_to_many::run,
        },
        Scenario {
            id: "S8",
            title: "a consumer with no stop signal (bounded wait, then terminated)",
            main: s08_endless_consumer::main,
            run: s08_endless_consumer::run,
        },
        Scenario {
            id: "S9",
            title: "stop by sentinel",
            main: s09_sentinel::main,
            run: s09_sentinel::run,
        },
        Scenario {
            id: "S10",
            title: "1 producer, 2 consumers, sentinels from main",
            main: s10_two_consumers::main,
            run: s10_two_consumers::run,
        },
        Scenario {
            id: "S11",
            title: "3 producers, 4 consumers, 4 sentinels",
            main: s11_sentinels::main,
            run: s11_sentinels::run,
        },
        Scenario {
            id: "S11b",
            title: "3 producers, 4 consumers, close instead of sentinels",
            main: s11b_close::main,
            run: s11b_close::run,
        },
        Scenario {
            id: "S12",
            title: "JoinableQueue with daemon consumers",
            main: s12_joinable::main,
            run: s12_joinable::run,
        },
        Scenario {
            id: "S13",
            title: "a pipe: the child sends, the parent receives",
            main: s13_pipe_hello::main,
            run: s13_pipe_hello::run,
        },
        Scenario {
            id: "S14",
            title: "a pipe's end-of-file needs every copy closed",
            main: s14_pipe_eof::main,
            run: s14_pipe_eof::run,
        },
        Scenario {
            id: "P1",
            title: "pool map",
            main: p1_pool_map::main,
            run: p1_pool_map::run,
        },
    ]
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
