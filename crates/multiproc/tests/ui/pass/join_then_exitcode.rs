//! `join` does not consume the `Process` (issue 12, point 10): the exit code, and the
//! structured failure, are there after it.
use multiproc::process::{ExitStatus, JoinError};
use multiproc::Process;

fn main() -> Result<(), multiproc::Error> {
    let p = Process::fork(|| -> u8 { std::process::exit(7) })?;
    let err = p.join().unwrap_err();
    assert_eq!(p.exitcode(), Some(7));
    assert_eq!(p.exit_status(), Some(ExitStatus::Code(7)));
    assert!(matches!(err, JoinError::Exited(ExitStatus::Code(7))));
    assert!(matches!(p.join(), Err(JoinError::AlreadyJoined)));

    let workers: Vec<Process<u32>> = (0..3)
        .map(|i| Process::fork(move || i * 2))
        .collect::<Result<_, _>>()?;
    for w in &workers {
        w.join()?;
    }
    for w in workers {
        assert_eq!(w.exitcode(), Some(0));
    }
    Ok(())
}
