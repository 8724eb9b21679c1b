//! Compile tests (trybuild), with the crate's edition (2021): what must compile — and runs —
//! (`ui/pass`), and what must not, with the compiler's message (`ui/fail`, `.stderr` beside
//! each; `TRYBUILD=overwrite cargo test --test compile` rewrites them after a toolchain
//! change). Also every `rust` block of the README and of `docs/*.md`, compiled and run as
//! written.
//!
//! A test binary of its own, not a module of `it`: trybuild runs cargo, and a build running
//! beside `it`'s cross-process tests would slow them towards their watchdogs.
//!
//! The same properties under edition 2024 are checked by the `edition2024` doctests of
//! `process::Process`.

use std::path::{Path, PathBuf};

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    for readme in readme_programs() {
        t.pass(readme);
    }
    t.compile_fail("tests/ui/fail/*.rs");
}

/// Writes each `rust` block of the README (and of the pages in `docs/`) as a program in the
/// target directory: `use` lines first, the rest in a `main` that returns a `Result` (the
/// blocks use `?`), unless the block has its own `main`.
fn readme_programs() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    docs.retain(|p| p.extension().is_some_and(|x| x == "md"));
    docs.sort();
    pages.extend(docs);
    let blocks: Vec<String> = pages
        .iter()
        .flat_map(|p| rust_blocks(&std::fs::read_to_string(p).expect("a markdown page")))
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme");
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        let program = if block.contains("fn main(") {
            block
        } else {
            let (uses, body): (Vec<&str>, Vec<&str>) =
                block.lines().partition(|l| l.starts_with("use "));
            format!(
                "{}\nfn main() -> Result<(), Box<dyn std::error::Error>> {{\n{}\n    Ok(())\n}}\n",
                uses.join("\n"),
                body.join("\n")
            )
        };
        let path = dir.join(format!("readme_block_{i}.rs"));
        std::fs::write(&path, program).unwrap();
        out.push(path);
    }
    assert!(
        out.len() >= 3,
        "the README's rust blocks were not found ({} found)",
        out.len()
    );
    out
}

fn rust_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match &mut cur {
            None if line.trim_start() == "```rust" => cur = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    blocks
}
