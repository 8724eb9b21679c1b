//! S6: main puts an item; child f puts another and prints `qsize`; child f2 gets one; main
//! gets one. Every item is received exactly once, by someone.

use std::time::Duration;

use multiproc::{Process, Queue};

pub fn run() -> Result<(), String> {
    let e = |e: multiproc::Error| e.to_string();
    let q: Queue<String> = Queue::new().map_err(e)?;
    q.put("little ghost".into()).map_err(|e| e.to_string())?;
    let qf = q.clone();
    let f = Process::fork(move || {
        qf.put("how much?".into()).unwrap();
        println!("{}", qf.len());
    })
    .map_err(e)?;
    let qf2 = q.clone();
    let f2 = Process::fork(move || {
        println!(">>>>>>>>");
        let x = qf2.get_timeout(Duration::from_secs(10)).unwrap();
        println!("{x}");
        x
    })
    .map_err(e)?;
    println!("{}", q.len());
    std::thread::sleep(Duration::from_millis(100));
    let mine = q
        .get_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("{mine}");
    f.join().map_err(|x| x.to_string())?;
    let theirs = f2.join().map_err(|x| x.to_string())?;
    let mut all = vec![mine, theirs];
    all.sort();
    if all != ["how much?", "little ghost"] {
        return Err(format!("items received: {all:?}"));
    }
    if !q.is_empty() {
        return Err("an item was left over".into());
    }
    Ok(())
}
