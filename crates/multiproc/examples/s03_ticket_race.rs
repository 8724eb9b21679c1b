//! Scenario S3 (see `shared/SCENARIOS.md`): `cargo run --example s03_ticket_race`.
mod scenarios;

fn main() {
    scenarios::main_for("S3");
}
