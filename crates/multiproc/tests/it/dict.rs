//! `sync::Dict` and `sync::List`: one dictionary (list) used by many processes (forked and
//! spawned), atomic read-modify-write, insertion and removal in the middle, SIGKILL
//! mid-update, limits and wrong types.

use std::time::Duration;

use multiproc::sync::{Dict, List};
use multiproc::{ErrorKind, Event, Process};

use crate::util::{sigkill, with_watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn add_in_child(d: Dict<String, u64>) -> u64 {
    for _ in 0..100 {
        d.update(&"spawned".to_string(), |n| Some(n.unwrap_or(0) + 1))
            .unwrap();
    }
    d.get(&"spawned".to_string()).unwrap().unwrap()
}

#[test]
fn every_process_updates_one_dict_atomically() {
    with_watchdog(LIMIT, || {
        let d: Dict<String, u64> = Dict::new().unwrap();
        let kids: Vec<_> = (0..4)
            .map(|_| {
                let d = d.clone();
                Process::fork(move || {
                    for i in 0..500 {
                        let k = format!("k{}", i % 10);
                        d.update(&k, |n| Some(n.unwrap_or(0) + 1)).unwrap();
                    }
                })
                .unwrap()
            })
            .collect();
        let spawned = Process::spawn(add_in_child, d.clone()).unwrap();
        for k in kids {
            k.join().unwrap();
        }
        assert_eq!(spawned.join().unwrap(), 100);
        for i in 0..10 {
            assert_eq!(d.get(&format!("k{i}")).unwrap(), Some(200));
        }
        assert_eq!(d.len(), 11);
        let mut items = d.items().unwrap();
        items.sort();
        assert_eq!(items.len(), 11);
        assert_eq!(d.remove(&"k3".to_string()).unwrap(), Some(200));
        assert_eq!(d.get(&"k3".to_string()).unwrap(), None);
        assert!(!d.contains_key(&"k3".to_string()).unwrap());
        assert_eq!(d.insert(&"k3".to_string(), &1).unwrap(), None);
        assert_eq!(d.insert(&"k3".to_string(), &2).unwrap(), Some(1));
        assert_eq!(d.len(), 11);
    });
}

#[test]
fn a_writer_killed_mid_update_leaves_no_torn_entry_and_no_held_lock() {
    with_watchdog(LIMIT, || {
        // Large values, so that a kill often lands inside the copy of one.
        let d: Dict<u32, Vec<u64>> = Dict::with_capacity(16, 8200).unwrap();
        for round in 0..30u64 {
            kill_writer_mid_update(round, d.clone(), move |d, n| {
                let v = round * 1_000_000 + n;
                d.update(&((n % 8) as u32), |_| Some(vec![v; 1000]))
                    .unwrap();
            });
            // Every entry is one whole value; the count agrees; the lock is free again.
            let items = d.items().unwrap();
            assert_eq!(items.len(), d.len());
            assert_eq!(items.len(), 8);
            assert_whole(items.iter().map(|(_, v)| v), round);
            d.update(&0, |v| v).unwrap();
        }
    });
}

#[test]
fn limits_and_wrong_types_are_errors() {
    with_watchdog(LIMIT, || {
        let d: Dict<u32, String> = Dict::with_capacity(2, 16).unwrap();
        assert_eq!(d.capacity(), 2);
        d.insert(&1, &"a".to_string()).unwrap();
        // Too long an entry: refused, nothing changed.
        let e = d.insert(&1, &"x".repeat(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(d.get(&1).unwrap().as_deref(), Some("a"));
        d.insert(&2, &"b".to_string()).unwrap();
        let e = d.insert(&3, &"c".to_string()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("full"), "{e}");
        // Room again after a removal (its bucket is reused).
        d.remove(&1).unwrap();
        d.insert(&3, &"c".to_string()).unwrap();
        assert_eq!(d.len(), 2);
        let e = Dict::<u8, u8>::with_capacity(0, 8).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        // A handle received as another type is refused (by the message's type tag; the
        // segment's own tag is checked too: the unit tests in sync/dict.rs).
        let (rx, tx) = multiproc::pipe(false).unwrap();
        tx.send(&d).unwrap();
        let e = rx.recv::<Dict<u32, u64>>().unwrap_err();
        assert!(e.to_string().contains("Dict<u32, u64>"), "{e}");
        tx.send(&d).unwrap();
        let same: Dict<u32, String> = rx.recv().unwrap();
        assert_eq!(same.get(&3).unwrap().as_deref(), Some("c"));
    });
}

// `sync::List`, the same way.

#[test]
fn every_process_pushes_and_updates_one_list() {
    with_watchdog(LIMIT, || {
        let l: List<u64> = List::with_capacity(1000, 16).unwrap();
        l.push(&0).unwrap();
        let kids: Vec<_> = (0..4)
            .map(|p| {
                let l = l.clone();
                Process::fork(move || {
                    for i in 0..100 {
                        l.push(&(p * 1000 + i)).unwrap();
                        l.update(0, |n| n + 1).unwrap();
                    }
                })
                .unwrap()
            })
            .collect();
        for k in kids {
            k.join().unwrap();
        }
        assert_eq!(l.len(), 401);
        assert_eq!(l.get(0).unwrap(), Some(400));
        let mut rest = l.to_vec().unwrap().split_off(1);
        rest.sort();
        let want: Vec<u64> = (0..4)
            .flat_map(|p| (0..100).map(move |i| p * 1000 + i))
            .collect();
        assert_eq!(rest, want);
        let last = l.get(400).unwrap().unwrap();
        assert_eq!(l.pop().unwrap(), Some(last));
        assert_eq!(l.len(), 400);
        assert_eq!(l.get(400).unwrap(), None);
        l.truncate(1).unwrap();
        assert_eq!(l.to_vec().unwrap(), vec![400]);
        l.clear().unwrap();
        assert_eq!(l.pop().unwrap(), None);
    });
}

#[test]
fn a_list_writer_killed_mid_set_leaves_no_torn_item() {
    with_watchdog(LIMIT, || {
        let l: List<Vec<u64>> = List::with_capacity(64, 8200).unwrap();
        for _ in 0..8 {
            l.push(&vec![0; 1000]).unwrap();
        }
        for round in 0..30u64 {
            kill_writer_mid_update(round, l.clone(), move |l, n| {
                let v = round * 1_000_000 + n;
                l.set((n % 8) as usize, &vec![v; 1000]).unwrap();
                if n % 3 == 0 && l.len() < 60 {
                    l.push(&vec![v; 1000]).unwrap();
                }
                if n % 3 == 1 && l.len() > 8 {
                    l.pop().unwrap();
                }
            });
            let items = l.to_vec().unwrap();
            assert!(items.len() >= 8 && items.len() == l.len());
            assert_whole(items.iter(), round);
            l.update(0, |v| v).unwrap();
        }
    });
}

#[test]
fn a_list_writer_killed_mid_insert_or_remove_loses_and_doubles_nothing() {
    with_watchdog(LIMIT, || {
        // Base items 1..=16; the writer inserts a marker and removes it again, then removes
        // a base item and puts it back, over and over. Each call is whole or not done at
        // all, so after the kill the list is the base, the base with one marker, or the
        // base without one item: never a doubled, lost or torn one.
        let l: List<Vec<u64>> = List::with_capacity(32, 8200).unwrap();
        for k in 1..=16u64 {
            l.push(&vec![k; 1000]).unwrap();
        }
        for round in 0..30u64 {
            kill_writer_mid_update(round, l.clone(), move |l, n| {
                let marker = 1_000_000 + round * 1_000_000 + n;
                let i = (n % 17) as usize;
                l.insert(i, &vec![marker; 1000]).unwrap();
                assert_eq!(l.remove(i).unwrap()[0], marker);
                let j = (n * 7 % 16) as usize;
                let v = l.remove(j).unwrap();
                l.insert(j, &v).unwrap();
            });
            let items = l.to_vec().unwrap();
            assert_eq!(items.len(), l.len());
            assert_whole(items.iter(), round);
            let markers = items.iter().filter(|v| v[0] > 16).count();
            let base: Vec<u64> = items.iter().map(|v| v[0]).filter(|&x| x <= 16).collect();
            let missing = 16 - base.len();
            assert!(
                markers + missing <= 1,
                "round {round}: {markers} markers, {missing} missing: {base:?}"
            );
            assert!(
                base.windows(2).all(|w| w[0] < w[1]),
                "round {round}: {base:?}"
            );
            // Back to the base for the next round.
            if let Some(at) = items.iter().position(|v| v[0] > 16) {
                l.remove(at).unwrap();
            }
            if missing == 1 {
                let k = (1..=16).find(|k| !base.contains(k)).unwrap();
                l.insert(k as usize - 1, &vec![k; 1000]).unwrap();
            }
            let now: Vec<u64> = l.to_vec().unwrap().iter().map(|v| v[0]).collect();
            assert_eq!(now, (1..=16).collect::<Vec<u64>>());
        }
    });
}

fn insert_in_child(l: List<String>) -> Vec<String> {
    l.insert(1, &"spawned".to_string()).unwrap();
    l.to_vec().unwrap()
}

#[test]
fn insert_and_remove_in_the_middle_are_seen_by_every_process() {
    with_watchdog(LIMIT, || {
        let l: List<String> = List::with_capacity(4, 16).unwrap();
        for s in ["a", "b"] {
            l.push(&s.to_string()).unwrap();
        }
        let got = Process::spawn(insert_in_child, l.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, vec!["a", "spawned", "b"]);
        assert_eq!(l.to_vec().unwrap(), got);
        l.insert(3, &"end".to_string()).unwrap();
        // Full: refused, nothing changed; out of range: refused.
        let e = l.insert(0, &"x".to_string()).unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
        assert_eq!(l.remove(1).unwrap(), "spawned");
        let e = l.insert(4, &"x".to_string()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let e = l.remove(3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let e = l
            .insert(0, &"far too long for 16 bytes".to_string())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(l.to_vec().unwrap(), vec!["a", "b", "end"]);
        assert_eq!(l.remove(0).unwrap(), "a");
        assert_eq!(l.remove(1).unwrap(), "end");
        assert_eq!(l.remove(0).unwrap(), "b");
        assert!(l.is_empty());
        l.insert(0, &"again".to_string()).unwrap();
        assert_eq!(l.to_vec().unwrap(), vec!["again"]);
    });
}

#[test]
fn list_limits_are_errors() {
    with_watchdog(LIMIT, || {
        let l: List<String> = List::with_capacity(1, 8).unwrap();
        let e = l.push(&"far too long for 8 bytes".to_string()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        l.push(&"a".to_string()).unwrap();
        let e = l.push(&"b".to_string()).unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
        let e = l.set(1, &"b".to_string()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let e = l.update(0, |_| "x".repeat(50)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(l.to_vec().unwrap(), vec!["a"]);
    });
}

/// Forks a writer that runs `step(&handle, n)` for n = 0, 1, ... until it is killed, and
/// kills it once it has done 20 steps (`kill_mid_update`).
fn kill_writer_mid_update<H: Send + 'static>(
    round: u64,
    handle: H,
    step: impl Fn(&H, u64) + Send + 'static,
) {
    let started = Event::new().unwrap();
    let child = {
        let started = started.clone();
        Process::fork(move || {
            for n in 0u64.. {
                step(&handle, n);
                if n == 20 {
                    started.set();
                }
            }
        })
        .unwrap()
    };
    kill_mid_update(child, &started, round);
}

/// Waits until the writer has started, lets it run a little longer (a different moment in
/// each round), then SIGKILLs it, most often in the middle of an update.
fn kill_mid_update(child: Process<()>, started: &Event, round: u64) {
    started.wait_timeout(Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_micros(round * 37 % 500));
    sigkill(child.pid());
    assert!(child.join().is_err());
}

/// Every value is one whole write: 1000 copies of one number.
fn assert_whole<'a>(values: impl Iterator<Item = &'a Vec<u64>>, round: u64) {
    for v in values {
        assert_eq!(v.len(), 1000);
        assert!(v.iter().all(|&x| x == v[0]), "torn value in round {round}");
    }
}
