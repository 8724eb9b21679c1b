//! Scenario S5 (see `scenarios/s05_queue_basics.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S5");
}
