//! Scenario S11 (see `scenarios/s11_sentinels.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S11");
}
