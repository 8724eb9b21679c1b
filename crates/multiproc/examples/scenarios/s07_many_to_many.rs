//! S7: 9 processes each put "pid(put): time"; 10 processes each get one; `Queue(3)`.
//! In the seed the 10th consumer blocks forever; here it is shown blocked for a bounded
//! while, then the queue is closed and it ends with `Closed`.

use std::time::{Duration, Instant};

use multiproc::queue::GetError;
use multiproc::{Process, Queue};

pub fn run() -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    let q: Queue<String> = Queue::bounded(3).map_err(e)?;
    let producers = (1..10)
        .map(|_| {
            let q = q.clone();
            Process::fork(move || {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                q.put(format!("{}(put):{t:.3}", std::process::id()))
                    .unwrap();
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    let consumers = (0..10)
        .map(|_| {
            let q = q.clone();
            Process::fork(move || match q.get() {
                Ok(info) => {
                    println!("{}(get):{info}", std::process::id());
                    Some(info)
                }
                Err(GetError::Closed) => {
                    println!("{}(get): queue closed, nothing for me", std::process::id());
                    None
                }
                Err(e) => panic!("{e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    for p in producers {
        p.join().map_err(|x| x.to_string())?;
    }
    // Everything put has been taken once the queue is empty.
    let t0 = Instant::now();
    while !q.is_empty() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("items were not taken".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The seed's 10th consumer would wait forever: show it waiting, then end it.
    std::thread::sleep(Duration::from_millis(200));
    let blocked = consumers.iter().filter(|c| c.is_alive()).count();
    println!("{blocked} consumer(s) still blocked in get() after 200 ms; closing the queue");
    q.close();
    let mut got = Vec::new();
    let mut closed = 0;
    for c in consumers {
        match c.join().map_err(|x| x.to_string())? {
            Some(x) => got.push(x),
            None => closed += 1,
        }
    }
    got.sort();
    got.dedup();
    if got.len() != 9 {
        return Err(format!("{} distinct items delivered, want 9", got.len()));
    }
    if closed != 1 || blocked < 1 {
        return Err(format!(
            "{closed} consumer(s) ended by close, {blocked} seen blocked; want 1 and >= 1"
        ));
    }
    Ok(())
}
