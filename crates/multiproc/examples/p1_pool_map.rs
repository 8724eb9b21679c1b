//! # P1 — a parallel map with a pool
//!
//! Not a program of the tutorial (its part 中 stops at pipes): the step after it, a
//! CPU-bound function mapped over a list by a pool of worker processes, beside the same map
//! in one process. The answers must be the same; the pool should be faster on a machine
//! with more than one core. In Python:
//!
//! ```python
//! import time
//! from multiprocessing import Pool, cpu_count
//! def count_primes(n):   # the number of primes below n, by trial division
//!     return sum(1 for k in range(2, n) if all(k % d for d in range(2, int(k**0.5) + 1)))
//! if __name__ == '__main__':
//!     inputs = [20000 + 4000 * i for i in range(32)]
//!     t = time.time()
//!     serial = list(map(count_primes, inputs))
//!     one = time.time() - t
//!     with Pool(max(cpu_count(), 2)) as pool:
//!         t = time.time()
//!         parallel = pool.map(count_primes, inputs)
//!         many = time.time() - t
//!     print(one, many, parallel == serial)
//! ```
//!
//! What to watch for: the same answers (2262 primes below 20000, ...) and the speed-up,
//! which depends on the machine and on how loaded it is.
//!
//! How ours differs: `pool.map` takes a plain function (or a closure that captures
//! nothing); its inputs and results are serialized to and from the workers. A task that
//! panics comes back as an error from `map`, and a worker killed mid-task is replaced
//! instead of hanging the pool. `close` + `join` is Python's leaving the `with` block
//! cleanly (dropping the last handle terminates the workers).
use std::error::Error;
use std::time::Instant;

use multiproc::Pool;

/// The number of primes below `n`, by trial division.
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let inputs: Vec<u64> = (0..32).map(|i| 20_000 + 4_000 * i).collect();
    let processes = multiproc::cpu_count().max(2);

    let t = Instant::now();
    let serial: Vec<u64> = inputs.iter().map(|&n| count_primes(n)).collect();
    let one = t.elapsed();

    let pool = Pool::new(processes)?;
    let t = Instant::now();
    let parallel = pool.map(count_primes, inputs.clone())?;
    let many = t.elapsed();
    pool.close();
    pool.join()?;

    println!("primes below {}: {}", inputs[0], serial[0]);
    println!("one process: {:8.1} ms", one.as_secs_f64() * 1e3);
    println!(
        "pool of {processes}:   {:8.1} ms  (speed-up x{:.2})",
        many.as_secs_f64() * 1e3,
        one.as_secs_f64() / many.as_secs_f64()
    );
    println!("same answers: {}", parallel == serial);
    Ok(())
}
