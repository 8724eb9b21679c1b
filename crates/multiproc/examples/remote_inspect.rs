//! Shows remote queues: ready items, whether closed, unfinished tasks, and every consumer
//! of a joinable queue with its lease and items in flight (alive or not).
//!
//! ```text
//! cargo run -p multiproc --features remote --example remote_inspect -- redis://host:6379/0 jobs
//! ```
use std::process::ExitCode;

use multiproc::remote;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((url, names)) = args.split_first().filter(|(_, n)| !n.is_empty()) else {
        eprintln!("usage: remote_inspect URL NAME... (URL: redis://host:port/db or unix:///path)");
        return ExitCode::from(2);
    };
    let mut ok = true;
    for name in names {
        // A snapshot; nothing is created or changed on the server.
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
    println!(
        "{} ({}, {size}, {state}): {} ready, {} unfinished",
        i.name, i.kind, i.ready, i.unfinished
    );
    for c in &i.consumers {
        let lease = match c.lease_left {
            Some(d) => format!("alive, lease {:.1} s left", d.as_secs_f64()),
            None => "lease ran out (dead, stopped or cut off)".to_string(),
        };
        println!("  consumer {}: {lease}, {} in flight", c.id, c.in_flight);
    }
}
