//! `SharedMemory` write+read of 1 MiB beside Python's `shared_memory` (and a memcpy floor),
//! a `Listener`/`Client` ping-pong over a Unix socket beside Python's, and `sync::Dict`
//! insert+get while another process does the same, beside Python's `Manager().dict()`.

use multiproc::sync::Dict;
use multiproc::{Client, Event, Listener, Process, SharedMemory};

use crate::harness::{python, time_us, Better, Config, Row};

const MIB: usize = 1 << 20;

pub fn rows(cfg: &Config) -> Vec<Row> {
    let py = python(
        &[
            "shm_write_read_1m",
            "listener_ping_pong",
            "dict_get_insert_2p",
        ],
        cfg.quick,
    );
    let n = cfg.samples(15);

    let shm = SharedMemory::create_unique(MIB).expect("create shared memory");
    let data: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
    let mut out = vec![0u8; MIB];
    let ours = time_us(n, 50, || {
        shm.write_at(0, &data).unwrap();
        shm.read_at(0, &mut out).unwrap();
    });
    shm.unlink().expect("unlink");
    let mut a = vec![0u8; MIB];
    let mut b = vec![0u8; MIB];
    let floor = time_us(n, 50, || {
        a.copy_from_slice(&data);
        b.copy_from_slice(std::hint::black_box(&a));
    });

    let path = format!("/tmp/multiproc-bench-{}.sock", std::process::id());
    let listener = Listener::bind(path.as_str())
        .expect("listen")
        .with_authkey(b"bench");
    let rounds = 2000;
    let echo = Process::fork(move || {
        let c = Client::new(path.as_str())
            .authkey(b"bench")
            .connect()
            .unwrap();
        while let Ok(m) = c.recv_bytes() {
            c.send_bytes(&m).unwrap();
        }
    })
    .expect("fork");
    let c = listener.accept().expect("accept");
    let msg = [7u8; 64];
    let ping = time_us(n, rounds, || {
        c.send_bytes(&msg).unwrap();
        c.recv_bytes().unwrap();
    });
    drop(c);
    echo.join().expect("echo child");

    // Dict: insert + get in this process while a forked one does the same on it.
    let d: Dict<u64, u64> = Dict::with_capacity(1024, 32).expect("create Dict");
    let stop = Event::new().expect("event");
    let other = {
        let (d, stop) = (d.clone(), stop.clone());
        Process::fork(move || {
            let mut i = 0u64;
            while !stop.is_set() {
                d.insert(&(i % 100), &i).unwrap();
                d.get(&(i % 100)).unwrap();
                i += 1;
            }
        })
        .expect("fork")
    };
    let mut k = 0u64;
    let dict = time_us(n, 2000, || {
        d.insert(&(k % 100), &k).unwrap();
        std::hint::black_box(d.get(&(k % 100)).unwrap());
        k += 1;
    });
    stop.set();
    other.join().expect("dict child");

    vec![
        Row {
            name: "Dict insert+get, 2 processes".into(),
            unit: "us",
            better: Better::Lower,
            ours: dict,
            baseline: py.get("dict_get_insert_2p").copied(),
            reference: None,
        },
        Row {
            name: "SharedMemory write+read 1 MiB".into(),
            unit: "us",
            better: Better::Lower,
            ours,
            baseline: py.get("shm_write_read_1m").copied(),
            reference: Some(("memcpy 1 MiB twice".into(), floor)),
        },
        Row {
            name: "Listener/Client ping-pong 64 B (unix)".into(),
            unit: "us",
            better: Better::Lower,
            ours: ping,
            baseline: py.get("listener_ping_pong").copied(),
            reference: None,
        },
    ]
}
