//! The spawn start method re-executes the binary: a closure that captures anything cannot
//! cross it, and does not compile (it used to be a run-time error).
use multiproc::Process;

fn main() {
    let n = 5u64;
    let _ = Process::spawn(move |x: u64| x + n, 1);
}
