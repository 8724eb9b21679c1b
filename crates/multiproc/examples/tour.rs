//! The tour: every scenario of the seed tutorial, each ending in one verdict line.
//!
//! `cargo run --release --example tour` — exits non-zero if any scenario failed.
//!
//! Each scenario's program is its own example (`s01_print_race.rs`, ..., `p1_pool_map.rs`,
//! each with the tutorial's Python in its doc comment); the tour runs it, shows what it
//! printed (indented), then what the check concluded.
mod scenarios;

fn main() {
    let all = scenarios::all();
    let mut failed = 0;
    for sc in &all {
        println!("--- {} {}", sc.id, sc.title);
        if !scenarios::run_and_report(sc) {
            failed += 1;
        }
    }
    println!(
        "tour: {} scenarios, {} ok, {} failed",
        all.len(),
        all.len() - failed,
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
