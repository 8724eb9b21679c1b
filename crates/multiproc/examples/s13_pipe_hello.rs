//! Scenario S13 (see `scenarios/s13_pipe_hello.rs`).
mod scenarios;

fn main() {
    scenarios::main_for("S13");
}
