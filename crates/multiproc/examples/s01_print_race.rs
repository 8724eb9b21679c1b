//! Scenario S1 (see `shared/SCENARIOS.md`): `cargo run --example s01_print_race`.
mod scenarios;

fn main() {
    scenarios::main_for("S1");
}
