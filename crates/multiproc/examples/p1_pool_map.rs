//! Scenario P1 (see `scenarios/p1_pool_map.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("P1");
}
