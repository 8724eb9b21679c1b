//! Scenario S14 (see `scenarios/s14_pipe_eof.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S14");
}
