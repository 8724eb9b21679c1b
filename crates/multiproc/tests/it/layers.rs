//! The layer rule of the crate (written at the top of `lib.rs`), checked on the source: no
//! module names a module of a higher layer, nor a sibling of its own layer, by a `crate::` or
//! `super::` path in code (comments and docs are free to point anywhere).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module path prefixes, the room each belongs to, and the room's layer, lowest first. The
/// longest matching prefix decides. Modules of one room may name each other; a room names
/// only rooms of lower layers.
const LAYERS: &[(&str, &str, u32)] = &[
    ("sys", "sys", 0),
    ("kinds", "kinds", 0),
    ("error", "error", 0),
    ("fork", "fork", 1),
    ("handle", "handle", 2),
    ("codec", "codec", 3),
    ("shm", "shm", 4),
    ("sync", "sync", 5),
    // The ring engine: one engine under two facades (the queue's and the pipe's).
    ("ring", "ring", 6),
    // Waiting on many objects: below the facades that implement `Waitable`.
    ("wait", "wait", 7),
    ("queue", "queue", 8),
    ("pipe", "pipe", 8),
    ("process", "process", 8),
    ("pool", "pool", 9),
    // The traits one kind of primitive shares with its remote form, implemented here for the
    // local types.
    ("api", "api", 9),
    ("remote", "remote", 10),
    ("fuzz", "fuzz", 11),
];

/// Paths that break the rule today, each with the reason it is still here. The test fails if
/// one of them is gone (so the list only shrinks) or a new one appears.
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<(&'static str, u32)> {
    LAYERS
        .iter()
        .filter(|(p, _, _)| module == *p || module.starts_with(&format!("{p}::")))
        .max_by_key(|(p, _, _)| p.len())
        .map(|&(_, room, l)| (room, l))
}

/// `src/ring/put.rs` -> `ring::put`; `src/queue/mod.rs` -> `queue`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments (line comments, doc comments, block comments) and
/// without the insides of string literals.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x' or '\n'); lifetimes have no closing quote.
            let end = b[i + 1..].iter().position(|&c| c == b'\'').unwrap() + i + 2;
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The module paths a piece of code names after `crate::`, with `{}` groups expanded one
/// level (`crate::{a, b::c}` names `a` and `b::c`).
fn crate_paths(code: &str) -> Vec<String> {
    paths_after(code, "crate::")
}

/// The same for `super::` paths of the module `module`, as paths from the crate root (give it
/// code without its `#[cfg(test)]` modules: there `super` is the file's own module).
fn super_paths(module: &str, code: &str) -> Vec<String> {
    let parent: Vec<&str> = module.split("::").collect();
    paths_after(code, "super::")
        .into_iter()
        .filter_map(|p| {
            let mut up = 1;
            let mut rest = p.as_str();
            while let Some(r) = rest.strip_prefix("super::") {
                up += 1;
                rest = r;
            }
            let keep = parent.len().checked_sub(up)?;
            let mut full: Vec<&str> = parent[..keep].to_vec();
            full.extend(rest.split("::").filter(|s| !s.is_empty()));
            Some(full.join("::"))
        })
        .collect()
}

fn paths_after(code: &str, lead: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices(lead) {
        if at > 0 {
            let before = code.as_bytes()[at - 1];
            if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                continue; // `$crate::`, `mycrate::`, the second `super::` of a chain
            }
        }
        let rest = &code[at + lead.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let p = ident(item.trim());
                if !p.is_empty() {
                    out.push(p);
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// What a root re-export (`crate::Process`) stands for: read from `lib.rs`'s `pub use`s.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut map = BTreeMap::new();
    for stmt in code.split(';') {
        let Some(body) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (module, names) = match body.split_once("::{") {
            Some((m, names)) => (m.trim(), names.trim_end_matches('}')),
            None => match body.rsplit_once("::") {
                Some((m, name)) => (m.trim(), name),
                None => continue,
            },
        };
        for n in names.split(',') {
            let n = n.trim();
            if !n.is_empty() {
                map.insert(n.to_string(), module.to_string());
            }
        }
    }
    map
}

#[test]
fn no_module_names_a_higher_or_sibling_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let reexports = root_reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        // Unit tests may use any layer: files of test modules (`queue/tests.rs`) as well as
        // `#[cfg(test)]` modules inside a file (cut off below).
        // `src/bin/` holds programs built on the library (they name `multiproc::`, not
        // `crate::`): not modules of it.
        if module == "lib"
            || module.split("::").any(|part| part == "tests")
            || module.starts_with("bin::")
        {
            continue;
        }
        let Some((from_prefix, from_layer)) = layer_of(&module) else {
            unmapped.push(module);
            continue;
        };
        // Unit tests (at the end of a file, under `#[cfg(test)]`) may use any layer.
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let code = code.split("#[cfg(test)]").next().unwrap_or("").to_string();
        for path in crate_paths(&code)
            .into_iter()
            .chain(super_paths(&module, &code))
        {
            let first = path.split("::").next().unwrap_or("");
            let target = match reexports.get(first) {
                Some(m) => m.clone(),
                None => path.clone(),
            };
            let Some((to_prefix, to_layer)) = layer_of(&target) else {
                continue; // a root item such as `crate::Result` defined in lib.rs itself
            };
            let up = to_layer > from_layer;
            let sideways = to_layer == from_layer && to_prefix != from_prefix;
            if up || sideways {
                found
                    .entry((from_prefix.to_string(), to_prefix.to_string()))
                    .or_default()
                    .push(format!("{module}: crate::{path}"));
            }
        }
    }
    assert!(unmapped.is_empty(), "modules with no layer: {unmapped:?}");
    let mut unexpected = Vec::new();
    for ((from, to), places) in &found {
        if !KNOWN.iter().any(|(f, t, _)| f == from && t == to) {
            unexpected.push(format!("{from} -> {to}: {places:?}"));
        }
    }
    assert!(
        unexpected.is_empty(),
        "layer rule broken (see the top of lib.rs):\n{}",
        unexpected.join("\n")
    );
    for (from, to, why) in KNOWN {
        assert!(
            found.contains_key(&(from.to_string(), to.to_string())),
            "{from} -> {to} is fixed ({why}): remove it from KNOWN"
        );
    }
}

#[test]
fn the_checker_sees_through_comments_strings_and_groups() {
    let code = code_only(
        "use crate::{a, b::c};\n// crate::d\n/* crate::e */ let s = \"crate::f\"; crate::g::h();",
    );
    assert_eq!(crate_paths(&code), ["a", "b::c", "g::h"]);
    let code = code_only("use super::{x, y::Z}; use super::super::w;");
    assert_eq!(
        super_paths("a::b::c", &code),
        ["a::b::x", "a::b::y::Z", "a::w"]
    );
    let map = root_reexports("pub use pipe::{wait, Connection};\npub use x::Y;");
    assert_eq!(map.get("Connection").map(String::as_str), Some("pipe"));
    assert_eq!(map.get("Y").map(String::as_str), Some("x"));
}
