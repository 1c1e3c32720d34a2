//! The house rule that dependencies point one way, file by file: no two source files of a crate
//! import each other, directly or around a loop (`use crate::…`, `use super::…`, resolved to the
//! module that defines or re-exports the item). Crate-level direction is enforced by Cargo itself;
//! the trainer's direct dependencies are checked here too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src` by module path (`a::b`; the crate root is "").
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), path);
            }
        }
    }
    out
}

/// `use` trees of a file, flattened to paths (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let prefix = before[line_start..].trim();
        let tail = &rest[at + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        if prefix.is_empty() || prefix.starts_with("pub") {
            let tree: String = tail[..end].chars().filter(|c| !c.is_whitespace()).collect();
            expand("", &tree, &mut out);
        }
        rest = &tail[end.min(tail.len())..];
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => out.push(format!("{prefix}{tree}")),
        Some(open) => {
            let head = format!("{prefix}{}", &tree[..open]);
            let inner = &tree[open + 1..tree.len().saturating_sub(1)];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&head, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&head, &inner[start..], out);
            }
        }
    }
}

/// Which file each `use` of each file points at.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    // Items re-exported by a module: (module, name) → the module it comes from.
    let mut reexports = BTreeMap::new();
    for (m, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        for u in uses(&text).into_iter().filter(|u| text.contains("pub use") && !u.starts_with("crate::") && !u.starts_with("super::")) {
            let parts: Vec<&str> = u.split("::").collect();
            if let Some((name, path)) = parts.split_last() {
                let from: Vec<&str> = if m.is_empty() { path.to_vec() } else { m.split("::").chain(path.iter().copied()).collect() };
                reexports.insert((m.clone(), name.split(" as ").next().unwrap_or(name).to_string()), from.join("::"));
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        let here: Vec<&str> = if m.is_empty() { Vec::new() } else { m.split("::").collect() };
        let is_dir_module = path.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
        for u in uses(&text) {
            let mut parts: Vec<&str> = u.split("::").collect();
            let mut base: Vec<&str> = match parts.first().copied() {
                Some("crate") => Vec::new(),
                Some("super") => {
                    // `super` of a file module is its parent folder's module; of a mod.rs, the grandparent.
                    let mut b = here.clone();
                    b.pop();
                    let _ = is_dir_module;
                    b
                }
                Some("self") => here.clone(),
                _ => continue,
            };
            parts.remove(0);
            while parts.first() == Some(&"super") {
                base.pop();
                parts.remove(0);
            }
            let full: Vec<&str> = base.iter().chain(parts.iter()).copied().collect();
            let mut target = None;
            for n in (0..=full.len()).rev() {
                let cand = full[..n].join("::");
                if mods.contains_key(&cand) {
                    target = Some((cand, full.get(n).map(|s| s.split(" as ").next().unwrap_or(s).to_string())));
                    break;
                }
            }
            let Some((mut to, item)) = target else { continue };
            if let Some(item) = item {
                if let Some(from) = reexports.get(&(to.clone(), item)) {
                    let mut f: Vec<&str> = from.split("::").collect();
                    while !f.is_empty() && !mods.contains_key(&f.join("::")) {
                        f.pop();
                    }
                    to = f.join("::");
                }
            }
            if &to != m && !to.is_empty() && !m.starts_with(&format!("{to}::")) {
                edges.entry(m.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, edges: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for next in edges.get(n).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(next.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_two_files_import_each_other_in_any_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut srcs = vec![root.join("src"), root.join("kernels/src")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        srcs.push(entry.path().join("src"));
    }
    let mut found = Vec::new();
    for src in srcs.iter().filter(|s| s.is_dir()) {
        if let Some(c) = cycle(&edges(src)) {
            found.push(format!("{}: {}", src.display(), c.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_finds_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use a::A;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use crate::A;\npub struct B;\n").unwrap();
    assert_eq!(cycle(&edges(src)), Some(vec!["a".to_string(), "b".to_string(), "a".to_string()]));
    std::fs::write(src.join("b.rs"), "pub struct B;\n").unwrap();
    assert_eq!(cycle(&edges(src)), None);
}

#[test]
fn the_trainer_depends_on_the_model_and_the_data_only() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/anchorage-train/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default().split("\n[").next().unwrap_or_default();
    let mut ours: Vec<&str> = deps.lines().filter_map(|l| l.trim().split(['.', ' ', '=']).next()).filter(|n| n.starts_with("anchorage-")).collect();
    ours.sort_unstable();
    assert_eq!(ours, vec!["anchorage-data", "anchorage-model", "anchorage-tensors"], "{deps}");
}
