//! S14's check: the child receives "hello", then end of file, and exits (the program ends).

#[path = "../s14_pipe_eof.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S14")?;
    if out.lines == ["hello", "end of file"] {
        Ok(())
    } else {
        Err(format!(
            "printed {:?}, want \"hello\" then end of file",
            out.lines
        ))
    }
}
