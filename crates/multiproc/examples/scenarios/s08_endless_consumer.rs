//! S8: one producer puts 9 items; one consumer loops forever on `get`. The seed's program
//! never ends; here the consumer is shown still blocked a bounded while after the producer
//! finished, then terminated.

use std::time::Duration;

use multiproc::{Process, Queue};

pub fn run() -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    let q: Queue<String> = Queue::new().map_err(e)?;
    let eaten: Queue<String> = Queue::new().map_err(e)?;
    let qp = q.clone();
    let producer = Process::fork(move || {
        for i in 1..10 {
            std::thread::sleep(Duration::from_millis(5));
            let res = format!("bun {i}");
            qp.put(res.clone()).unwrap();
            println!("{} made {res}", std::process::id());
        }
    })
    .map_err(e)?;
    let (qc, ec) = (q.clone(), eaten.clone());
    // `while true: q.get()` — it only ends if the queue is closed, which nobody does here.
    let consumer = Process::fork(move || {
        while let Ok(res) = qc.get() {
            std::thread::sleep(Duration::from_millis(5));
            println!("{} ate {res}", std::process::id());
            ec.put(res).unwrap();
        }
    })
    .map_err(e)?;
    println!("main");
    producer.join().map_err(|x| x.to_string())?;
    let mut got = Vec::new();
    for _ in 0..9 {
        got.push(
            eaten
                .get_timeout(Duration::from_secs(10))
                .map_err(|e| format!("consumer did not eat everything: {e}"))?,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    if !consumer.is_alive() {
        return Err("the consumer ended, but it has no stop signal".into());
    }
    println!(
        "the consumer is still blocked in get() 300 ms after the producer finished; terminating it"
    );
    consumer.terminate().map_err(e)?;
    let r = consumer
        .join_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string());
    let code = consumer.exitcode();
    let want: Vec<String> = (1..10).map(|i| format!("bun {i}")).collect();
    if got != want {
        return Err(format!("eaten: {got:?}"));
    }
    if code != Some(-libc::SIGTERM) {
        return Err(format!(
            "consumer exit code {code:?} ({r:?}), want -SIGTERM"
        ));
    }
    Ok(())
}
