//! The workspace's architecture rules, checked on the source itself so a change that breaks
//! one fails `make test` (docs/architecture.md explains them):
//!
//! - no import cycle between the file modules of any crate: modules form layers, and a
//!   module's parent (its `mod.rs` or `lib.rs`) is its table of contents, so an edge from a
//!   module to its own descendant is structure, not an import;
//! - no source file over 800 lines, not counting its trailing `#[cfg(test)]` module.
//!
//! The walker reads `use` trees and inline `crate::`/`super::` paths; it is a text walker, not
//! a compiler, so its own rules are tested below on made-up crates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// The longest a source file may be (test module aside).
const MAX_LINES: usize = 800;

/// A file module's path inside its crate (`[]` is the crate root).
type ModPath = Vec<String>;

/// The code of a file before its trailing test module, with comments removed.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in before_tests(text) {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The lines of a file before its trailing test module (`#[cfg(test)]` then `mod`, at the
/// top level).
fn before_tests(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].starts_with("#[cfg(test)]")
                && lines[i + 1..]
                    .iter()
                    .find(|l| !l.starts_with("#["))
                    .is_some_and(|l| l.starts_with("mod "))
        })
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

/// Lines a file counts against [`MAX_LINES`].
fn counted_lines(text: &str) -> usize {
    before_tests(text).len()
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_tree(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path: Vec<String> = tree
            .split("::")
            .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
            .filter(|s| !s.is_empty() && s != "*")
            .collect();
        return vec![path];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    // Split the group on top-level commas.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut out = Vec::new();
    for part in parts.into_iter().filter(|p| !p.trim().is_empty()) {
        for tail in expand_tree(part) {
            let mut path = prefix.clone();
            if tail.first().map(String::as_str) != Some("self") {
                path.extend(tail);
            }
            out.push(path);
        }
    }
    out
}

/// Every path the code names from `crate::`, `super::` or `self::`.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let uses = Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([\w:{}*,\s]+);").unwrap();
    let inline = Regex::new(r"\b(?:crate|super|self)(?:::(?:\w+))+").unwrap();
    let mut out: Vec<Vec<String>> = uses
        .captures_iter(code)
        .flat_map(|c| expand_tree(&c[1]))
        .collect();
    out.extend(
        inline
            .find_iter(code)
            .map(|m| m.as_str().split("::").map(str::to_owned).collect()),
    );
    out
}

/// Resolves a referenced path, from module `from`, to the file module it lands in.
fn resolve(from: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base: ModPath = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" => from[..from.len().saturating_sub(1)].to_vec(),
        "self" => from.clone(),
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    (0..=base.len())
        .rev()
        .map(|n| base[..n].to_vec())
        .find(|candidate| modules.contains(candidate))
}

/// The import graph of one crate: module -> modules it imports (descendants left out).
fn graph(sources: &BTreeMap<ModPath, String>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules: BTreeSet<ModPath> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(module, text)| {
            let targets = referenced_paths(&code_of(text))
                .iter()
                .filter_map(|path| resolve(module, path, &modules))
                .filter(|target| !target.starts_with(module))
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The strongly connected components with more than one module (each one is a cycle).
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a ModPath) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file modules of a crate's library and binary (`src/bin/*` are crates of their own).
fn crate_sources(src: &Path) -> BTreeMap<ModPath, String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter(|p| !p.strip_prefix(src).unwrap().starts_with("bin"))
        .map(|path| {
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: ModPath = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|l| l == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] {
                module.clear();
            }
            (module, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// The workspace members, from the root Cargo.toml.
fn members() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let list = Regex::new(r"(?s)members\s*=\s*\[([^\]]*)\]").unwrap();
    let quoted = Regex::new(r#""([^"]+)""#).unwrap();
    let members = list.captures(&manifest).expect("workspace members");
    quoted
        .captures_iter(&members[1])
        .map(|c| (c[1].to_owned(), root.join(&c[1])))
        .collect()
}

fn name(module: &ModPath) -> String {
    if module.is_empty() {
        "<crate root>".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn no_crate_has_an_import_cycle() {
    let mut problems = Vec::new();
    let members = members();
    assert!(members.len() >= 5, "workspace members: {members:?}");
    for (member, dir) in members {
        let sources = crate_sources(&dir.join("src"));
        assert!(!sources.is_empty(), "{member} has no sources");
        let graph = graph(&sources);
        for cycle in cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| cycle.contains(to))
                        .map(move |to| format!("{} -> {}", name(from), name(to)))
                })
                .collect();
            problems.push(format!(
                "{member}: {} modules import each other: {}",
                cycle.len(),
                edges.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (_, dir) in members() {
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        rust_files(&dir.join("benches"), &mut files);
        for path in files {
            let is_test = path.file_stem().is_some_and(|s| s == "tests")
                || path.components().any(|c| c.as_os_str() == "tests");
            if is_test {
                continue;
            }
            let n = counted_lines(&std::fs::read_to_string(&path).unwrap());
            if n > MAX_LINES {
                let shown = path.strip_prefix(&root).unwrap_or(&path);
                long.push(format!("{}: {n} lines", shown.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them along their seams):\n{}",
        long.join("\n")
    );
}

fn made_up(files: &[(&str, &str)]) -> BTreeMap<ModPath, String> {
    files
        .iter()
        .map(|(module, text)| {
            let path = if module.is_empty() {
                Vec::new()
            } else {
                module.split("::").map(str::to_owned).collect()
            };
            (path, (*text).to_owned())
        })
        .collect()
}

#[test]
fn the_walker_finds_cycles_through_use_groups_and_inline_paths() {
    let sources = made_up(&[
        ("", "pub mod a;\npub mod b;\npub mod c;"),
        ("a", "use crate::{b::Thing, c};\n"),
        ("b", "pub struct Thing;\nfn f() { super::a::g(); }\n"),
        ("c", "// use crate::a; (a comment is not an import)\n"),
    ]);
    let g = graph(&sources);
    let found = cycles(&g);
    assert_eq!(
        found,
        vec![vec![vec!["a".to_owned()], vec!["b".to_owned()]]]
    );
    assert!(g[&vec!["a".to_owned()]].contains(&vec!["c".to_owned()]));
    assert!(g[&vec!["c".to_owned()]].is_empty(), "{g:?}");
}

#[test]
fn a_parent_naming_its_children_and_test_modules_are_not_cycles() {
    let sources = made_up(&[
        ("", "pub mod p;"),
        ("p", "pub mod kid;\npub use kid::Kid;\npub struct Parent;"),
        (
            "p::kid",
            "use super::Parent;\npub struct Kid;\n\n#[cfg(test)]\nmod tests {\n    use crate::p::*;\n}\n",
        ),
    ]);
    let g = graph(&sources);
    assert!(cycles(&g).is_empty(), "{g:?}");
    assert_eq!(
        g[&vec!["p".to_owned(), "kid".to_owned()]],
        BTreeSet::from([vec!["p".to_owned()]])
    );
}

#[test]
fn the_test_module_does_not_count_against_the_line_limit() {
    let text = "fn a() {}\nfn b() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
    assert_eq!(counted_lines(text), 3);
    assert_eq!(counted_lines("#[cfg(test)]\nuse x;\nfn a() {}\n"), 3);
}
