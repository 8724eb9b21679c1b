//! Scenario S11b (see `scenarios/s11b_close.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S11b");
}
