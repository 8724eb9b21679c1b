//! The tour: every scenario of the seed tutorial, each ending in one verdict line.
//!
//! `cargo run --release --example tour` — exits non-zero if any scenario failed.
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
