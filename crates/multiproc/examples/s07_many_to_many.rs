//! Scenario S7 (see `scenarios/s07_many_to_many.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S7");
}
