//! P1: a parallel map over a CPU-bound function with a [`Pool`], beside the same map in one
//! process. Checks that the results are the same; prints the speed-up (timing is not judged:
//! the machine may be loaded).

use std::time::Instant;

use multiproc::Pool;

/// CPU-bound: the number of primes below `n`, by trial division.
pub fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// Runs the scenario.
pub fn run() -> Result<(), String> {
    let inputs: Vec<u64> = (0..32).map(|i| 20_000 + 4_000 * i).collect();
    let processes = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);

    let t = Instant::now();
    let serial: Vec<u64> = inputs.iter().map(|&n| count_primes(n)).collect();
    let one = t.elapsed();

    let pool = Pool::new(processes).map_err(|e| format!("cannot start the pool: {e}"))?;
    let t = Instant::now();
    let parallel = pool
        .map(count_primes, inputs.clone())
        .map_err(|e| format!("map failed: {e}"))?;
    let many = t.elapsed();
    pool.close();
    pool.join().map_err(|e| format!("join failed: {e}"))?;

    println!(
        "primes below {}..{}: {} tasks",
        inputs[0],
        inputs[inputs.len() - 1],
        inputs.len()
    );
    println!("one process:   {:>8.1} ms", one.as_secs_f64() * 1e3);
    println!(
        "pool of {processes}:     {:>8.1} ms  (speed-up x{:.2})",
        many.as_secs_f64() * 1e3,
        one.as_secs_f64() / many.as_secs_f64()
    );
    if parallel != serial {
        return Err("the pool's results differ from the serial ones".into());
    }
    if serial[0] != 2262 {
        return Err(format!(
            "primes below 20000: got {}, expected 2262",
            serial[0]
        ));
    }
    Ok(())
}
