//! # S14 — a pipe's end of file needs every copy of the other end closed
//!
//! The child gets *both* ends and loops on `recv` until end of file; the parent closes its
//! copy of the child's end, sends "hello" and closes its own end. End of file comes only
//! when every copy of the sending end, in every process, is closed — so the child must
//! close its own copy of the parent's end too, or it waits for ever.
//!
//! ```python
//! from multiprocessing import Process, Pipe
//!
//! def f(parent_conn,child_conn):
//!     #parent_conn.close() # without this close there is no EOFError
//!     while True:
//!         try:
//!             print(child_conn.recv())
//!         except EOFError:
//!             child_conn.close()
//!             break
//!
//! if __name__ == '__main__':
//!     parent_conn, child_conn = Pipe()
//!     p = Process(target=f, args=(parent_conn,child_conn,))
//!     p.start()
//!     child_conn.close()
//!     parent_conn.send('hello')
//!     parent_conn.close()
//!     p.join()
//! # both errors come from recv: EOFError once the same end is closed in the parent and
//! # in the child; OSError when receiving on an end that was itself closed
//! ```
//!
//! What to watch for: "hello", then the end of file, and the program ends. Comment out
//! `parent_conn.close()` in `f` and it hangs, as the seed's does.
//!
//! How ours differs: the child is spawned (the binary runs again), so it holds exactly
//! the two ends it was given; a forked child would also inherit copies it cannot name and
//! so cannot close. The ends are moved into the child, so the parent keeps its own copies
//! with `try_clone` — what passing them in `args` does in Python. `EOFError` is
//! `RecvError::Eof`; using a closed end is `RecvError::Closed` (Python's `OSError`).
use std::error::Error;

use multiproc::{pipe, Connection, Process, RecvError};

fn f((mut parent_conn, mut child_conn): (Connection, Connection)) {
    parent_conn.close(); // without this close there is no end of file
    loop {
        match child_conn.recv::<String>() {
            Ok(msg) => println!("{msg}"),
            Err(RecvError::Eof) => {
                println!("end of file");
                child_conn.close();
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let (mut parent_conn, mut child_conn) = pipe(true)?;
    let p = Process::spawn(f, (parent_conn.try_clone()?, child_conn.try_clone()?))?;
    child_conn.close();
    parent_conn.send("hello")?;
    parent_conn.close();
    p.join()?;
    Ok(())
}
