//! # S2 — the same five processes, with a lock
//!
//! S1 (`s01_print_race.rs`) again, but each process holds one `Lock` around both of its
//! prints, so every process's two lines are printed together: the critical section runs in
//! one process at a time ("from concurrent to serial: slower, but no more contention").
//!
//! ```python
//! from multiprocessing import Process, Lock
//! def work(n,lock):
//!     # take the lock: only one process at a time runs the code inside it
//!     lock.acquire()
//!     print('%s: %s is running' %(n,os.getpid()))
//!     time.sleep(1)
//!     print('%s:%s is done' %(n,os.getpid()))
//!     # release it: only then can another process go in
//!     lock.release()
//!     # `with lock:` works too, and also releases the lock on an error; with bare
//!     # acquire/release an error leaves it held for good
//! if __name__ == '__main__':
//!     lock=Lock()
//!     for i in range(5):
//!         p=Process(target=work,args=(i,lock))
//!         p.start()
//! # 2: 10968 is running
//! # 2:10968 is done
//! # 0: 7932 is running
//! # 0:7932 is done
//! # ...
//! ```
//!
//! What to watch for: which process goes first still changes from run to run, but each
//! "done" line now comes right after its own "running" line.
//!
//! How ours differs: there is no `acquire`/`release` pair to forget. `lock.lock()` returns a
//! guard and the lock is released when the guard goes out of scope — Python's `with lock:`,
//! also on a panic. And if a holder dies outright (killed, `abort`), the next `lock()`
//! still gets the lock, as `Err(OwnerDied(guard))`, instead of waiting forever: here we just
//! carry on with the guard. The lock is handed to each child by cloning the handle into its
//! closure. The sleep is 0.1 s instead of 1 s.
use std::error::Error;
use std::time::Duration;

use multiproc::{Lock, OwnerDied, Process};

fn work(n: u32, lock: Lock) {
    let _guard = lock.lock().unwrap_or_else(OwnerDied::into_inner);
    println!("{n}: {} is running", std::process::id());
    std::thread::sleep(Duration::from_millis(100));
    println!("{n}:{} is done", std::process::id());
} // the guard is dropped here: the lock is released

pub fn main() -> Result<(), Box<dyn Error>> {
    let lock = Lock::new()?;
    for i in 0..5 {
        let lock = lock.clone();
        Process::fork(move || work(i, lock))?;
    }
    Ok(())
}
