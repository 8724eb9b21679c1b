//! `SharedMemory`: anonymous and named blocks shared with forked and spawned children, with
//! Python's `multiprocessing.shared_memory` (an unrelated process, started with `Command`),
//! the lifecycle of names (a crashed creator's stale name), and hostile input on open.
//!
//! Every test uses names of its own (`mproc_it_<test>_<pid>`) and checks that none is left in
//! `/dev/shm` afterwards.

use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::pipe::Fd;
use multiproc::{pipe, ErrorKind, Process, SharedMemory, StartMethod};

use crate::hostile::{send_forged, Forge};
use crate::util::{in_clean_child, start_with, with_watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// A name for this test and process.
fn name(tag: &str) -> String {
    format!("mproc_it_{tag}_{}", std::process::id())
}

/// Names in `/dev/shm` that start with `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Runs `f` and checks that it left no name starting with `prefix` in `/dev/shm`.
fn no_leftovers(prefix: String, f: impl FnOnce() + Send + 'static) {
    with_watchdog(LIMIT, f);
    assert_eq!(
        leftovers(&prefix),
        Vec::<String>::new(),
        "names left in /dev/shm"
    );
}

fn python(script: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fill_child(shm: SharedMemory) -> u64 {
    let v = shm.view::<u64>();
    for i in 0..v.len() {
        v.atomics()[i].fetch_add(i as u64, Ordering::Relaxed);
    }
    shm.write_at(0, b"child was here").unwrap();
    v.len() as u64
}

#[test]
fn anonymous_and_named_blocks_reach_fork_and_spawn_children() {
    no_leftovers(name("children"), || {
        let anon = SharedMemory::create(4096).unwrap();
        let named = SharedMemory::create_named(&name("children"), 8192).unwrap();
        for shm in [&anon, &named] {
            for m in [StartMethod::Fork, StartMethod::Spawn] {
                let p = start_with(m, Process::builder(), fill_child, shm.clone());
                assert_eq!(p.join().unwrap(), shm.size() as u64 / 8);
            }
            let mut head = [0u8; 14];
            shm.read_at(0, &mut head).unwrap();
            assert_eq!(&head, b"child was here");
            let v = shm.view::<u64>();
            assert_eq!(v.get(5), Some(10), "two children added 5 each");
        }
        // A spawned child sees the name too (it travels with the fd) and can unlink it.
        fn child_unlinks(shm: SharedMemory) -> Option<String> {
            shm.unlink().unwrap();
            shm.name().map(str::to_string)
        }
        let p = start_with(
            StartMethod::Spawn,
            Process::builder(),
            child_unlinks,
            named.clone(),
        );
        assert_eq!(p.join().unwrap().as_deref(), named.name());
        assert_eq!(
            SharedMemory::open(&name("children")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // The memory lives on while mapped.
        named.write_at(100, b"still mapped").unwrap();
    });
}

#[test]
fn a_block_sent_over_a_connection_keeps_its_contents() {
    // In a clean child: no other test's fds to confuse the leak check.
    with_watchdog(LIMIT, || {
        in_clean_child(|| {
            let (a, b) = pipe(true).unwrap();
            let shm = SharedMemory::create_named(&name("sent"), 100).unwrap();
            shm.write_at(10, b"abc").unwrap();
            a.send(&shm).unwrap();
            let got: SharedMemory = b.recv().unwrap();
            assert_eq!(got.size(), 100);
            assert_eq!(got.name(), shm.name());
            let mut buf = [0u8; 3];
            got.read_at(10, &mut buf).unwrap();
            assert_eq!(&buf, b"abc");
            got.write_at(0, b"z").unwrap();
            assert_eq!(shm.to_vec()[0], b'z');
            got.unlink().unwrap();
            assert!(leftovers(&name("sent")).is_empty());
        })
    });
}

#[test]
fn python_opens_ours_and_we_open_pythons() {
    no_leftovers(name("py"), || {
        // Ours, opened by Python by name: it reads our f64s and writes bytes back.
        let ours = SharedMemory::create_named(&name("py_ours"), 4096).unwrap();
        let v = ours.view::<f64>();
        for i in 0..v.len() {
            v.set(i, i as f64 * 0.5);
        }
        let out = python(
            r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
# Python 3.11 registers blocks it merely opens and unlinks them at exit: not ours.
resource_tracker.unregister(shm._name, "shared_memory")
d = shm.buf.cast('d')
print(shm.size, d[3], sum(d))
shm.buf[4000:4005] = b"hello"
del d
shm.close()
"#,
            &[ours.name().unwrap()],
        );
        let n = 4096 / 8;
        let sum: f64 = (0..n).map(|i| i as f64 * 0.5).sum();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            format!("4096 1.5 {sum:?}")
        );
        let mut hello = [0u8; 5];
        ours.read_at(4000, &mut hello).unwrap();
        assert_eq!(&hello, b"hello");
        ours.unlink().unwrap();

        // Python's, created with a Python auto-name and left for us to open and unlink.
        let out = python(
            r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(create=True, size=1000)
resource_tracker.unregister(shm._name, "shared_memory")
shm.buf[:6] = b"python"
shm.buf.cast('q')[10] = -12345
print(shm.name)
shm.close()
"#,
            &[],
        );
        let pname = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(pname.starts_with("psm_"), "{pname}");
        let theirs = SharedMemory::open(&pname).unwrap();
        assert_eq!(theirs.size(), 1000);
        assert_eq!(&theirs.to_vec()[..6], b"python");
        assert_eq!(theirs.view::<i64>().get(10), Some(-12345));
        theirs.unlink().unwrap();
        assert!(leftovers(&pname).is_empty());

        // Our made-up names look like Python's, and Python opens them.
        let auto = SharedMemory::create_unique(64).unwrap();
        let an = auto.name().unwrap().to_string();
        assert!(an.starts_with("psm_") && an.len() == 12, "{an}");
        auto.write_at(0, b"ok").unwrap();
        let out = python(
            r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")
print(bytes(shm.buf[:2]).decode())
shm.close()
"#,
            &[&an],
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "ok");
        auto.unlink().unwrap();
    });
}

#[test]
fn a_crashed_creators_name_is_refused_then_cleaned_by_a_later_run() {
    no_leftovers(name("crash"), || {
        let n = name("crash");
        // The "first run": creates the name and is killed before it can unlink.
        let first = {
            let n = n.clone();
            Process::fork(move || {
                let shm = SharedMemory::create_named(&n, 4096).unwrap();
                shm.write_at(0, b"left behind").unwrap();
                unsafe { libc::raise(libc::SIGKILL) };
                unreachable!()
            })
            .unwrap()
        };
        assert!(first.join().is_err());
        // The "later run": creating the same name is refused, not silently reused...
        let e = SharedMemory::create_named(&n, 4096).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("unlink_name"), "{e}");
        // ... the stale block is still readable, then cleaned, and the name is free again.
        let stale = SharedMemory::open(&n).unwrap();
        assert_eq!(&stale.to_vec()[..11], b"left behind");
        SharedMemory::unlink_name(&n).unwrap();
        let fresh = SharedMemory::create_named(&n, 4096).unwrap();
        assert_eq!(fresh.to_vec()[0], 0);
        fresh.unlink().unwrap();
        assert_eq!(
            SharedMemory::unlink_name(&n).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn hostile_files_in_dev_shm_are_refused() {
    no_leftovers(name("hostile"), || {
        let base = format!("/dev/shm/{}", name("hostile"));
        // A symlink to a file elsewhere (a classic way to make a victim write there).
        let target = format!("/tmp/{}_target", name("hostile"));
        std::fs::write(&target, b"secret").unwrap();
        std::os::unix::fs::symlink(&target, format!("{base}_link")).unwrap();
        let e = SharedMemory::open(&format!("{}_link", name("hostile"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
        // Creating over it is refused too (O_EXCL), and the target is untouched.
        let e = SharedMemory::create_named(&format!("{}_link", name("hostile")), 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        std::fs::remove_file(format!("{base}_link")).unwrap();
        std::fs::remove_file(&target).unwrap();
        // A directory, a FIFO (must not block), an empty file.
        std::fs::create_dir(format!("{base}_dir")).unwrap();
        let e = SharedMemory::open(&format!("{}_dir", name("hostile"))).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::InvalidHandle | ErrorKind::Os),
            "{e}"
        );
        std::fs::remove_dir(format!("{base}_dir")).unwrap();
        let fifo = std::ffi::CString::new(format!("{base}_fifo")).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = SharedMemory::open(&format!("{}_fifo", name("hostile"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
        std::fs::remove_file(format!("{base}_fifo")).unwrap();
        std::fs::write(format!("{base}_empty"), b"").unwrap();
        let e = SharedMemory::open(&format!("{}_empty", name("hostile"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
        assert!(e.to_string().contains("size"), "{e}");
        std::fs::remove_file(format!("{base}_empty")).unwrap();
        // Not there at all; a path instead of a name.
        let e = SharedMemory::open(&name("hostile_absent")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let e = SharedMemory::open("../etc/passwd").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    });
}

#[test]
fn hostile_descriptions_received_are_errors() {
    with_watchdog(LIMIT, || {
        // Descriptions a well-behaved sender cannot make, sent as `SharedMemory`s.
        let (a, b) = multiproc::pipe_with::<Forge>(true).unwrap();
        let as_if = SharedMemory::create(64).unwrap();
        // Not a file at all.
        let (r, _w) = std::io::pipe().unwrap();
        send_forged(&a, &as_if, (Fd(r.into()), 4096u64, None::<String>));
        let e = b.recv::<SharedMemory>().unwrap_err();
        assert!(e.to_string().contains("regular file"), "{e}");
        // An unsealed anonymous memfd (its sender could shrink it under us: SIGBUS).
        let fd = rustix::fs::memfd_create(c"unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        send_forged(&a, &as_if, (Fd(fd), 4096u64, None::<String>));
        let e = b.recv::<SharedMemory>().unwrap_err();
        assert!(e.to_string().contains("sealed"), "{e}");
        // A size larger than the file, a zero size, a bad name.
        let good = SharedMemory::create(4096).unwrap();
        let dup = || Fd(good.as_fd().try_clone_to_owned().unwrap());
        for (size, name) in [
            (1u64 << 20, None),
            (0u64, None),
            (4096u64, Some("../x".to_string())),
        ] {
            send_forged(&a, &as_if, (dup(), size, name));
            let e = b.recv::<SharedMemory>().unwrap_err();
            assert!(
                e.to_string().contains("invalid handle"),
                "refused by the handle: {e}"
            );
        }
        // The connection still works, and the honest description does.
        a.send(&good).unwrap();
        assert_eq!(b.recv::<SharedMemory>().unwrap().size(), 4096);
    });
}

#[test]
fn bad_arguments_are_errors() {
    let shm = SharedMemory::create(64).unwrap();
    assert_eq!(shm.name(), None);
    assert_eq!(
        shm.write_at(60, b"12345").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        shm.view_at::<u32>(2, 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        shm.view_at::<u64>(0, usize::MAX).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        SharedMemory::create(1 << 41).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let v = shm.view::<u16>();
    assert_eq!(v.len(), 32);
    assert_eq!(v.get(32), None);
    let r = std::panic::catch_unwind(|| v.set(32, 1));
    assert!(r.is_err(), "set past the end panics");
}

#[test]
fn shareable_lists_are_read_and_written_by_python_both_ways() {
    use multiproc::shm::{Item, ShareableList};
    no_leftovers(name("sl"), || {
        // Ours, read and changed by Python.
        let ours = ShareableList::create_named(
            &name("sl_ours"),
            &[
                Item::Int(-7),
                Item::Float(2.5),
                Item::Bool(true),
                Item::Str("héllo".into()),
                Item::Bytes(b"\x01\x02".to_vec()),
                Item::None,
            ],
        )
        .unwrap();
        let out = python(
            r#"
import sys
from multiprocessing import shared_memory, resource_tracker
sl = shared_memory.ShareableList(name=sys.argv[1])
resource_tracker.unregister(sl.shm._name, "shared_memory")
print(repr(list(sl)))
sl[0] = 40000000000
sl[3] = "bye"
sl[5] = 1.25
sl.shm.close()
"#,
            &[ours.shm().name().unwrap()],
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            "[-7, 2.5, True, 'héllo', b'\\x01\\x02', None]"
        );
        assert_eq!(ours.get(0).unwrap(), Item::Int(40_000_000_000));
        assert_eq!(ours.get(3).unwrap(), Item::Str("bye".into()));
        assert_eq!(ours.get(5).unwrap(), Item::Float(1.25));
        ours.shm().unlink().unwrap();

        // Python's, read and changed by us, then read by Python again.
        let out = python(
            r#"
from multiprocessing import shared_memory, resource_tracker
sl = shared_memory.ShareableList([1, "twelve chars", b"raw", False, None, 0.5])
resource_tracker.unregister(sl.shm._name, "shared_memory")
print(sl.shm.name)
sl.shm.close()
"#,
            &[],
        );
        let pname = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let theirs = ShareableList::open(&pname).unwrap();
        assert_eq!(
            theirs.to_vec().unwrap(),
            [
                Item::Int(1),
                Item::Str("twelve chars".into()),
                Item::Bytes(b"raw".to_vec()),
                Item::Bool(false),
                Item::None,
                Item::Float(0.5)
            ]
        );
        theirs.set(1, Item::Str("sixteen chars!!".into())).unwrap();
        theirs.set(4, Item::Int(9)).unwrap();
        let e = theirs.set(2, Item::Bytes(vec![1; 9])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let out = python(
            r#"
import sys
from multiprocessing import shared_memory, resource_tracker
sl = shared_memory.ShareableList(name=sys.argv[1])
resource_tracker.unregister(sl.shm._name, "shared_memory")
print(repr(list(sl)))
sl.shm.close()
"#,
            &[&pname],
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            "[1, 'sixteen chars!!', b'raw', False, 9, 0.5]"
        );
        theirs.shm().unlink().unwrap();
    });
}

#[test]
fn hostile_shareable_lists_are_errors() {
    use multiproc::shm::ShareableList;
    no_leftovers(name("slbad"), || {
        let n = name("slbad");
        let shm = SharedMemory::create_named(&n, 64).unwrap();
        // A huge count, a negative count, offsets that go backwards, an unknown format.
        for (at, word) in [(0usize, i64::MAX), (0, -1)] {
            shm.write_at(at, &word.to_ne_bytes()).unwrap();
            let e = ShareableList::open(&n).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
        }
        shm.write_at(0, &1i64.to_ne_bytes()).unwrap();
        shm.write_at(8, &0i64.to_ne_bytes()).unwrap();
        shm.write_at(16, &(-8i64).to_ne_bytes()).unwrap();
        assert!(ShareableList::open(&n).is_err());
        shm.write_at(16, &8i64.to_ne_bytes()).unwrap();
        // 1 item: data at 24..32, format at 32..40, code at 40.
        shm.write_at(32, b"zz\0\0\0\0\0\0").unwrap();
        let list = ShareableList::open(&n).unwrap();
        let e = list.get(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
        shm.write_at(32, b"999s\0\0\0\0").unwrap();
        assert!(list.get(0).is_err(), "a str format larger than its slot");
        assert_eq!(list.get(1).unwrap_err().kind(), ErrorKind::InvalidArgument);
        shm.unlink().unwrap();
    });
}

fn sl_child(list: multiproc::shm::ShareableList) -> usize {
    list.set(0, multiproc::shm::Item::Str("from a child".into()))
        .unwrap();
    list.len()
}

#[test]
fn a_shareable_list_reaches_fork_and_spawn_children() {
    use multiproc::shm::{Item, ShareableList};
    no_leftovers(name("slkids"), || {
        let list =
            ShareableList::create_named(&name("slkids"), &[Item::Bytes(vec![0; 20]), Item::None])
                .unwrap();
        for m in [StartMethod::Fork, StartMethod::Spawn] {
            list.set(0, Item::None).unwrap();
            let p = start_with(m, Process::builder(), sl_child, list.clone());
            assert_eq!(p.join().unwrap(), 2);
            assert_eq!(list.get(0).unwrap(), Item::Str("from a child".into()));
        }
        list.shm().unlink().unwrap();
    });
}
