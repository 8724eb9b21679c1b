//! Scenario S4 (see `shared/SCENARIOS.md`): `cargo run --example s04_ticket_lock`.
mod scenarios;

fn main() {
    scenarios::main_for("S4");
}
