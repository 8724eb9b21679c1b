//! The Redis backend (`multiproc::remote`): its own `redis-server` on a private unix socket
//! in a temporary directory, started here and stopped at the end, and on that one server,
//! in one run:
//!
//! - remote `Queue` put+get of small messages by C clients beside `redis-benchmark`'s
//!   LPUSH+RPOP with the same C clients (the engine's floor: a put+get is at best one LPUSH
//!   and one RPOP);
//! - `put_many`/`get_many` in batches beside the unbatched put+get;
//! - a remote `Pool` of 2 worker processes running trivial tasks beside Python's RQ (2
//!   `SimpleWorker`s, `bench/python/rq_bench.py`, from a venv at `target/rqenv`).
//!
//! No `redis-server` (or no `redis-benchmark`): the rows that need it are skipped with a
//! note on stderr. No RQ: the pool row says so and has no Python figure.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use multiproc::remote::{Pool, Queue, Task, Worker};

use crate::harness::{median, Better, Config, Row};

/// The environment variable that makes this binary a remote pool worker: `URL POOL`.
pub const WORKER_ENV: &str = "MULTIPROC_BENCH_REMOTE_WORKER";

const IDENT: Task<u64, u64> = Task::new("ident");

fn ident(x: u64) -> u64 {
    x
}

/// Runs a remote pool worker (in a process started by [`rows`]) until its pool is closed.
pub fn worker_main(spec: &str) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers; no memory is shared.
    unsafe {
        // Dies with the benchmark even if that is killed (the server goes with it anyway).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    let (url, pool) = spec.split_once(' ').expect("URL POOL");
    let w = Worker::new(url, pool)
        .expect("worker")
        .register(IDENT, ident);
    match w.run() {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("remote bench worker: {e}");
            std::process::exit(1)
        }
    }
}

/// A private redis-server: unix socket in a temporary directory, no persistence, no TCP.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start() -> Result<Server, String> {
        let dir =
            std::env::temp_dir().join(format!("multiproc-bench-redis-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.join("redis.sock"))
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                format!("redis-server not runnable ({e})")
            })?;
        let mut s = Server { child, dir };
        let t0 = Instant::now();
        while !s.ping() {
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("redis-server exited at start ({st})"));
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(s)
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.sock().display())
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.sock()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut b = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n"
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Clients of the queue rows (and of `redis-benchmark`).
const CLIENTS: usize = 4;
/// Put+get pairs per queue sample (all clients together).
const PAIRS: usize = 20_000;
/// Items per `put_many`/`get_many`.
const BATCH: usize = 100;
/// Trivial tasks per pool sample (ours and RQ's).
const TASKS: usize = 2_000;

pub fn rows(cfg: &Config) -> Vec<Row> {
    let server = match Server::start() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("remote: {why}: the remote rows are skipped");
            return Vec::new();
        }
    };
    let url = server.url();
    let rounds = if cfg.quick { 1 } else { 3 };
    let mut rows = Vec::new();

    // Queue rows: ours and the floors alternately, `rounds` times; medians of round medians.
    let mut ours = Vec::new();
    let mut batched = Vec::new();
    let mut floor = Vec::new();
    let mut floor_note = None;
    for _ in 0..rounds {
        // Sample by sample: the floor, ours unbatched, ours batched.
        let (mut f, mut o, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cfg.samples(5) {
            if floor_note.is_none() {
                match redis_benchmark(&server.sock(), CLIENTS, PAIRS) {
                    Ok(v) => f.push(v),
                    Err(why) => floor_note = Some(why),
                }
            }
            o.push(queue_pairs(&url, CLIENTS, PAIRS, 1));
            b.push(queue_pairs(&url, CLIENTS, PAIRS * 5, BATCH));
        }
        if !f.is_empty() {
            floor.push(median(&mut f));
        }
        ours.push(median(&mut o));
        batched.push(median(&mut b));
    }
    if let Some(why) = &floor_note {
        eprintln!("remote: redis-benchmark: {why}: no engine floor");
    }
    let ours = median(&mut ours);
    let floor = (!floor.is_empty() && floor_note.is_none()).then(|| median(&mut floor));
    rows.push(Row {
        name: format!("remote queue put+get, {CLIENTS} clients (pairs/s)"),
        unit: "k/s",
        better: Better::Higher,
        ours: ours / 1e3,
        baseline: None,
        reference: floor.map(|f| ("redis-benchmark LPUSH+RPOP".into(), f / 1e3)),
    });
    rows.push(Row {
        name: format!("remote put_many+get_many x{BATCH}, {CLIENTS} clients"),
        unit: "k/s",
        better: Better::Higher,
        ours: median(&mut batched) / 1e3,
        baseline: None,
        reference: Some(("unbatched put+get".into(), ours / 1e3)),
    });
    rows.push(pool_row(cfg, &server, rounds));
    drop(server);
    rows
}

/// Pairs (items put and got) per second: `clients` threads, each with its own handle (its
/// own connection) on one queue, each putting then getting `batch` items at a time until
/// `pairs` items went through in all.
fn queue_pairs(url: &str, clients: usize, pairs: usize, batch: usize) -> f64 {
    let name = format!("bench-q-{}", multiproc_token());
    let q: Queue<u64> = Queue::open(url, &name).expect("open remote queue");
    let handles: Vec<Queue<u64>> = (0..clients).map(|_| q.clone()).collect();
    for h in &handles {
        h.len().expect("connect"); // connected before the clock starts
    }
    let per_client = pairs / clients / batch;
    let start = Barrier::new(clients + 1);
    let t = std::thread::scope(|s| {
        for h in &handles {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for i in 0..per_client {
                    if batch == 1 {
                        h.put(i as u64).expect("put");
                        h.get().expect("get");
                    } else {
                        let items: Vec<u64> = (0..batch as u64).collect();
                        h.put_many(items).expect("put_many");
                        // Other clients may take some of ours: as many as we put, in all.
                        let mut got = 0;
                        while got < batch {
                            got += h.get_many(batch - got).expect("get_many").len();
                        }
                    }
                }
            });
        }
        start.wait();
        let t = Instant::now();
        // The scope joins every client before returning.
        t
    });
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(q.len().expect("len"), 0, "every item was got");
    q.unlink().expect("unlink");
    (per_client * clients * batch) as f64 / secs
}

/// A random name suffix (so samples never share a queue).
fn multiproc_token() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The engine's floor for a put+get, in pairs per second: `redis-benchmark` with `clients`
/// connections doing LPUSH, then RPOP, `n` requests each, no pipelining; a pair costs one
/// LPUSH and one RPOP, so pairs/s = 1 / (1/lpush + 1/rpop).
fn redis_benchmark(sock: &Path, clients: usize, n: usize) -> Result<f64, String> {
    let out = Command::new("redis-benchmark")
        .arg("-s")
        .arg(sock)
        .args(["-t", "lpush,rpop", "-P", "1", "--csv", "-c"])
        .arg(clients.to_string())
        .arg("-n")
        .arg(n.to_string())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("not runnable ({e})"))?;
    if !out.status.success() {
        return Err(format!("failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = |test: &str| -> Result<f64, String> {
        text.lines()
            .find_map(|l| {
                let mut f = l.split(',').map(|c| c.trim().trim_matches('"'));
                (f.next() == Some(test)).then(|| f.next()?.parse::<f64>().ok())?
            })
            .ok_or_else(|| format!("no {test} figure in its output: {text:?}"))
    };
    let (push, pop) = (rps("LPUSH")?, rps("RPOP")?);
    Ok(1.0 / (1.0 / push + 1.0 / pop))
}

/// Remote pool: `TASKS` trivial tasks on 2 worker processes, from `map` to all results, in
/// tasks per second; beside RQ's 2 `SimpleWorker`s from enqueueing to all jobs finished.
fn pool_row(cfg: &Config, server: &Server, rounds: usize) -> Row {
    let url = server.url();
    let name = format!("bench-pool-{}", multiproc_token());
    let exe = std::env::current_exe().expect("own path");
    let mut workers = Workers(
        (0..2)
            .map(|_| {
                Command::new(&exe)
                    .env(WORKER_ENV, format!("{url} {name}"))
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("start a remote worker")
            })
            .collect(),
    );
    let pool = Pool::open(&url, &name).expect("open remote pool");
    // Wait for both workers (a first map also warms up every connection).
    let t0 = Instant::now();
    while pool.workers().expect("workers").len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "remote workers did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    pool.map(IDENT, 0..100).expect("warm-up map");
    let rq = rq_python();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut rq_note = None;
    for _ in 0..rounds {
        match &rq {
            Ok(py) => match rq_run(py, &server.sock(), TASKS, cfg.samples(3).min(3)) {
                Ok(v) => theirs.push(v),
                Err(why) => rq_note = Some(why),
            },
            Err(why) => rq_note = Some(why.clone()),
        }
        let mut v: Vec<f64> = (0..cfg.samples(7))
            .map(|_| {
                let t = Instant::now();
                let r = pool.map(IDENT, 0..TASKS as u64).expect("remote map");
                let secs = t.elapsed().as_secs_f64();
                assert_eq!(r.len(), TASKS);
                assert!(r.iter().enumerate().all(|(i, &x)| x == i as u64));
                TASKS as f64 / secs
            })
            .collect();
        ours.push(median(&mut v));
    }
    pool.close().expect("close remote pool");
    let t0 = Instant::now();
    while !workers
        .0
        .iter_mut()
        .all(|w| matches!(w.try_wait(), Ok(Some(_))))
    {
        if t0.elapsed() > Duration::from_secs(10) {
            eprintln!("remote: the pool's workers did not end within 10 s of close: killed");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(workers);
    let _ = pool.unlink();
    let rq_fig = match &rq_note {
        Some(why) => {
            eprintln!("remote: RQ: {why}: no Python figure for the pool row");
            None
        }
        None => Some(median(&mut theirs)),
    };
    Row {
        name: format!(
            "remote pool, 2 workers, trivial tasks{}",
            if rq_fig.is_some() {
                " (py: RQ)"
            } else {
                " (no RQ)"
            }
        ),
        unit: "tasks/s",
        better: Better::Higher,
        ours: median(&mut ours),
        baseline: rq_fig,
        reference: None,
    }
}

/// The remote pool's worker processes; any still running when this goes (a panic, a
/// worker that did not end) is killed.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            if !matches!(w.try_wait(), Ok(Some(_))) {
                let _ = w.kill();
                let _ = w.wait();
            }
        }
    }
}

/// The Python with RQ: `target/rqenv` (made with `python3 -m venv target/rqenv &&
/// target/rqenv/bin/pip install rq`), or `MULTIPROC_BENCH_RQ_PYTHON`.
fn rq_python() -> Result<PathBuf, String> {
    let py = match std::env::var_os("MULTIPROC_BENCH_RQ_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/rqenv/bin/python"),
    };
    let ok = Command::new(&py)
        .args(["-c", "import rq"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "RQ is not installed at {} (python3 -m venv target/rqenv && \
             target/rqenv/bin/pip install rq)",
            py.display()
        ))
    }
}

/// RQ's median jobs per second over `samples` runs of `n` jobs (`bench/python/rq_bench.py`).
fn rq_run(py: &Path, sock: &Path, n: usize, samples: usize) -> Result<f64, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/rq_bench.py");
    let out = Command::new(py)
        .arg(script)
        .arg(format!("unix://{}", sock.display()))
        .arg(n.to_string())
        .arg(samples.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("rq_bench.py not runnable ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "rq_bench.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("rq_jobs_per_s\t")?.trim().parse().ok())
        .ok_or_else(|| format!("no figure in rq_bench.py's output: {text:?}"))
}
