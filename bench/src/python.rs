//! The Python package (crates/multiproc-py + python/multiproc), measured from Python: our
//! context (`multiproc.get_context("fork")`) beside CPython's `multiprocessing` and
//! `faster-fifo` (or `threading.Lock` for the lock row), all in one Python run per row with
//! the sides alternating sample by sample (`baseline.py`'s `py_*` cases).
//!
//! Runs in the virtual environment `target/pyenv` that `scripts/test-python.sh` creates: the
//! extension is first built there in release mode (`maturin develop --release`; the test
//! script installs a debug build). A missing environment, a failed build or a missing
//! `faster-fifo` (`target/pyenv/bin/pip install faster-fifo`) does not fail the benchmark:
//! the rows say so in their names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{python_in, Better, Config, Row};

/// (case, row name, unit, which is better, the reference's side and label).
const ROWS: &[(&str, &str, &str, Better, &str, &str)] = &[
    (
        "py_queue_1to1",
        "Python: Queue 1->1 small objects",
        "msg/s",
        Better::Higher,
        "faster_fifo",
        "faster-fifo",
    ),
    (
        "py_queue_2to2",
        "Python: Queue 2->2 small objects",
        "msg/s",
        Better::Higher,
        "faster_fifo",
        "faster-fifo",
    ),
    (
        "py_pipe_round_trip",
        "Python: Pipe round trip, small object",
        "us",
        Better::Lower,
        "faster_fifo",
        "faster-fifo, 2 queues",
    ),
    (
        "py_lock",
        "Python: Lock acquire+release",
        "ns",
        Better::Lower,
        "threading",
        "threading.Lock",
    ),
    (
        "py_joinable",
        "Python: JoinableQueue put+task_done",
        "msg/s",
        Better::Higher,
        "",
        "",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is in the workspace")
        .to_path_buf()
}

/// Builds the extension into the environment in release mode; why not, when it cannot.
fn build(venv: &Path) -> Result<(), String> {
    let maturin = venv.join("bin/maturin");
    if !maturin.exists() {
        return Err("no maturin in target/pyenv".into());
    }
    let out = Command::new(&maturin)
        .args(["develop", "--release", "--quiet"])
        .env("VIRTUAL_ENV", venv)
        .current_dir(workspace())
        .output()
        .map_err(|e| format!("maturin not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        eprintln!(
            "maturin develop --release failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Err("maturin develop --release failed".into())
    }
}

pub fn rows(cfg: &Config) -> Vec<Row> {
    let venv = workspace().join("target/pyenv");
    let interp = venv.join("bin/python");
    let setup = if interp.exists() {
        build(&venv)
    } else {
        Err("no target/pyenv: run scripts/test-python.sh".into())
    };
    let got: BTreeMap<String, f64> = match &setup {
        Ok(()) => {
            let cases: Vec<&str> = ROWS.iter().map(|r| r.0).collect();
            python_in(&interp, &cases, cfg.quick)
        }
        Err(why) => {
            eprintln!("python rows not measured: {why}");
            BTreeMap::new()
        }
    };
    ROWS.iter()
        .map(|&(case, name, unit, better, ref_side, ref_label)| {
            let side = |s: &str| got.get(&format!("{case}.{s}")).copied();
            let ours = side("multiproc");
            let reference = side(ref_side).map(|v| (ref_label.to_string(), v));
            let mut name = name.to_string();
            match (&setup, ours) {
                (Err(why), _) => name.push_str(&format!(" (not measured: {why})")),
                (Ok(()), None) => name.push_str(" (not measured: see the errors above)"),
                (Ok(()), Some(_)) if reference.is_none() && ref_side == "faster_fifo" => {
                    name.push_str(" (faster-fifo not installed)")
                }
                _ => {}
            }
            Row {
                name,
                unit,
                better,
                ours: ours.unwrap_or(f64::NAN),
                baseline: side("python"),
                reference,
            }
        })
        .collect()
}
