//! Runs an example's `main` as a program and records what it printed, so that a check can
//! judge what a reader of the tutorial would see.
//!
//! The program runs in a spawned child (the binary executes again and calls the example's
//! `main` there), in a fresh directory of its own (a program that writes the seed's `db`
//! file writes it there), with stdout going to a fresh file opened for appending: the
//! program and every process it starts print into it, one `write` per line, so lines never
//! tear. A spawned child also starts clean — no test harness capturing `println!` — and,
//! like any multiproc program, waits for its children (and terminates its daemons) when
//! `main` returns. Once it has ended, its output is echoed here, line by line, indented.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use multiproc::pipe::Fd;
use multiproc::Process;

/// How long a program may run before the check gives up on it (and kills it).
const LIMIT: Duration = Duration::from_secs(45);

/// What a program printed, and where it ran.
pub struct Observed {
    /// Its stdout, line by line, in the order the lines were written.
    pub lines: Vec<String>,
    /// Its own directory (removed when this is dropped): `cwd/`, where it ran, and `stdout`.
    dir: TempDir,
}

impl Observed {
    /// The path of a file the program wrote, by the name it used.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.0.join("cwd").join(name)
    }

    /// The lines that start with `prefix`.
    pub fn starting_with<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> {
        self.lines.iter().filter(move |l| l.starts_with(prefix))
    }

    /// How many lines end with `suffix`.
    pub fn count_ending_with(&self, suffix: &str) -> usize {
        self.lines.iter().filter(|l| l.ends_with(suffix)).count()
    }

    /// Where the first line equal to `line` is, or an error naming it.
    pub fn position(&self, line: &str) -> Result<usize, String> {
        self.lines
            .iter()
            .position(|l| l == line)
            .ok_or_else(|| format!("the program never printed {line:?}"))
    }
}

/// Runs scenario `id`'s program; `Err` when it could not run, failed or did not end.
pub fn observe(id: &str) -> Result<Observed, String> {
    let dir = TempDir::new("program")?;
    let cwd = dir.0.join("cwd");
    std::fs::create_dir(&cwd).map_err(|e| format!("create {}: {e}", cwd.display()))?;
    let path = dir.0.join("stdout");
    let out = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let p = Process::spawn(program, (id.to_string(), cwd, Fd(out.into())))
        .map_err(|e| format!("cannot start the program: {e}"))?;
    let ended = p.join_timeout(LIMIT);
    if ended.as_ref().is_err_and(|e| e.is_timeout()) {
        let _ = p.kill();
        let _ = p.join();
    }
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for l in &lines {
        println!("    {l}");
    }
    match ended {
        Ok(Ok(())) => Ok(Observed { lines, dir }),
        Ok(Err(why)) => Err(format!("the program failed: {why}")),
        Err(e) if e.is_timeout() => Err(format!("the program did not end within {LIMIT:?}")),
        Err(e) => Err(format!("the program's process: {e}")),
    }
}

/// The spawned child: into `dir`, stdout to `out`, then the scenario's `main`.
fn program((id, dir, Fd(out)): (String, PathBuf, Fd)) -> Result<(), String> {
    std::env::set_current_dir(&dir).map_err(|e| format!("cd {}: {e}", dir.display()))?;
    rustix::stdio::dup2_stdout(&out).map_err(|e| format!("dup2: {e}"))?;
    drop(out);
    let sc = super::all()
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("no scenario {id}"))?;
    (sc.main)().map_err(|e| e.to_string())
}

/// A fresh directory under the system temp dir; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("multiproc-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
