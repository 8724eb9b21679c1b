//! Shared by S10, S11 and S11b: producers and consumers around one queue, ended either by
//! one sentinel per consumer (the seed's way) or by closing the queue.

use std::time::Duration;

use multiproc::{Process, Queue};

/// How the consumers are told to stop.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Main puts one `None` per consumer after joining the producers.
    Sentinels,
    /// Main closes the queue after joining the producers.
    Close,
}

/// `producers` producers put `per` items each; `consumers` consumers eat until told to stop.
/// Checks that every item was eaten exactly once and every consumer stopped.
pub fn run(producers: usize, per: usize, consumers: usize, stop: Stop) -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    let q: Queue<Option<String>> = Queue::new().map_err(e)?;
    let ps = (0..producers)
        .map(|p| {
            let q = q.clone();
            Process::fork(move || {
                for i in 1..=per {
                    std::thread::sleep(Duration::from_millis(2 + (i as u64 * 7 + p as u64) % 10));
                    let data = format!("data {p}-{i}");
                    q.put(Some(data.clone())).unwrap();
                    println!("producer {p} made: {data}");
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    let cs = (0..consumers)
        .map(|c| {
            let q = q.clone();
            Process::fork(move || {
                let mut ate = Vec::new();
                match stop {
                    Stop::Sentinels => {
                        while let Some(data) = q.get().unwrap() {
                            println!("consumer {c} got: {data}");
                            ate.push(data);
                        }
                    }
                    Stop::Close => {
                        for data in &q {
                            let data = data.unwrap().expect("no sentinels in this version");
                            println!("consumer {c} got: {data}");
                            ate.push(data);
                        }
                    }
                }
                println!("consumer {c} is done");
                ate
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    for p in ps {
        p.join().map_err(|x| x.to_string())?;
    }
    match stop {
        Stop::Sentinels => {
            for _ in 0..consumers {
                q.put(None).map_err(|e| e.to_string())?;
            }
        }
        Stop::Close => q.close(),
    }
    let mut all = Vec::new();
    for c in cs {
        let ate = c
            .join_timeout(Duration::from_secs(20))
            .map_err(|x| match x.is_timeout() {
                true => "a consumer did not stop".to_string(),
                false => x.to_string(),
            })?;
        all.extend(ate);
    }
    let total = all.len();
    all.sort();
    all.dedup();
    if total != producers * per || all.len() != total {
        return Err(format!(
            "{total} items eaten ({} distinct), want {}",
            all.len(),
            producers * per
        ));
    }
    Ok(())
}
