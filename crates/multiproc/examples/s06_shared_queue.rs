//! Scenario S6 (see `scenarios/s06_shared_queue.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S6");
}
