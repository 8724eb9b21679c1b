//! Scenario S8 (see `scenarios/s08_endless_consumer.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S8");
}
