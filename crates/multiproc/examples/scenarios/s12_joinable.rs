//! S12: `JoinableQueue`; 3 producers put 10 items each and call `join()`; 2 daemon consumers
//! call `task_done()`; main joins the producers and exits. The program's "main" runs in a
//! child here, so that we can watch it exit and check its daemon consumers went with it.

use std::time::{Duration, Instant};

use multiproc::{JoinableQueue, Process, Queue};

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X") | None
        ),
        Err(_) => false,
    }
}

/// The seed's main: returns the daemon pids and how many items were processed when every
/// producer's `join()` had returned.
fn seed_main() -> (Vec<u32>, usize, Vec<u64>) {
    let q: JoinableQueue<String> = JoinableQueue::new().unwrap();
    let processed: Queue<String> = Queue::new().unwrap();
    let producers: Vec<Process<u64>> = ["bun", "bone", "swill"]
        .into_iter()
        .map(|name| {
            let q = q.clone();
            Process::fork(move || {
                for i in 0..10 {
                    std::thread::sleep(Duration::from_millis(2));
                    let res = format!("{name}{i}");
                    q.put(res.clone()).unwrap();
                    println!("{} made {res}", std::process::id());
                }
                println!("{name}: done producing");
                q.join();
                println!("{name}: done producing~~~~~~ (all processed)");
                q.unfinished_tasks()
            })
            .unwrap()
        })
        .collect();
    let consumers: Vec<Process<()>> = (0..2)
        .map(|_| {
            let (q, done) = (q.clone(), processed.clone());
            Process::builder()
                .daemon(true)
                .fork(move || {
                    while let Ok(res) = q.get() {
                        std::thread::sleep(Duration::from_millis(3));
                        println!("{} ate {res}", std::process::id());
                        done.put(res).unwrap();
                        q.task_done().unwrap();
                    }
                })
                .unwrap()
        })
        .collect();
    let unfinished: Vec<u64> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let n = processed.len();
    let pids = consumers.iter().map(|c| c.pid()).collect();
    // Main ends here; its daemon children go with it.
    std::mem::forget(consumers);
    (pids, n, unfinished)
}

pub fn run() -> Result<(), String> {
    let main = Process::fork(seed_main).map_err(|e| e.to_string())?;
    let (daemons, processed, unfinished) =
        main.join_timeout(Duration::from_secs(30))
            .map_err(|x| match x.is_timeout() {
                true => "the program's main did not finish".to_string(),
                false => x.to_string(),
            })?;
    if processed != 30 {
        return Err(format!(
            "{processed} items processed when the producers returned, want 30"
        ));
    }
    if unfinished.iter().any(|&u| u != 0) {
        return Err(format!(
            "unfinished tasks seen by producers after join: {unfinished:?}"
        ));
    }
    let t0 = Instant::now();
    while daemons.iter().any(|&p| alive(p)) {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "daemon consumers {daemons:?} outlived their parent"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("main exited; daemon consumers {daemons:?} are gone");
    Ok(())
}
