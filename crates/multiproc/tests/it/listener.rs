//! `Listener` / `Client`: connections between unrelated processes over Unix sockets (path
//! and abstract) and TCP, with CPython's `multiprocessing.connection` on the other side
//! (run as `python3` subprocesses: same framing, same authentication handshake), both ways,
//! with the right and a wrong authkey; hostile and silent peers.
//!
//! Each Python script arms `signal.alarm`, so a hung peer ends; every wait here is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multiproc::pipe::Address;
use multiproc::{pipe, wait_timeout, Client, ErrorKind, Listener, Process, SharedMemory};

use crate::util::{in_clean_child, with_watchdog};

const LIMIT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(30);

fn sock_path(tag: &str) -> String {
    format!("/tmp/mproc_it_{tag}_{}.sock", std::process::id())
}

/// A 1 MiB message with a recognizable pattern (also built by the Python scripts).
fn big() -> Vec<u8> {
    (0..(1usize << 20)).map(|i| (i % 251) as u8).collect()
}

/// The Python interpreters to talk to: `python3`, and any 3.12 or later that pyenv has
/// installed (their handshake is the HMAC-SHA256 dialect; 3.11's is HMAC-MD5).
fn pythons() -> Vec<String> {
    let mut v = vec!["python3".to_string()];
    let root = std::env::var("PYENV_ROOT")
        .unwrap_or_else(|_| format!("{}/.pyenv", std::env::var("HOME").unwrap_or_default()));
    if let Ok(dir) = std::fs::read_dir(format!("{root}/versions")) {
        let mut found: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                ["3.12", "3.13", "3.14", "3.15"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .map(|n| format!("{root}/versions/{n}/bin/python3"))
            .filter(|p| std::path::Path::new(p).exists())
            .collect();
        found.sort();
        v.extend(found);
    }
    v
}

fn python(script: &str, args: &[&str]) -> Child {
    python_in("python3", script, args)
}

fn python_in(interpreter: &str, script: &str, args: &[&str]) -> Child {
    Command::new(interpreter)
        .arg("-c")
        .arg(format!("import signal; signal.alarm(60)\n{script}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// Waits for a Python child and returns its stdout; panics with its stderr on failure.
fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("wait for python3");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Reads the first line of the child's stdout (its "ready" line).
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    let mut r = BufReader::new(out);
    r.read_line(&mut line).expect("read from python3");
    // Put the rest back for `finish`: read it now (the script ends soon after).
    let mut rest = String::new();
    std::thread::spawn(move || {
        let _ = r.read_to_string(&mut rest);
    });
    line.trim().to_string()
}

const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client, AuthenticationError
addr = sys.argv[1]
if ":" in addr:
    host, port = addr.rsplit(":", 1)
    addr = (host, int(port))
try:
    c = Client(addr, authkey=sys.argv[2].encode())
except AuthenticationError as e:
    print("auth failed:", e)
    sys.exit(0)
big = bytes(i % 251 for i in range(1 << 20))
c.send_bytes(b"small")
c.send_bytes(big)
assert c.recv_bytes() == b"small back"
r = c.recv_bytes()
assert r == big[::-1], len(r)
c.send_bytes(b"")
assert c.recv_bytes() == b"bye"
print("ok")
"#;

/// Our side of the exchange `PY_CLIENT` expects.
fn serve_python_client(listener: &Listener) {
    let c = listener
        .accept_timeout(T)
        .expect("accept the Python client");
    assert!(c.is_socket());
    assert_eq!(c.recv_bytes_timeout(T).unwrap(), b"small");
    let got = c.recv_bytes_timeout(T).unwrap();
    assert_eq!(got, big());
    c.send_bytes(b"small back").unwrap();
    c.send_bytes(&got.iter().rev().copied().collect::<Vec<u8>>())
        .unwrap();
    assert_eq!(c.recv_bytes_timeout(T).unwrap(), b"");
    c.send_bytes(b"bye").unwrap();
}

#[test]
fn python_client_to_our_listener_unix_and_tcp() {
    with_watchdog(LIMIT, || {
        let path = sock_path("pyclient");
        for py in &pythons() {
            let l = Listener::bind(path.as_str()).unwrap().with_authkey(b"k3y");
            let child = python_in(py, PY_CLIENT, &[&path, "k3y"]);
            serve_python_client(&l);
            assert_eq!(finish(child).trim(), "ok", "{py}");
            drop(l);
            assert!(
                !std::path::Path::new(&path).exists(),
                "the socket file is removed"
            );
        }

        let l = Listener::bind(([127, 0, 0, 1], 0))
            .unwrap()
            .with_authkey(b"k3y");
        let addr = l.address().to_string();
        let child = python(PY_CLIENT, &[&addr, "k3y"]);
        serve_python_client(&l);
        assert_eq!(finish(child).trim(), "ok");
    });
}

#[test]
fn python_client_with_a_wrong_authkey_is_refused() {
    with_watchdog(LIMIT, || {
        let path = sock_path("pywrong");
        let l = Listener::bind(path.as_str())
            .unwrap()
            .with_authkey(b"right");
        for py in &pythons() {
            let child = python_in(py, PY_CLIENT, &[&path, "wrong"]);
            let e = l.accept_timeout(T).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AuthenticationFailed, "{py}: {e}");
            let out = finish(child);
            assert!(out.starts_with("auth failed"), "{py}: {out}");
        }
        // The listener goes on: the right key gets in.
        let child = python(PY_CLIENT, &[&path, "right"]);
        serve_python_client(&l);
        assert_eq!(finish(child).trim(), "ok");
    });
}

const PY_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener, AuthenticationError
addr = sys.argv[1]
if addr == "tcp":
    addr = ("127.0.0.1", 0)
with Listener(addr, authkey=sys.argv[2].encode()) as l:
    a = l.address
    print("ready", "%s:%d" % a if isinstance(a, tuple) else a, flush=True)
    try:
        c = l.accept()
    except AuthenticationError as e:
        print("auth failed:", e, flush=True)
        sys.exit(0)
    m = c.recv_bytes()
    c.send_bytes(m[::-1])
    big = c.recv_bytes()
    assert big == bytes(i % 251 for i in range(1 << 20)), len(big)
    c.send_bytes(big + b"!")
    try:
        c.recv_bytes()
    except EOFError:
        print("eof", flush=True)
"#;

fn talk_to_python_listener(addr: Address, key: &[u8]) {
    let c = Client::new(addr).authkey(key).timeout(T).connect().unwrap();
    c.send_bytes(b"abc").unwrap();
    assert_eq!(c.recv_bytes_timeout(T).unwrap(), b"cba");
    c.send_bytes(&big()).unwrap();
    let back = c.recv_bytes_timeout(T).unwrap();
    assert_eq!(back.len(), (1 << 20) + 1);
    assert_eq!(back[..1 << 20], big()[..]);
    drop(c);
}

#[test]
fn our_client_to_a_python_listener_unix_and_tcp() {
    with_watchdog(LIMIT, || {
        let path = sock_path("pylistener");
        for py in &pythons() {
            let mut child = python_in(py, PY_LISTENER, &[&path, "s3cret"]);
            let ready = first_line(&mut child);
            assert_eq!(ready, format!("ready {path}"), "{py}");
            talk_to_python_listener(path.as_str().into(), b"s3cret");
            assert!(child.wait().unwrap().success(), "{py}");
        }

        let mut child = python(PY_LISTENER, &["tcp", "s3cret"]);
        let ready = first_line(&mut child);
        let addr = ready.strip_prefix("ready ").unwrap();
        talk_to_python_listener(Address::tcp(addr).unwrap(), b"s3cret");
        let status = child.wait().unwrap();
        assert!(status.success());
    });
}

#[test]
fn our_client_with_a_wrong_authkey_is_refused_by_python() {
    with_watchdog(LIMIT, || {
        let path = sock_path("pylwrong");
        for py in &pythons() {
            let mut child = python_in(py, PY_LISTENER, &[&path, "right"]);
            // Wait for the socket to appear (the script prints "ready" after binding).
            let _ = first_line(&mut child);
            let e = Client::new(path.as_str())
                .authkey(b"wrong")
                .timeout(T)
                .connect()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AuthenticationFailed, "{py}: {e}");
            assert!(child.wait().unwrap().success(), "{py}");
        }
    });
}

fn rust_client(addr: Address) -> u64 {
    let c = Client::new(addr)
        .authkey(b"rust")
        .timeout(T)
        .connect()
        .unwrap();
    let n: u64 = c.recv().unwrap();
    c.send(&(n * 2, "doubled".to_string())).unwrap();
    // A message much larger than a socket buffer, both ways.
    let m = c.recv_bytes().unwrap();
    c.send_bytes(&m).unwrap();
    n
}

#[test]
fn rust_to_rust_over_tcp_unix_and_abstract_with_typed_messages() {
    with_watchdog(LIMIT, || {
        let abstract_name = format!("\0mproc_it_abstract_{}", std::process::id());
        for addr in [
            Address::from(([127, 0, 0, 1], 0)),
            Address::from(("localhost", 0)),
            Address::from(sock_path("rust").as_str()),
            Address::from(abstract_name.as_str()),
        ] {
            let l = Listener::bind(addr).unwrap().with_authkey(b"rust");
            let addr = l.address().clone();
            let child = Process::fork(move || rust_client(addr)).unwrap();
            let c = l.accept_timeout(T).unwrap();
            c.send(&21u64).unwrap();
            // `wait` works on socket connections too.
            assert_eq!(wait_timeout(&[&c], T).unwrap(), [0]);
            let (n, s): (u64, String) = c.recv_timeout(T).unwrap();
            assert_eq!((n, s.as_str()), (42, "doubled"));
            let m: Vec<u8> = (0..(8usize << 20)).map(|i| i as u8).collect();
            c.send_bytes(&m).unwrap();
            assert_eq!(c.recv_bytes_timeout(T).unwrap(), m);
            assert_eq!(child.join().unwrap(), 21);
            // The client closed: end of file.
            assert!(matches!(
                c.recv_bytes_timeout(T),
                Err(multiproc::RecvTimeoutError::Eof)
            ));
        }
    });
}

#[test]
fn bad_addresses_keys_and_uses_are_clear_errors() {
    with_watchdog(LIMIT, || {
        let path = sock_path("errors");
        let e = Client::new(path.as_str()).connect().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let l = Listener::bind(path.as_str()).unwrap();
        let e = Listener::bind(path.as_str()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let e = l.accept_timeout(Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        // Handles cannot travel over a socket connection, nor can the connection itself.
        let c1 = Client::new(path.as_str()).connect().unwrap();
        let c2 = l.accept_timeout(T).unwrap();
        let shm = SharedMemory::create(10).unwrap();
        let e = c1.send(&shm).unwrap_err();
        assert!(e.to_string().contains("cannot travel"), "{e}");
        let (a, _b) = pipe(true).unwrap();
        let e = a.send(&c1).unwrap_err();
        assert!(e.to_string().contains("cannot be sent"), "{e}");
        // Timed and try forms; a receive that runs out consumes nothing.
        assert!(c2.try_recv_bytes().unwrap_err().is_empty());
        assert!(c2
            .poll_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout());
        c1.send_bytes(b"after").unwrap();
        c2.poll_timeout(T).unwrap();
        assert_eq!(c2.recv_bytes_max(100).unwrap(), b"after");
        c1.send_bytes(&[1; 1000]).unwrap();
        c1.send_bytes(b"next").unwrap();
        assert!(matches!(
            c2.recv_bytes_max(100),
            Err(multiproc::RecvError::TooLong {
                len: 1000,
                max: 100
            })
        ));
        assert_eq!(c2.recv_bytes().unwrap(), b"next");
        // A client without the key at a listener that wants one: refused, not hung.
        let lk = Listener::bind(sock_path("errors_key").as_str())
            .unwrap()
            .with_authkey(b"key");
        let lk_path = sock_path("errors_key");
        let t = std::thread::spawn(move || {
            let c = Client::new(lk_path.as_str()).connect().unwrap();
            // It sees the challenge as a message; it answers nonsense.
            let m = c.recv_bytes_timeout(T).unwrap();
            assert!(m.starts_with(b"#CHALLENGE#{sha256}"));
            c.send_bytes(b"no idea").unwrap();
            c.recv_bytes_timeout(T).unwrap()
        });
        let e = lk.accept_timeout(T).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthenticationFailed, "{e}");
        assert_eq!(t.join().unwrap(), b"#FAILURE#");
    });
}

#[test]
fn hostile_and_silent_peers_cannot_hurt_the_listener() {
    with_watchdog(LIMIT, || {
        let path = sock_path("hostile");
        let l = Listener::bind(path.as_str())
            .unwrap()
            .with_authkey(b"key")
            .with_handshake_timeout(Duration::from_millis(300));
        // A silent client: accept gives up after the handshake timeout.
        let silent = UnixStream::connect(&path).unwrap();
        let e = l.accept_timeout(T).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        drop(silent);
        // A client that announces an enormous reply: an error, no allocation, no panic.
        let mut s = UnixStream::connect(&path).unwrap();
        let t = std::thread::spawn(move || {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut challenge = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut challenge).unwrap();
            let mut hostile = (-1i32).to_be_bytes().to_vec();
            hostile.extend_from_slice(&(1u64 << 62).to_be_bytes());
            s.write_all(&hostile).unwrap();
            s
        });
        let e = l.accept_timeout(T).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::TooLarge | ErrorKind::AuthenticationFailed
            ),
            "{e}"
        );
        drop(t.join().unwrap());
        // A client that sends garbage instead of a framed reply (a negative length).
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(&[0x80, 0, 0, 1]).unwrap();
        assert!(l.accept_timeout(T).is_err());
        drop(s);
        // After all that, an honest client still gets in.
        let p = path.clone();
        let t = std::thread::spawn(move || {
            let c = Client::new(p.as_str())
                .authkey(b"key")
                .timeout(T)
                .connect()
                .unwrap();
            c.send_bytes(b"honest").unwrap();
        });
        let c = l.accept_timeout(T).unwrap();
        assert_eq!(c.recv_bytes_timeout(T).unwrap(), b"honest");
        t.join().unwrap();

        // Without an authkey, a hostile length on an accepted connection is an error too,
        // and the end refuses further reads instead of misreading the stream.
        let open = Listener::bind(sock_path("hostile_open").as_str())
            .unwrap()
            .with_max_message_len(1 << 20);
        let mut s = UnixStream::connect(sock_path("hostile_open")).unwrap();
        let c = open.accept_timeout(T).unwrap();
        s.write_all(&(2_000_000i32).to_be_bytes()).unwrap();
        let e = c.recv_bytes_timeout(T).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
        assert!(c.recv_bytes_timeout(T).is_err());
    });
}

#[test]
fn listeners_and_connections_leak_no_fds_or_socket_files() {
    with_watchdog(LIMIT, || {
        in_clean_child(|| {
            let path = sock_path("leak");
            {
                let l = Listener::bind(path.as_str()).unwrap().with_authkey(b"k");
                let p = path.clone();
                let t = std::thread::spawn(move || {
                    let c = Client::new(p.as_str())
                        .authkey(b"k")
                        .timeout(T)
                        .connect()
                        .unwrap();
                    c.send_bytes(&vec![3u8; 300_000]).unwrap();
                    let c2 = c.try_clone().unwrap();
                    c2.recv_bytes_timeout(T).unwrap()
                });
                let c = l.accept_timeout(T).unwrap();
                let m = c.recv_bytes_timeout(T).unwrap();
                c.send_bytes(&m[..10]).unwrap();
                assert_eq!(t.join().unwrap(), [3u8; 10]);
                // A refused client leaves nothing behind either.
                let p = path.clone();
                let t = std::thread::spawn(move || {
                    Client::new(p.as_str())
                        .authkey(b"bad")
                        .timeout(T)
                        .connect()
                        .unwrap_err()
                });
                assert!(l.accept_timeout(T).is_err());
                assert_eq!(t.join().unwrap().kind(), ErrorKind::AuthenticationFailed);
            }
            assert!(!std::path::Path::new(&path).exists());
        })
    });
}
