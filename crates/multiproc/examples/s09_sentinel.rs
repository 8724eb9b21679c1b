//! Scenario S9 (see `scenarios/s09_sentinel.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S9");
}
