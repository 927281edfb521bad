//! The workspace's architecture rules, checked on its sources (ADR 009):
//!
//! 1. domain crates do not depend on HTTP (axum, tower, tower-http, hyper, http);
//! 2. within every crate, sibling modules do not import each other in a cycle;
//! 3. no hand-written source file exceeds 800 lines (data tables are listed below).
//!
//! Each rule is also tested on a made-up violation, so a checker that stopped seeing
//! violations would fail here too.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Crates that hold domain logic: no HTTP stack below them.
const DOMAIN_CRATES: &[&str] = &[
    "core",
    "catalog",
    "tenant-data",
    "identity",
    "records",
    "control",
    "audit",
    "metering",
    "costs",
    "cpu",
];
/// The HTTP stack a domain crate must not name as a dependency.
const HTTP_CRATES: &[&str] = &["axum", "tower", "tower-http", "hyper", "http"];
/// Longest hand-written source file.
const MAX_LINES: usize = 800;
/// Files exempt from the length rule: data tables, not logic.
const LONG_FILE_EXCEPTIONS: &[&str] = &[];
/// Breaches tolerated while they are being paid down (this list only shrinks; a test fails
/// when an entry no longer breaks a rule). Empty since issue 13.
const KNOWN_DEBT: &[&str] = &[];

fn is_known_debt(what: &str) -> bool {
    KNOWN_DEBT
        .iter()
        .any(|d| what == *d || what.starts_with(&format!("{d}:")))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    v.sort();
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "snapshots") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

// ---- rule 1: dependencies -------------------------------------------------------------

/// Normal and build dependencies (not dev) a manifest names, with its package name.
fn manifest_deps(manifest: &str) -> BTreeSet<String> {
    let v: toml::Value = toml::from_str(manifest).unwrap();
    let mut out = BTreeSet::new();
    let mut take = |t: Option<&toml::Value>| {
        if let Some(t) = t.and_then(|t| t.as_table()) {
            for (k, v) in t {
                let name = v
                    .get("package")
                    .and_then(|p| p.as_str())
                    .unwrap_or(k.as_str());
                out.insert(name.to_owned());
            }
        }
    };
    take(v.get("dependencies"));
    take(v.get("build-dependencies"));
    if let Some(targets) = v.get("target").and_then(|t| t.as_table()) {
        for t in targets.values() {
            take(t.get("dependencies"));
            take(t.get("build-dependencies"));
        }
    }
    out
}

fn http_deps_of(manifest: &str) -> Vec<String> {
    manifest_deps(manifest)
        .into_iter()
        .filter(|d| HTTP_CRATES.contains(&d.as_str()))
        .collect()
}

/// Every breach of rule 1: `{crate} depends on {dep}` or `{crate}: missing`.
fn dependency_violations() -> Vec<String> {
    let mut out = Vec::new();
    for name in DOMAIN_CRATES {
        let path = workspace_root()
            .join("crates")
            .join(name)
            .join("Cargo.toml");
        let Ok(manifest) = std::fs::read_to_string(&path) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        for d in http_deps_of(&manifest) {
            out.push(format!("{name} depends on {d}"));
        }
    }
    out
}

fn owed(violations: Vec<String>) -> Vec<String> {
    violations
        .into_iter()
        .filter(|v| !is_known_debt(v))
        .collect()
}

#[test]
fn domain_crates_do_not_depend_on_http() {
    let bad = owed(dependency_violations());
    assert!(bad.is_empty(), "domain crates depend on HTTP: {bad:#?}");
}

#[test]
fn the_dependency_rule_sees_a_violation() {
    let m = "[package]\nname = \"x\"\n[dependencies]\nserde = \"1\"\nweb = { package = \"axum\", version = \"0.8\" }\n[target.'cfg(unix)'.dependencies]\nhttp = \"1\"\n[dev-dependencies]\ntower = \"0.5\"\n";
    assert_eq!(http_deps_of(m), vec!["axum", "http"]);
}

// ---- rule 2: module cycles ------------------------------------------------------------

/// A module path inside a crate (`["service", "provisioning"]`); the root is `[]`.
type ModPath = Vec<String>;
/// A source file: its module, its text, and whether it is a `mod.rs`/`lib.rs`/`main.rs`.
type SourceFile = (ModPath, String, bool);

/// The module a source file defines, relative to its crate root directory (`src`).
fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let Some(last) = parts.pop() else {
        return Vec::new();
    };
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The source without comments and without the trailing `#[cfg(test)]` module.
fn code_of(src: &str) -> String {
    let cut = src.find("#[cfg(test)]\nmod ").unwrap_or(src.len());
    src[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names through `crate::` or `super::` (with `use` groups expanded
/// one level: `crate::{a, b::c}` names `a` and `b::c`), made absolute.
fn referenced_paths(code: &str, here: &ModPath) -> Vec<ModPath> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let base: Option<(ModPath, usize)> = if rest.starts_with("crate::") {
            let prev = if i == 0 { b' ' } else { bytes[i - 1] };
            (!(prev.is_ascii_alphanumeric() || prev == b'_' || prev == b'$'))
                .then(|| (Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let prev = if i == 0 { b' ' } else { bytes[i - 1] };
            if prev.is_ascii_alphanumeric() || prev == b'_' || prev == b':' {
                None
            } else {
                // `super` of a file module `a/b.rs` or `a/b/mod.rs` is `a`.
                let mut p = here.clone();
                let mut len = 0;
                let mut r = rest;
                while r.starts_with("super::") {
                    p.pop();
                    len += "super::".len();
                    r = &r["super::".len()..];
                }
                Some((p, len))
            }
        } else {
            None
        };
        let Some((base, skip)) = base else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let after = &rest[skip..];
        if let Some(group) = after.strip_prefix('{') {
            // Top-level items of the group.
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        item.push(c);
                    }
                    '}' if depth == 0 => break,
                    '}' => {
                        depth -= 1;
                        item.push(c);
                    }
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(c),
                }
            }
            items.push(item);
            for it in items {
                let segs = ident(&it);
                if !segs.is_empty() {
                    let mut p = base.clone();
                    p.extend(segs);
                    out.push(p);
                }
            }
        } else {
            let mut p = base.clone();
            p.extend(ident(after));
            out.push(p);
        }
        i += skip;
    }
    out
}

/// Edges between sibling modules: a file in `a::b` naming `a::c::x` is an edge `a::b → a::c`.
fn sibling_edges(files: &[(ModPath, String, bool)]) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (here, src, _) in files {
        for mut target in referenced_paths(&code_of(src), here) {
            // Keep the longest prefix that is a module (the rest names items).
            while !target.is_empty() && !modules.contains(&target) {
                target.pop();
            }
            let k = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if k < here.len() && k < target.len() {
                edges
                    .entry(here[..=k].to_vec())
                    .or_default()
                    .insert(target[..=k].to_vec());
            }
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on: BTreeSet<ModPath>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl T<'_> {
        fn visit(&mut self, v: &ModPath) {
            self.index.insert(v.clone(), self.next);
            self.low.insert(v.clone(), self.next);
            self.next += 1;
            self.stack.push(v.clone());
            self.on.insert(v.clone());
            let succ: Vec<ModPath> = self
                .edges
                .get(v)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for w in &succ {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on.remove(&w);
                    let done = &w == v;
                    comp.push(w.join("::"));
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<ModPath> = edges.keys().cloned().collect();
    for v in &nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

/// The source files of each crate target root (`src`, and `src/bin`, `tests/it`, `benches`
/// each as their own tree), as (module, text, is a mod.rs/lib.rs/main.rs).
fn source_trees(crate_dir: &Path) -> Vec<(String, Vec<SourceFile>)> {
    let mut trees = Vec::new();
    for root in ["src", "tests/it"] {
        let dir = crate_dir.join(root);
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        if files.is_empty() {
            continue;
        }
        let mut tree = Vec::new();
        for f in files {
            let rel = f.strip_prefix(&dir).unwrap();
            let name = rel.file_name().unwrap().to_string_lossy();
            let is_mod = matches!(name.as_ref(), "mod.rs" | "lib.rs" | "main.rs");
            tree.push((module_of(rel), std::fs::read_to_string(&f).unwrap(), is_mod));
        }
        trees.push((
            format!(
                "{}/{root}",
                crate_dir.file_name().unwrap().to_string_lossy()
            ),
            tree,
        ));
    }
    trees
}

/// Every breach of rule 2: `{crate}/{tree}: a ⇄ b ⇄ …`.
fn cycle_violations() -> Vec<String> {
    let mut out = Vec::new();
    for dir in crate_dirs() {
        for (name, tree) in source_trees(&dir) {
            for c in cycles(&sibling_edges(&tree)) {
                out.push(format!("{name}: {}", c.join(" ⇄ ")));
            }
        }
    }
    out
}

#[test]
fn no_module_imports_a_sibling_in_a_cycle() {
    let bad = owed(cycle_violations());
    assert!(bad.is_empty(), "module cycles: {bad:#?}");
}

#[test]
fn the_cycle_rule_sees_a_violation() {
    let file = |m: &[&str], src: &str, is_mod: bool| {
        (
            m.iter().map(|s| s.to_string()).collect::<ModPath>(),
            src.to_owned(),
            is_mod,
        )
    };
    // a → b through a `use` group, b → c by a path, c → a through `super::`: one cycle.
    // d → a is an edge but no cycle; the test module's imports and comments do not count.
    let tree = vec![
        file(&[], "pub mod a; pub mod b; pub mod c; pub mod d;", true),
        file(
            &["a"],
            "use crate::{\n    b::{Thing, Other},\n    Config,\n};\n// crate::d::x\n",
            false,
        ),
        file(&["b"], "fn f() { crate::c::g::h(); }\n", false),
        file(&["c"], "pub mod g;\n", true),
        file(&["c", "g"], "use super::super::a::X;\n", false),
        file(
            &["d"],
            "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::d;\n    use super::super::b;\n}\n",
            false,
        ),
    ];
    assert_eq!(cycles(&sibling_edges(&tree)), vec![vec!["a", "b", "c"]]);
    // Without the back edge there is none.
    let mut acyclic = tree.clone();
    acyclic[4].1 = "use super::Y;\n".into();
    assert!(cycles(&sibling_edges(&acyclic)).is_empty());
}

// ---- rule 3: file length --------------------------------------------------------------

/// Every breach of rule 3: `{path}: {n} lines`.
fn length_violations() -> Vec<String> {
    let root = workspace_root();
    let mut out = Vec::new();
    for dir in crate_dirs() {
        let mut files = Vec::new();
        for sub in ["src", "tests", "benches"] {
            rust_files(&dir.join(sub), &mut files);
        }
        for f in files {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            if n > MAX_LINES && !LONG_FILE_EXCEPTIONS.contains(&rel.as_str()) {
                out.push(format!("{rel}: {n} lines"));
            }
        }
    }
    out
}

#[test]
fn no_source_file_exceeds_the_length_limit() {
    let bad = owed(length_violations());
    assert!(
        bad.is_empty(),
        "files over {MAX_LINES} lines (split them by concept): {bad:#?}"
    );
}

/// The debt list only shrinks: an entry that no longer breaks a rule must go.
#[test]
fn known_debt_is_still_owed() {
    let all: Vec<String> = dependency_violations()
        .into_iter()
        .chain(cycle_violations())
        .chain(length_violations())
        .collect();
    let paid: Vec<&&str> = KNOWN_DEBT
        .iter()
        .filter(|d| {
            !all.iter()
                .any(|v| v == **d || v.starts_with(&format!("{d}:")))
        })
        .collect();
    assert!(
        paid.is_empty(),
        "paid off; remove from KNOWN_DEBT: {paid:#?}"
    );
}
