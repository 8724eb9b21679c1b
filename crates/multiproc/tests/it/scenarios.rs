//! Each scenario of the tour, as a test: the scenario's example program runs (in a spawned
//! child, its output recorded) and its check judges the outcome.

#[path = "../../examples/scenarios/mod.rs"]
#[allow(clippy::module_inception)]
mod scenarios;

/// Runs scenario `id` under the watchdog and fails the test if it reports a failure.
fn check(id: &str) {
    let sc = scenarios::all()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no scenario {id}"));
    let r = crate::util::with_watchdog(std::time::Duration::from_secs(60), sc.run);
    if let Err(why) = r {
        panic!("{} {}: {}", sc.id, sc.title, why);
    }
}

#[test]
fn scenario_registry_ids_are_unique() {
    let all = scenarios::all();
    let mut ids: Vec<_> = all.iter().map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
    let _ = check;
}

// One test per scenario (append yours): #[test] fn s01() { check("S1") }
#[test]
fn s01() {
    check("S1")
}
#[test]
fn s02() {
    check("S2")
}
#[test]
fn s03() {
    check("S3")
}
#[test]
fn s04() {
    check("S4")
}

#[test]
fn s05() {
    check("S5")
}
#[test]
fn s06() {
    check("S6")
}
#[test]
fn s07() {
    check("S7")
}
#[test]
fn s08() {
    check("S8")
}
#[test]
fn s09() {
    check("S9")
}
#[test]
fn s10() {
    check("S10")
}
#[test]
fn s11() {
    check("S11")
}
#[test]
fn s11b() {
    check("S11b")
}
#[test]
fn s12() {
    check("S12")
}
#[test]
fn s13() {
    check("S13")
}
#[test]
fn s14() {
    check("S14")
}

#[test]
fn p1() {
    check("P1")
}
