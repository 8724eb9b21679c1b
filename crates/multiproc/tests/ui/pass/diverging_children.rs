//! Child closures that never return compile as written (issue 12, point 1): their return type
//! is `!` (or, in edition 2021, falls back to `()` without the never-type fallback lint).
use std::time::Duration;

use multiproc::process::{ExitStatus, JoinError};
use multiproc::{Lock, Process};

fn main() -> Result<(), multiproc::Error> {
    let p = Process::fork(|| std::process::abort())?;
    assert!(matches!(p.join(), Err(JoinError::Exited(ExitStatus::Signal(6)))));

    let lock = Lock::new()?;
    let l = lock.clone();
    let p = Process::fork(move || {
        std::mem::forget(l.lock().unwrap());
        std::process::abort();
    })?;
    assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Signal(6)));

    let p = Process::fork(|| panic!("never returns"))?;
    assert_eq!(p.join().unwrap_err().panic_message(), Some("never returns"));

    let p = Process::fork(move || {
        let _unused = 1;
        std::process::exit(4);
    })?;
    assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Code(4)));

    let p = Process::builder().name("diverges").fork(|| std::process::exit(5))?;
    assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Code(5)));

    let p = Process::builder().daemon(true).fork(|| loop {
        std::thread::sleep(Duration::from_millis(10));
    })?;
    p.kill()?;
    assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Signal(9)));

    // Ordinary values alongside: nothing changed for them.
    assert_eq!(Process::fork(|| 6 * 7)?.join().unwrap(), 42);
    let p: Process<u32> = Process::fork(Default::default)?;
    assert_eq!(p.join().unwrap(), 0);
    Ok(())
}
