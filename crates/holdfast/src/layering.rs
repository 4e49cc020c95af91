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
//! Beside them, two rules of the library's shape (issue 9):
//!
//! - no source file over [`MAX_LINES`] lines (split it by concern);
//! - no `unsafe` outside `src/sys/`, except the one registration in
//!   `tokio.rs` that tokio's `AsyncFd::register_with_interest` requires
//!   (commented there with its safety argument).
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
            && let Some(next) = lines.peek().map(|n| n.trim())
            && next.starts_with("mod tests")
        {
            if next == "mod tests;" {
                // A test module in its own file (`tests.rs`, left out):
                // the code after this declaration still counts.
                lines.next();
                continue;
            }
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
fn resolve(
    from: &Module,
    is_dir_mod: bool,
    path: &[String],
    known: &BTreeSet<Module>,
    aliases: &BTreeMap<Module, Module>,
) -> Module {
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
        } else if let Some(real) = aliases.get(&next) {
            base = real.clone();
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

/// Modules re-exported under another name: `pub use self::queue::fifo;`
/// in `lib.rs` makes `crate::fifo` name the module `queue::fifo`, so a
/// path through the re-export still counts as naming `queue::fifo`.
fn aliases(files: &[(PathBuf, String)], known: &BTreeSet<Module>) -> BTreeMap<Module, Module> {
    let mut out = BTreeMap::new();
    for (rel, text) in files {
        let from = module_of(rel);
        let is_dir_mod = rel.ends_with("mod.rs");
        for p in paths(&code(text)) {
            let Some(last) = p.last().filter(|l| *l != "self" && *l != "super") else {
                continue;
            };
            let to = resolve(&from, is_dir_mod, &p, known, &BTreeMap::new());
            if to.last() == Some(last) && known.contains(&to) {
                let mut name = from.clone();
                name.push(last.clone());
                if name != to && !known.contains(&name) {
                    out.insert(name, to);
                }
            }
        }
    }
    out
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
    let aliases = aliases(&files, &known);
    let mut file_graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut top_graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (rel, text) in &files {
        let from = module_of(rel);
        let is_dir_mod = rel.ends_with("mod.rs");
        for p in paths(&code(text)) {
            let to = resolve(&from, is_dir_mod, &p, &known, &aliases);
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

/// The longest a library source file may be.
const MAX_LINES: usize = 1000;

/// Every `.rs` file under `src`, test files and this one included.
fn all_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p.strip_prefix(root).unwrap().to_owned(), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

#[test]
fn no_library_file_over_the_line_limit() {
    let files = all_sources();
    assert!(files.len() > 40, "the walk found {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(p, text)| format!("{} ({} lines)", p.display(), text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "library files over {MAX_LINES} lines (split them by concern): {}",
        long.join(", ")
    );
}

/// Whether `line` (comments stripped) has the keyword `unsafe`, not a
/// word that contains it (`is_unsafe`) nor text in a string.
fn has_unsafe_keyword(line: &str) -> bool {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut in_str = false;
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' && (i == 0 || chars[i - 1] != '\\') {
            in_str = !in_str;
        } else if !in_str
            && code[code.char_indices().nth(i).map_or(0, |(b, _)| b)..].starts_with("unsafe")
            && (i == 0 || !is_ident(chars[i - 1]))
            && chars.get(i + 6).is_none_or(|c| !is_ident(*c))
        {
            return true;
        }
        i += 1;
    }
    false
}

#[test]
fn no_unsafe_outside_sys() {
    let mut found = Vec::new();
    for (rel, text) in all_sources() {
        if rel.starts_with("sys") || rel == Path::new("layering.rs") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("//") || !has_unsafe_keyword(line) {
                continue;
            }
            // tokio's registration of the waiter's pidfd, commented there.
            if rel == Path::new("tokio.rs") && line.contains("AsyncFd::register_with_interest") {
                continue;
            }
            found.push(format!("{}:{}: {}", rel.display(), n + 1, t));
        }
    }
    assert!(
        found.is_empty(),
        "`unsafe` outside src/sys/ (move it behind a safe function in sys): {}",
        found.join("; ")
    );
}

#[test]
fn the_unsafe_reader_sees_the_keyword_only() {
    assert!(has_unsafe_keyword("    unsafe { libc::close(fd) };"));
    assert!(has_unsafe_keyword("pub unsafe fn f() {}"));
    assert!(!has_unsafe_keyword("pub fn is_unsafe(c: char) -> bool {"));
    assert!(!has_unsafe_keyword(r#"let s = "an unsafe word";"#));
    assert!(!has_unsafe_keyword("let x = 1; // unsafe in a comment"));
}

/// The import reader reads every file to its end: every `use crate::` or
/// `use super::` line outside a trailing `mod tests { ... }` block reaches
/// the code it scans (a `mod tests;` declaration, whose module lives in
/// its own file, must not end the scan), and every file in a directory
/// module is read.
#[test]
fn the_import_reader_reads_every_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let expected = all_sources()
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n != "tests.rs" && n != "layering.rs")
        })
        .count();
    assert_eq!(files.len(), expected);
    assert!(
        files.iter().any(|(p, _)| p.components().count() >= 2),
        "no file in a directory module was read"
    );
    for (rel, text) in &files {
        let scanned = code(text);
        let body = match text.find("#[cfg(test)]\nmod tests {") {
            Some(i) => &text[..i],
            None => text,
        };
        for line in body.lines() {
            let t = line.trim();
            if t.starts_with("use crate::")
                || t.starts_with("use super::")
                || t.starts_with("pub(crate) use crate::")
                || t.starts_with("pub use crate::")
            {
                assert!(
                    scanned.lines().any(|l| l.trim() == t),
                    "{}: the reader skipped `{t}`",
                    rel.display()
                );
            }
        }
    }
    let c = code("#[cfg(test)]\nmod tests;\nuse crate::lock::Lock;\n");
    assert!(c.contains("use crate::lock::Lock;"), "{c}");
    let c = code("use crate::a::B;\n#[cfg(test)]\nmod tests {\nuse crate::c::D;\n}\n");
    assert!(
        c.contains("crate::a::B") && !c.contains("crate::c::D"),
        "{c}"
    );
}

/// A path `crate::a::b...` whose first segment is a module must resolve to
/// that module (or deeper), never to the crate root: a module moved into
/// a directory and re-exported (`crate::fifo` for `queue::fifo`) would
/// otherwise silently stop counting.
#[test]
fn paths_through_re_exported_modules_still_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let known: BTreeSet<Module> = files.iter().map(|(p, _)| module_of(p)).collect();
    let aliases = aliases(&files, &known);
    let mut lost = Vec::new();
    for (rel, text) in &files {
        let from = module_of(rel);
        for p in paths(&code(text)) {
            if p.len() >= 3 && p[0] == "crate" && p[1].starts_with(|c: char| c.is_ascii_lowercase())
            {
                let to = resolve(&from, false, &p, &known, &aliases);
                if to.is_empty() {
                    lost.push(format!("{}: {}", rel.display(), p.join("::")));
                }
            }
        }
    }
    assert!(
        lost.is_empty(),
        "paths the reader cannot place (re-export a moved module with `pub use self::...`): {lost:?}"
    );
}
