//! Pool: `map` over 100,000 trivial tasks (the pool's overhead per task) and over CPU-bound
//! tasks (speed-up over one process), beside Python's `multiprocessing.Pool` doing the same.

use std::time::Instant;

use multiproc::Pool;

use crate::harness::{median, median_of, python, time_us, Better, Config, Row};

fn ident(x: u64) -> u64 {
    x
}

/// CPU-bound: primes below `n` by trial division.
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

const TRIVIAL: u64 = 100_000;

pub fn rows(cfg: &Config) -> Vec<Row> {
    let py = python(&["pool_map_cpu_speedup"], cfg.quick);
    let pool = Pool::new(2).expect("pool");
    // Per task: one map of 100,000 identity tasks (Python's default chunksize), in ns/task.
    // Ours and Python's alternately, in rounds (7 maps of Python's, then 7 of ours; one
    // round with `--quick`); each side's figure is the median of its round medians. A map takes well under a millisecond here, so on a busy machine a load spike
    // during one side's window used to move the ratio by 2x.
    let rounds = if cfg.quick { 1 } else { 3 };
    let mut ours_rounds = Vec::new();
    let mut py_rounds = Vec::new();
    for _ in 0..rounds {
        if let Some(&p) = python(&["pool_map_trivial"], true).get("pool_map_trivial") {
            py_rounds.push(p);
        }
        ours_rounds.push(
            time_us(cfg.samples(7), 1, || {
                let v = pool.map(ident, 0..TRIVIAL).expect("map");
                assert_eq!(v.len(), TRIVIAL as usize);
            }) * 1e3
                / TRIVIAL as f64,
        );
    }
    let per_task = median(&mut ours_rounds);
    let py_per_task = (!py_rounds.is_empty()).then(|| median(&mut py_rounds));
    // In-process floor: the same loop without processes.
    let floor = time_us(cfg.samples(9), 1, || {
        let v: Vec<u64> = (0..TRIVIAL)
            .map(|x| std::hint::black_box(ident(x)))
            .collect();
        assert_eq!(v.len(), TRIVIAL as usize);
    }) * 1e3
        / TRIVIAL as f64;
    // CPU-bound: 32 tasks of ~ms each; speed-up of a 2-process pool over one process.
    let inputs: Vec<u64> = (0..32).map(|i| 20_000 + 4_000 * i).collect();
    let speedup = median_of(cfg.samples(5), || {
        let t = Instant::now();
        let serial: Vec<u64> = inputs.iter().map(|&n| count_primes(n)).collect();
        let one = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let par = pool.map(count_primes, inputs.clone()).expect("map");
        let two = t.elapsed().as_secs_f64();
        assert_eq!(par, serial);
        one / two
    });
    vec![
        Row {
            name: "pool map, 100,000 trivial tasks, 2 workers (per task)".into(),
            unit: "ns",
            better: Better::Lower,
            ours: per_task,
            baseline: py_per_task,
            reference: Some(("same loop in-process".into(), floor)),
        },
        Row {
            name: "pool map, CPU-bound, 2 workers (speed-up over 1 process)".into(),
            unit: "x",
            better: Better::Higher,
            ours: speedup,
            baseline: py.get("pool_map_cpu_speedup").copied(),
            reference: None,
        },
    ]
}
