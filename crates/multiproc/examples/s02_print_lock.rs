//! Scenario S2 (see `shared/SCENARIOS.md`): `cargo run --example s02_print_lock`.
mod scenarios;

fn main() {
    scenarios::main_for("S2");
}
