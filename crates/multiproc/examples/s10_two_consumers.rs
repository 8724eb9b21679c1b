//! Scenario S10 (see `scenarios/s10_two_consumers.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S10");
}
