//! A spawned target that never returns (`-> !`, or the nameable `Never`), and a
//! non-capturing closure given to `spawn` (it coerces to a `fn`, and so crosses the `exec`).
use multiproc::process::{ExitStatus, Never};
use multiproc::Process;

fn exits(code: i32) -> ! {
    std::process::exit(code)
}

fn exits_too(code: i32) -> Never {
    std::process::exit(code)
}

fn main() -> Result<(), multiproc::Error> {
    let p = Process::spawn(exits, 3)?;
    assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Code(3)));
    let p: Process<Never> = Process::builder().spawn(exits_too, 4)?;
    assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Code(4)));
    let p = Process::spawn(|x: u64| x + 1, 41)?;
    assert_eq!(p.join().unwrap(), 42);
    Ok(())
}
