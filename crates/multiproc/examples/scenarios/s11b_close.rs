//! S11b's check: as S11's — every item received once, every consumer stopped — with the
//! queue closed instead of sentinels.

#[path = "../s11b_close.rs"]
mod program;
pub use program::main;

pub fn run() -> Result<(), String> {
    super::s11_sentinels::check("S11b")
}
