//! The library's modules form no import circle: a test that reads the
//! sources (`use crate::`/`super::`/`self::` lines and inline paths) and
//! fails naming the circle it finds.
//!
//! Two graphs are checked:
//!
//! - **top-level modules** (`lock`, `holder`, `sys`, `lockfile`, ...): an
//!   edge `a -> b` when a file under `a` names something under `b`;
//! - **files**: an edge between two files when one names the other,
//!   except a child naming its own ancestor (`super::Protocol` from
//!   `lockfile/link.rs` names the type its parent module declares; that is
//!   the module tree, not a dependency of the parent on the child).
//!
//! Test code (`tests.rs` files and the trailing `#[cfg(test)] mod tests`)
//! is left out: tests may use anything.
//!
//! Run it alone with `cargo test -p holdfast --lib layering`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name()
                .is_some_and(|n| n != "tests.rs" && n != "layering.rs")
        {
            let text = std::fs::read_to_string(&p).unwrap();
            out.push((p.strip_prefix(root).unwrap().to_owned(), text));
        }
    }
}

/// The code of a file without comments and without its trailing test module.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path starting with `crate`, `super` or `self` in `code`, with the
/// brace groups of `use` statements expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|k| rest.starts_with(k));
        if starts && (i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':') {
            let end = tree_end(rest);
            expand(&rest[..end], &mut Vec::new(), &mut found);
            i += end.max(1);
            while !code.is_char_boundary(i) {
                i += 1;
            }
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

/// The end of a path, including a balanced `{...}` group.
fn tree_end(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            ',' | ';' | ' ' | '\n' | '(' | ')' | '<' | '>' | '&' | '!' | '[' | ']' | '.'
                if depth == 0 =>
            {
                return i;
            }
            _ => {}
        }
    }
    s.len()
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        let n = prefix.len();
        prefix.extend(head);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], prefix, out);
        prefix.truncate(n);
    } else {
        let mut p = prefix.clone();
        p.extend(
            tree.split(" as ")
                .next()
                .unwrap_or("")
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        if !p.is_empty() {
            out.push(p);
        }
    }
}

/// The module a path names: the deepest known module along it.
fn resolve(from: &Module, is_dir_mod: bool, path: &[String], known: &BTreeSet<Module>) -> Module {
    let mut base: Module;
    let mut segs = path.iter().peekable();
    match segs.next().map(String::as_str) {
        Some("crate") => base = Vec::new(),
        Some("self") => base = from.clone(),
        Some("super") => {
            base = from.clone();
            base.pop();
            while segs.peek().is_some_and(|s| *s == "super") {
                segs.next();
                base.pop();
            }
        }
        _ => return from.clone(),
    }
    let _ = is_dir_mod;
    for s in segs {
        if s == "self" {
            continue;
        }
        let mut next = base.clone();
        next.push(s.clone());
        if known.contains(&next) {
            base = next;
        } else {
            break;
        }
    }
    base
}

fn find_cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        n: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|x| x == m).unwrap();
                    let mut c = stack[i..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn show(c: &[Module]) -> String {
    c.iter()
        .map(|m| {
            if m.is_empty() {
                "crate".to_owned()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// (file graph, top-level graph)
fn graphs() -> (
    BTreeMap<Module, BTreeSet<Module>>,
    BTreeMap<Module, BTreeSet<Module>>,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let known: BTreeSet<Module> = files.iter().map(|(p, _)| module_of(p)).collect();
    let mut file_graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut top_graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (rel, text) in &files {
        let from = module_of(rel);
        let is_dir_mod = rel.ends_with("mod.rs");
        for p in paths(&code(text)) {
            let to = resolve(&from, is_dir_mod, &p, &known);
            if to == from || to.is_empty() {
                continue;
            }
            if !from.starts_with(&to) {
                file_graph
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone());
            }
            if !from.is_empty() && from[0] != to[0] {
                top_graph
                    .entry(vec![from[0].clone()])
                    .or_default()
                    .insert(vec![to[0].clone()]);
            }
        }
    }
    (file_graph, top_graph)
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let (_, top) = graphs();
    assert!(
        top.contains_key(&vec!["lock".to_owned()]),
        "the reader found edges: {top:?}"
    );
    if let Some(c) = find_cycle(&top) {
        panic!("import circle between modules: {}", show(&c));
    }
}

#[test]
fn no_import_circle_between_files() {
    let (files, _) = graphs();
    if let Some(c) = find_cycle(&files) {
        panic!("import circle between files: {}", show(&c));
    }
}

#[test]
fn the_vocabulary_imports_nothing_of_the_crate() {
    let (files, _) = graphs();
    assert_eq!(files.get(&vec!["mode".to_owned()]), None);
}

#[test]
fn the_reader_sees_braced_and_inline_paths() {
    let p = paths("use super::{Protocol, core::{self, Ctx}};\nlet x = crate::lock::open_file(p);");
    assert!(p.contains(&vec!["super".into(), "Protocol".into()]));
    assert!(p.contains(&vec!["super".into(), "core".into(), "self".into()]));
    assert!(p.contains(&vec!["super".into(), "core".into(), "Ctx".into()]));
    assert!(p.contains(&vec!["crate".into(), "lock".into(), "open_file".into()]));
    let mut g = BTreeMap::new();
    g.insert(vec!["a".to_owned()], BTreeSet::from([vec!["b".to_owned()]]));
    g.insert(vec!["b".to_owned()], BTreeSet::from([vec!["a".to_owned()]]));
    assert_eq!(show(&find_cycle(&g).unwrap()), "a -> b -> a");
}
