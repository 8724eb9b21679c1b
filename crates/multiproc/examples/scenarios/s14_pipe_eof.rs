//! S14: the child loops on `recv` until end-of-file; the parent closes the child's end, sends
//! "hello" and closes its own end. End-of-file comes only once *every* copy of the other end
//! is closed, so the child closes its own copy of the parent's end first (the line the seed
//! leaves commented out, and then hangs).
//!
//! Spawn start method: the child holds exactly the two ends it was given, nothing inherited
//! behind its back (with fork it would also hold copies it cannot reach to close).

use std::time::Duration;

use multiproc::{pipe, Connection, Process, RecvTimeoutError};

fn f((mut parent_conn, mut child_conn): (Connection, Connection)) -> Vec<String> {
    parent_conn.close(); // without this close there is no EOF
    let mut got = Vec::new();
    loop {
        // Bounded, so that a bug shows as a failure instead of a hang.
        match child_conn.recv_timeout::<String>(Duration::from_secs(20)) {
            Ok(msg) => {
                println!("{msg}");
                got.push(msg);
            }
            Err(e) if e.is_timeout() => {
                println!("child: nothing for 20 s");
                return got;
            }
            Err(RecvTimeoutError::Eof) => {
                println!("child: EOFError");
                child_conn.close();
                got.push("<EOF>".into());
                return got;
            }
            Err(e) => {
                println!("child: {e}");
                return got;
            }
        }
    }
}

pub fn run() -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    let (parent_conn, child_conn) = pipe(true).map_err(e)?;
    // The child gets both ends (as in the seed); we keep our own copies.
    let p = Process::spawn(
        f,
        (
            parent_conn.try_clone().map_err(e)?,
            child_conn.try_clone().map_err(e)?,
        ),
    )
    .map_err(e)?;
    let mut child_conn = child_conn;
    child_conn.close();
    parent_conn
        .send("hello")
        .map_err(|e| format!("send: {e}"))?;
    drop(parent_conn); // parent_conn.close()
    let got = p.join().map_err(|x| x.to_string())?;
    if got != ["hello", "<EOF>"] {
        return Err(format!(
            "child saw {got:?}, expected \"hello\" then end-of-file"
        ));
    }
    Ok(())
}
