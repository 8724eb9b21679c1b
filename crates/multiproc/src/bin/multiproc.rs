//! `multiproc`: the command-line tool of the remote backend (feature `remote`).
//!
//! ```text
//! multiproc inspect URL NAME...   a snapshot of each remote queue: ready items, closed or
//!                                 not, unfinished tasks, and every consumer of a joinable
//!                                 queue with its lease (alive or not) and items in flight;
//!                                 for a remote pool (its name), its workers: host, pid,
//!                                 tasks, lease and calls in flight
//! ```
//!
//! URL is `redis://host:port/db`, `unix:///path/to/socket` or `redis+unix:///path?db=N`.
//! Nothing is created or changed on the server. Exit status: 0 when every queue was shown,
//! 1 when one was missing or unreachable, 2 for a usage error.

use std::process::ExitCode;

use multiproc::remote;

const USAGE: &str = "usage: multiproc inspect URL NAME...
  URL: redis://host:port/db, unix:///path/to/socket or redis+unix:///path?db=N";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((cmd, rest)) if cmd == "inspect" && rest.len() >= 2 => inspect(&rest[0], &rest[1..]),
        Some((cmd, _)) if cmd == "-h" || cmd == "--help" || cmd == "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn inspect(url: &str, names: &[String]) -> ExitCode {
    let mut ok = true;
    for name in names {
        match remote::inspect(url, name) {
            Ok(i) if i.kind.is_empty() => {
                eprintln!("{name}: no such queue");
                ok = false;
            }
            Ok(i) => print(&i),
            Err(e) => {
                eprintln!("{name}: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print(i: &remote::QueueInfo) {
    let size = i
        .maxsize
        .map_or("unbounded".to_string(), |m| format!("maxsize {m}"));
    let state = if i.closed { "closed" } else { "open" };
    let alive = i
        .consumers
        .iter()
        .filter(|c| c.lease_left.is_some())
        .count();
    println!(
        "{} ({}, {size}, {state}): {} ready, {} unfinished, {alive} of {} consumer(s) alive",
        i.name,
        i.kind,
        i.ready,
        i.unfinished,
        i.consumers.len()
    );
    for c in &i.consumers {
        let lease = match c.lease_left {
            Some(d) => format!("alive, lease {:.1} s left", d.as_secs_f64()),
            None => "lease ran out (dead, stopped or cut off)".to_string(),
        };
        match &c.worker {
            Some(w) => println!(
                "  worker {} ({w}): {lease}, {} in flight",
                c.id, c.in_flight
            ),
            None => println!("  consumer {}: {lease}, {} in flight", c.id, c.in_flight),
        }
    }
}
