//! Measurement, the Python baseline runner, and reporting.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

/// Command-line settings.
pub struct Config {
    /// Fewer samples (for a quick look; medians are noisier).
    pub quick: bool,
    /// Where to write the JSON rows.
    pub json: String,
    /// Where to write the chart of the run (SVG).
    pub svg: String,
    /// Only groups or rows whose name contains one of these.
    pub filters: Vec<String>,
}

impl Config {
    pub fn from_args() -> Config {
        let mut c = Config {
            quick: false,
            json: "target/multiproc-bench.json".into(),
            svg: "target/multiproc-bench.svg".into(),
            filters: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => c.quick = true,
                "--json" => c.json = args.next().expect("--json PATH"),
                "--svg" => c.svg = args.next().expect("--svg PATH"),
                "--bench" => {} // passed by `cargo bench`
                f => c.filters.push(f.to_string()),
            }
        }
        c
    }

    pub fn wants_group(&self, group: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| group.contains(f.as_str()))
    }

    /// `full` samples normally, fewer with `--quick`.
    pub fn samples(&self, full: usize) -> usize {
        if self.quick {
            (full / 3).max(3)
        } else {
            full
        }
    }
}

/// Whether a smaller or a larger number is better.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Higher is for throughput rows
pub enum Better {
    Lower,
    Higher,
}

/// One measured row.
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    pub ours: f64,
    /// Python's `multiprocessing` doing the same work, same run.
    pub baseline: Option<f64>,
    /// A floor or a peer, same run: (what, median).
    pub reference: Option<(String, f64)>,
}

impl Row {
    /// How many times better than `other` we are (> 1: better).
    pub fn advantage(&self, other: f64) -> f64 {
        match self.better {
            Better::Lower => other / self.ours,
            Better::Higher => self.ours / other,
        }
    }
}

/// `n` atomics in anonymous shared memory (inherited by forked children), zeroed, never
/// unmapped.
pub fn shared_atomics(n: usize) -> &'static [std::sync::atomic::AtomicU64] {
    let len = (n * 8).next_multiple_of(4096);
    // SAFETY: a fresh anonymous shared mapping of `len >= 8 * n` bytes; zeroed memory is
    // valid atomics; leaked on purpose so the slice lives for the program.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        std::slice::from_raw_parts(p as *const std::sync::atomic::AtomicU64, n)
    }
}

/// Median of `samples` runs of `f`, each returning a measured value.
pub fn median_of(samples: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..samples).map(|_| f()).collect();
    median(&mut v)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median time per call of `f` in microseconds: `samples` samples of `iters` calls each.
pub fn time_us(samples: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median_of(samples, || {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / iters as f64
    })
}

/// Runs `bench/python/baseline.py` for the named cases; returns name -> median, in the
/// case's own unit. Missing Python or a failing case gives no entry (and a note on stderr).
pub fn python(cases: &[&str], quick: bool) -> BTreeMap<String, f64> {
    python_in("python3", cases, quick)
}

/// [`python`] with the interpreter `interp` (e.g. a virtual environment's).
pub fn python_in(
    interp: impl AsRef<std::ffi::OsStr>,
    cases: &[&str],
    quick: bool,
) -> BTreeMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/baseline.py");
    let mut cmd = Command::new(interp);
    cmd.arg(script);
    if quick {
        cmd.arg("--quick");
    }
    cmd.args(cases);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("python3 not runnable ({e}): no baseline");
            return BTreeMap::new();
        }
    };
    if !out.status.success() {
        eprintln!(
            "python baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "name<TAB>median"
        if let Some((k, v)) = line.split_once('\t') {
            if let Ok(v) = v.trim().parse::<f64>() {
                m.insert(k.to_string(), v);
            }
        }
    }
    m
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Prints the table and writes the JSON file.
pub fn report(cfg: &Config, rows: &[Row]) {
    println!(
        "{:<44} {:>8} {:>12} {:>12} {:>9}  reference (ours vs it)",
        "measurement", "unit", "multiproc", "python", "vs python"
    );
    for r in rows {
        let base = r.baseline.map(fmt_num).unwrap_or_else(|| "-".into());
        let ratio = r
            .baseline
            .map(|b| r.advantage(b))
            .filter(|v| v.is_finite())
            .map(|v| format!("{v:.1}x"))
            .unwrap_or_else(|| "-".into());
        let reference = r
            .reference
            .as_ref()
            .map(|(n, v)| match r.advantage(*v) {
                a if a.is_finite() => format!("{n} = {} ({a:.2}x)", fmt_num(*v)),
                _ => format!("{n} = {}", fmt_num(*v)),
            })
            .unwrap_or_default();
        println!(
            "{:<44} {:>8} {:>12} {:>12} {:>9}  {}",
            r.name,
            r.unit,
            if r.ours.is_finite() {
                fmt_num(r.ours)
            } else {
                "-".into()
            },
            base,
            ratio,
            reference
        );
    }
    let mut json = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        // A value not measured (NaN: a row that says why in its name) is null.
        let opt = |v: Option<f64>| {
            v.filter(|v| v.is_finite())
                .map(|v| format!("{v}"))
                .unwrap_or_else(|| "null".into())
        };
        json.push_str(&format!(
            "  {{\"name\": {:?}, \"unit\": {:?}, \"better\": {:?}, \"multiproc\": {}, \"python\": {}, \"ratio_vs_python\": {}, \"reference\": {}, \"reference_value\": {}, \"ratio_vs_reference\": {}}}{}\n",
            r.name,
            r.unit,
            if r.better == Better::Lower { "lower" } else { "higher" },
            opt(Some(r.ours)),
            opt(r.baseline),
            opt(r.baseline.map(|b| r.advantage(b))),
            r.reference.as_ref().map(|(n, _)| format!("{n:?}")).unwrap_or_else(|| "null".into()),
            opt(r.reference.as_ref().map(|(_, v)| *v)),
            opt(r.reference.as_ref().map(|(_, v)| r.advantage(*v))),
            if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push_str("]\n");
    if let Some(dir) = std::path::Path::new(&cfg.json).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&cfg.json, json) {
        Ok(()) => eprintln!("rows written to {}", cfg.json),
        Err(e) => eprintln!("cannot write {}: {e}", cfg.json),
    }
    let title = run_title();
    println!("{title}");
    match std::fs::write(&cfg.svg, crate::chart::svg(rows, &title)) {
        Ok(()) => eprintln!("chart written to {}", cfg.svg),
        Err(e) => eprintln!("cannot write {}: {e}", cfg.svg),
    }
}

/// "2026-12-02, commit abc1234, 2 CPUs (model), Linux 6.x": what a reader needs to place a run.
fn run_title() -> String {
    let out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let date = out("date", &["-u", "+%Y-%m-%d"]);
    let commit = out("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if out("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with local changes)"
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = out("uname", &["-r"]);
    format!("{date}, commit {commit}{dirty}, {cpus} CPUs ({model}), Linux {kernel}")
}
