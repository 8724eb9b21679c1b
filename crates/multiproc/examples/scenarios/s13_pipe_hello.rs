//! S13: `Pipe()`; the child sends "Hello 妹妹" and closes its end; the parent receives it.
//!
//! The child is started with the Spawn start method (the binary runs again) and gets its
//! pipe end as an argument: the end travels to it as a file descriptor.

use std::time::Duration;

use multiproc::{pipe, Connection, Process};

const MESSAGE: &str = "Hello 妹妹";

fn f(mut conn: Connection) {
    conn.send(MESSAGE).unwrap(); // the child sends a message
    conn.close();
}

pub fn run() -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    // Both ends can send and receive (duplex).
    let (parent_conn, child_conn) = pipe(true).map_err(e)?;
    // Hand one end to the child (moved: the parent's copy is closed once it has started).
    let p = Process::spawn(f, child_conn).map_err(e)?;
    // Bounded wait, so a failure can't hang the tour.
    let got: String = parent_conn
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| match e.is_timeout() {
            true => "nothing arrived from the child within 20 s".to_string(),
            false => e.to_string(),
        })?;
    println!("{got}"); // the parent received the message
    p.join().map_err(|x| x.to_string())?;
    if got != MESSAGE {
        return Err(format!("parent received {got:?}, expected {MESSAGE:?}"));
    }
    Ok(())
}
