//! S13's check: the parent receives the child's message.

#[path = "../s13_pipe_hello.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S13")?;
    if out.lines == ["Hello 妹妹"] {
        Ok(())
    } else {
        Err(format!(
            "printed {:?}, want the child's \"Hello 妹妹\"",
            out.lines
        ))
    }
}
