//! # S13 — a pipe: the child sends, the parent receives
//!
//! `Pipe()` makes a connection with two ends; one end goes to the child, which sends a
//! message on it and closes it; the parent receives the message on the other end.
//!
//! ```python
//! from multiprocessing import Process, Pipe
//! def f(conn):
//!     conn.send("Hello 妹妹") # the child sends a message
//!     conn.close()
//!
//! if __name__ == '__main__':
//!     parent_conn, child_conn = Pipe() # both ends can send and receive (duplex)
//!     p = Process(target=f, args=(child_conn,)) # one end goes to the child
//!     p.start() # start the child
//!     print(parent_conn.recv()) # the parent receives the message
//!     p.join()
//! ```
//!
//! What to watch for: "Hello 妹妹" ("hello, little sister"), printed by the parent.
//!
//! How ours differs: this child is started with the spawn start method, the way Python
//! does it by default on macOS and Windows: the program's binary runs again and calls `f`
//! with its arguments, serialized. `Process::spawn(f, child_conn)` takes a plain
//! `fn(A) -> R`, no closure; a pipe end inside the arguments travels to the child as a
//! file descriptor. The end is *moved* into the child: the parent has no copy left to
//! close. `recv` says which type it expects (`String`).
use std::error::Error;

use multiproc::{pipe, Connection, Process};

fn f(mut conn: Connection) {
    conn.send("Hello 妹妹").unwrap(); // the child sends a message
    conn.close();
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let (parent_conn, child_conn) = pipe(true)?; // both ends can send and receive
    let p = Process::spawn(f, child_conn)?; // one end goes to the child
    let msg: String = parent_conn.recv()?; // the parent receives the message
    println!("{msg}");
    p.join()?;
    Ok(())
}
