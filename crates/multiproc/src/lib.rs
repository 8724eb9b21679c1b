#![deny(unsafe_op_in_unsafe_fn)]
#![allow(dead_code)]
pub mod codec;
pub mod error;
mod handle;
pub mod pipe;
pub mod process;
pub mod shm;
pub mod sync;
mod sys;
pub use error::{Error, ErrorKind, Result};
pub use pipe::{pipe, pipe_with, wait, Connection, RecvError, SendError, Waitable};
pub use process::{active_children, Builder, Process, StartMethod};
