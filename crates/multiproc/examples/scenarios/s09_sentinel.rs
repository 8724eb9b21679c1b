//! S9: the producer puts a `None` sentinel at the end; the consumer stops on it.

use std::time::Duration;

use multiproc::{Process, Queue};

pub fn run() -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    let q: Queue<Option<String>> = Queue::new().map_err(e)?;
    let qc = q.clone();
    let consumer = Process::fork(move || {
        let mut ate = Vec::new();
        while let Some(res) = qc.get().unwrap() {
            std::thread::sleep(Duration::from_millis(10));
            println!("{} ate {res}", std::process::id());
            ate.push(res);
        }
        ate
    })
    .map_err(e)?;
    let qp = q.clone();
    let producer = Process::fork(move || {
        for i in 1..5 {
            std::thread::sleep(Duration::from_millis(10));
            let res = format!("bun {i}");
            qp.put(Some(res.clone())).unwrap();
            println!("{} made {res}", std::process::id());
        }
        qp.put(None).unwrap();
    })
    .map_err(e)?;
    println!("main");
    producer.join().map_err(|x| x.to_string())?;
    let ate = consumer
        .join_timeout(Duration::from_secs(20))
        .map_err(|x| match x.is_timeout() {
            true => "the consumer did not stop on the sentinel".to_string(),
            false => x.to_string(),
        })?;
    let want: Vec<String> = (1..5).map(|i| format!("bun {i}")).collect();
    if ate != want {
        return Err(format!("ate {ate:?}"));
    }
    Ok(())
}
