//! Scenario S12 (see `scenarios/s12_joinable.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S12");
}
