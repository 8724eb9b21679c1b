#![deny(unsafe_op_in_unsafe_fn)]
#![allow(dead_code)]
pub mod codec;
pub mod error;
mod handle;
pub mod shm;
pub mod sync;
mod sys;
pub use error::{Error, ErrorKind, Result};
