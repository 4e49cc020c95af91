//! Every public function and type of the library shows how it is used: a
//! test that reads the sources and fails naming each public function,
//! method or setter whose doc comment has no example (a Rust code block),
//! each fallible one (returning `Result`) without an `# Errors` section,
//! and each public struct, enum, trait or union without an example.
//!
//! What counts as public, read from the sources the way rustdoc sees them:
//!
//! - a free `pub fn` in a module reached from `lib.rs` through `pub mod`
//!   only, or one whose name a public module re-exports (`pub use`);
//! - a `pub fn` in an inherent `impl` of a public type (a `pub struct`,
//!   `enum`, `trait`, `type` of a public module, or a re-exported name),
//!   wherever the `impl` lives (methods in private submodules such as
//!   `phase/runner.rs` are public API all the same);
//! - every method a public trait declares (trait methods count on the
//!   trait; `impl Trait for Type` blocks are not read).
//!
//! Types count by the same rule as free functions (declared in a public
//! module, or re-exported by name); type aliases do not count.
//!
//! Not counted: `pub(crate)` and narrower, items under `#[doc(hidden)]`,
//! `#[cfg(test)]` or `#[cfg(doctest)]`, items inside function bodies, test
//! files. Methods a
//! `macro_rules!` body defines are read like any other (`IoOp::as_str`).
//!
//! An example is a fenced code block that rustdoc compiles and runs (or
//! compiles, with `no_run`): a bare fence, `rust`, `no_run`,
//! `should_panic` or `edition…`; `text`, `ignore` and `compile_fail`
//! blocks do not count.
//!
//! Run it alone with `cargo test -p holdfast --lib doc_coverage`; add
//! `-- --nocapture` to see the counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules whose items are listed but do not fail the test yet, because
/// their examples land in a later commit: `"lock"` is `lock.rs` and
/// everything under `lock/`. Shrink it to empty.
const PENDING: &[&str] = &[];

/// Modules whose *types* do not fail the type test yet (as [`PENDING`]
/// for functions). Keep it empty.
const PENDING_TYPES: &[&str] = &[];

fn pending_types(file: &str) -> bool {
    PENDING_TYPES
        .iter()
        .any(|m| file == format!("{m}.rs") || file.starts_with(&format!("{m}/")))
}

fn pending(file: &str) -> bool {
    PENDING
        .iter()
        .any(|m| file == format!("{m}.rs") || file.starts_with(&format!("{m}/")))
}

#[derive(Debug, Clone)]
enum Ctx {
    /// The file itself.
    Root,
    /// An inline `mod name { ... }`.
    Mod { public: bool },
    /// `impl Type { ... }`; trait impls are `Body`.
    Impl { ty: String },
    /// `trait Name { ... }`.
    Trait { name: String, public: bool },
    /// A `macro_rules!` body or one of its arms: items inside count as if
    /// they stood where the macro does.
    Macro,
    /// Anything else: a function body, a struct's fields, a match, a test
    /// module. Nothing inside counts.
    Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Place {
    /// A free function (`public`: the enclosing modules are public).
    Free { public: bool },
    /// An inherent method of `ty`.
    Method { ty: String },
    /// A method a trait declares.
    TraitMethod { name: String, public: bool },
}

#[derive(Debug, Clone)]
struct FnItem {
    name: String,
    line: usize,
    place: Place,
    docs: String,
    fallible: bool,
}

/// A `pub struct`, `enum`, `trait` or `union` (`public`: declared in a
/// public module; a re-exported name counts too).
#[derive(Debug, Clone)]
struct TypeItem {
    name: String,
    line: usize,
    public: bool,
    docs: String,
}

#[derive(Debug, Default)]
struct Scan {
    fns: Vec<FnItem>,
    types: Vec<TypeItem>,
    /// `mod name;` declarations at the file's top level: (name, public).
    mods: Vec<(String, bool)>,
    /// `pub struct|enum|trait|type|union` names declared in a public place.
    pub_types: Vec<String>,
    /// Names re-exported by `pub use` in a public place.
    reexports: Vec<String>,
}

/// The attributes (`#[...]`) of a header, and the rest.
fn split_attrs(header: &str) -> (Vec<String>, String) {
    let mut attrs = Vec::new();
    let mut rest = String::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '#' {
            let mut j = i + 1;
            if j < chars.len() && chars[j] == '!' {
                j += 1;
            }
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '[' {
                let mut depth = 0;
                let start = j;
                while j < chars.len() {
                    match chars[j] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                attrs.push(chars[start..=j.min(chars.len() - 1)].iter().collect());
                i = j + 1;
                continue;
            }
        }
        rest.push(chars[i]);
        i += 1;
    }
    (attrs, rest)
}

fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' || c == '!' || c == '$' {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether the words of a header start with exactly `pub` (not `pub(crate)`).
fn is_pub(w: &[String]) -> bool {
    w.first().is_some_and(|x| x == "pub") && w.get(1).is_none_or(|x| x != "(")
}

/// The position of keyword `kw` among the leading qualifiers of an item.
fn keyword_at(w: &[String], kw: &str) -> Option<usize> {
    let mut i = 0;
    if is_pub(w) {
        i = 1;
    } else if w.first().is_some_and(|x| x == "pub") {
        // pub(crate), pub(super), pub(in path)
        i = 1;
        let mut depth = 0;
        while i < w.len() {
            match w[i].as_str() {
                "(" => depth += 1,
                ")" => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    while i < w.len() {
        match w[i].as_str() {
            x if x == kw => return Some(i),
            "const" | "async" | "unsafe" | "extern" | "default" | "\"\"" | "\"" | "auto" => i += 1,
            _ => return None,
        }
    }
    None
}

/// Whether a function signature returns a `Result` (of any path).
fn returns_result(sig: &str) -> bool {
    // The return type: after the last `->` outside parentheses, before `where`.
    let mut depth = 0i32;
    let mut arrow = None;
    let b = sig.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'-' if depth == 0 && b.get(i + 1) == Some(&b'>') => arrow = Some(i + 2),
            _ => {}
        }
    }
    let Some(at) = arrow else { return false };
    let ret = sig[at..].trim();
    let ret = ret.split(" where").next().unwrap_or(ret);
    let head = ret.split('<').next().unwrap_or(ret).trim();
    head.rsplit("::")
        .next()
        .is_some_and(|t| t.trim() == "Result")
}

/// The self type of an inherent `impl` header, or `None` for a trait impl.
fn impl_type(w: &[String]) -> Option<String> {
    let i = keyword_at(w, "impl")?;
    let rest = &w[i + 1..];
    if rest.iter().any(|x| x == "for") {
        return None;
    }
    // Skip `<...>` generics right after `impl`.
    let mut j = 0;
    if rest.first().is_some_and(|x| x == "<") {
        let mut depth = 0;
        while j < rest.len() {
            match rest[j].as_str() {
                "<" => depth += 1,
                ">" => {
                    depth -= 1;
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
    }
    // The path up to its own generics: the last identifier before `<`.
    let mut name = None;
    while j < rest.len() {
        let x = &rest[j];
        if x == "<" || x == "where" {
            break;
        }
        if x.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        {
            name = Some(x.clone());
        }
        j += 1;
    }
    name
}

/// Reads one file: its functions with their docs and place, its `mod`
/// declarations, public types and re-exports.
fn scan(text: &str, file_public: bool) -> Scan {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Scan::default();
    let mut stack: Vec<Ctx> = vec![Ctx::Root];
    let mut header = String::new();
    let mut header_line = 0usize;
    let mut docs = String::new();
    let mut line = 1usize;
    let mut paren = 0i32;
    // Braces of a `use` tree belong to the header.
    let mut use_braces = 0i32;
    let mut i = 0;

    // Whether items declared at the top of the stack are in a public place.
    let public_here = |stack: &[Ctx]| -> bool {
        let mut public = file_public;
        for c in stack {
            match c {
                Ctx::Root | Ctx::Macro => {}
                Ctx::Mod { public: p } => public &= *p,
                _ => return false,
            }
        }
        public
    };
    // The innermost context that is not a macro.
    let innermost = |stack: &[Ctx]| -> Ctx {
        stack
            .iter()
            .rev()
            .find(|c| !matches!(c, Ctx::Macro))
            .cloned()
            .unwrap_or(Ctx::Root)
    };
    let in_body = |stack: &[Ctx]| stack.iter().any(|c| matches!(c, Ctx::Body));

    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // Comments.
        if c == '/' && next == Some('/') {
            let start = i;
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            let comment: String = chars[start..i].iter().collect();
            if comment.starts_with("///") && !comment.starts_with("////") {
                let body = &comment[3..];
                docs.push_str(body.strip_prefix(' ').unwrap_or(body));
                docs.push('\n');
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                    continue;
                }
                if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            continue;
        }
        // Strings (their contents never matter here).
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if (c == 'r' || (c == 'b' && next == Some('r'))) && !prev_ident {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') && (hashes > 0 || j == i + 1 || c == 'b') {
                j += 1;
                loop {
                    match chars.get(j) {
                        None => break,
                        Some('\n') => line += 1,
                        Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                            j += 1 + hashes;
                            break;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                header.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if chars.get(j) == Some(&'\n') {
                    line += 1;
                }
                j += 1;
            }
            header.push_str("\"\"");
            i = j + 1;
            continue;
        }
        if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                header.push_str("' '");
                i = j + 1;
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                header.push_str("' '");
                i += 3;
                continue;
            }
        }
        match c {
            '\n' => {
                line += 1;
                header.push(' ');
            }
            '(' | '[' => {
                paren += 1;
                header.push(c);
            }
            ')' | ']' => {
                paren -= 1;
                header.push(c);
            }
            '{' if use_braces > 0
                || keyword_at(&words(&split_attrs(&header).1), "use").is_some() =>
            {
                use_braces += 1;
                header.push(c);
            }
            '}' if use_braces > 0 => {
                use_braces -= 1;
                header.push(c);
            }
            '{' | ';' if paren == 0 => {
                let (attrs, sig) = split_attrs(&header);
                let w = words(&sig);
                let hidden = attrs.iter().any(|a| {
                    a.contains("doc(hidden)")
                        || a.contains("cfg(test)")
                        || a.contains("cfg(doctest)")
                });
                let top = innermost(&stack);
                let body = in_body(&stack);
                // A function?
                if !body && let Some(k) = keyword_at(&w, "fn") {
                    let name = w.get(k + 1).cloned().unwrap_or_default();
                    let place = match &top {
                        Ctx::Root | Ctx::Mod { .. } if is_pub(&w) => Some(Place::Free {
                            public: public_here(&stack),
                        }),
                        Ctx::Impl { ty } if is_pub(&w) => Some(Place::Method { ty: ty.clone() }),
                        Ctx::Trait { name, public } => Some(Place::TraitMethod {
                            name: name.clone(),
                            public: *public,
                        }),
                        _ => None,
                    };
                    if let Some(place) = place
                        && !hidden
                    {
                        out.fns.push(FnItem {
                            name,
                            line: header_line,
                            place,
                            docs: docs.clone(),
                            fallible: returns_result(&sig),
                        });
                    }
                }
                if !body && !hidden && is_pub(&w) {
                    for kw in ["struct", "enum", "trait", "union"] {
                        if let Some(k) = keyword_at(&w, kw) {
                            out.types.push(TypeItem {
                                name: w.get(k + 1).cloned().unwrap_or_default(),
                                line: header_line,
                                public: public_here(&stack),
                                docs: docs.clone(),
                            });
                        }
                    }
                }
                if !body && !hidden && is_pub(&w) && public_here(&stack) {
                    for kw in ["struct", "enum", "trait", "type", "union"] {
                        if let Some(k) = keyword_at(&w, kw) {
                            out.pub_types.extend(w.get(k + 1).cloned());
                        }
                    }
                    if let Some(k) = keyword_at(&w, "use") {
                        // The last identifier before each `,`, `}` or the end,
                        // and any `as` alias.
                        let rest = &w[k + 1..];
                        for (j, x) in rest.iter().enumerate() {
                            let ends = rest.get(j + 1).is_none_or(|n| n == "," || n == "}");
                            if ends && x.chars().next().is_some_and(|c| c.is_alphabetic()) {
                                out.reexports.push(x.clone());
                            }
                            if x == "as" {
                                // `Name as Alias`: the original name too.
                                out.reexports
                                    .extend(j.checked_sub(1).map(|p| rest[p].clone()));
                            }
                        }
                    }
                }
                if c == ';' {
                    if !body
                        && stack.len() == 1
                        && !hidden
                        && let Some(k) = keyword_at(&w, "mod")
                    {
                        out.mods
                            .push((w.get(k + 1).cloned().unwrap_or_default(), is_pub(&w)));
                    }
                } else {
                    let ctx = if body || hidden {
                        Ctx::Body
                    } else if w.first().is_some_and(|x| x == "macro_rules!")
                        || (matches!(stack.last(), Some(Ctx::Macro))
                            && w.last().is_some_and(|x| x == ">"))
                    {
                        Ctx::Macro
                    } else if keyword_at(&w, "fn").is_some() {
                        Ctx::Body
                    } else if keyword_at(&w, "mod").is_some() {
                        Ctx::Mod { public: is_pub(&w) }
                    } else if let Some(k) = keyword_at(&w, "trait") {
                        Ctx::Trait {
                            name: w.get(k + 1).cloned().unwrap_or_default(),
                            public: is_pub(&w) && public_here(&stack),
                        }
                    } else if keyword_at(&w, "impl").is_some() {
                        match impl_type(&w) {
                            Some(ty) => Ctx::Impl { ty },
                            None => Ctx::Body,
                        }
                    } else {
                        Ctx::Body
                    };
                    stack.push(ctx);
                }
                header.clear();
                docs.clear();
            }
            '}' if paren == 0 => {
                if stack.len() > 1 {
                    stack.pop();
                }
                header.clear();
                docs.clear();
            }
            '{' => header.push(c),
            '}' => header.push(c),
            _ => {
                if header.trim().is_empty() && !c.is_whitespace() {
                    header_line = line;
                }
                let ident = |k: Option<&char>| k.is_some_and(|c| c.is_alphanumeric() || *c == '_');
                if c == 'f' && next == Some('n') && !prev_ident && !ident(chars.get(i + 2)) {
                    header_line = line;
                }
                header.push(c);
            }
        }
        i += 1;
    }
    out
}

/// Whether docs hold a code block rustdoc runs or compiles.
fn has_example(docs: &str) -> bool {
    let mut in_block = false;
    for l in docs.lines() {
        let Some(tag) = l.trim().strip_prefix("```") else {
            continue;
        };
        if in_block {
            in_block = false;
            continue;
        }
        in_block = true;
        let runs = tag.split(',').map(str::trim).all(|t| {
            matches!(t, "" | "rust" | "no_run" | "should_panic") || t.starts_with("edition")
        });
        if runs {
            return true;
        }
    }
    false
}

fn has_errors_section(docs: &str) -> bool {
    docs.lines().any(|l| l.trim() == "# Errors")
}

/// Every file of the library with its scan, and whether its module path is
/// public (`pub mod` all the way from `lib.rs`).
fn library() -> Vec<(PathBuf, Scan)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo = vec![(root.join("lib.rs"), true)];
    let mut seen = BTreeSet::new();
    while let Some((file, public)) = todo.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let s = scan(&text, public);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dir = if name == "lib.rs" || name == "mod.rs" {
            file.parent().unwrap().to_owned()
        } else {
            file.with_extension("")
        };
        for (m, p) in &s.mods {
            if m == "tests" || m == "layering" || m == "doc_coverage" {
                continue;
            }
            for cand in [dir.join(format!("{m}.rs")), dir.join(m).join("mod.rs")] {
                if cand.exists() {
                    todo.push((cand, public && *p));
                }
            }
        }
        out.push((file.strip_prefix(&root).unwrap().to_owned(), s));
    }
    // Files reached only through `#[path]` (sys/unix.rs, ...): private.
    let mut rest = Vec::new();
    collect(&root, &mut rest);
    for f in rest {
        let n = f.file_name().unwrap().to_string_lossy().into_owned();
        if seen.contains(&f) || n == "tests.rs" || n == "layering.rs" || n == "doc_coverage.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        out.push((
            f.strip_prefix(&root).unwrap().to_owned(),
            scan(&text, false),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The public functions of the library: (file, item).
fn public_fns() -> Vec<(PathBuf, FnItem)> {
    let files = library();
    let mut types = BTreeSet::new();
    let mut reexports = BTreeSet::new();
    for (_, s) in &files {
        types.extend(s.pub_types.iter().cloned());
        reexports.extend(s.reexports.iter().cloned());
    }
    types.extend(reexports.iter().cloned());
    let mut out = Vec::new();
    for (f, s) in files {
        for item in s.fns {
            let counts = match &item.place {
                Place::Free { public } => *public || reexports.contains(&item.name),
                Place::Method { ty } => types.contains(ty),
                Place::TraitMethod { name, public } => *public || reexports.contains(name),
            };
            if counts {
                out.push((f.clone(), item));
            }
        }
    }
    out
}

/// The public structs, enums, traits and unions: (file, item).
fn public_types() -> Vec<(PathBuf, TypeItem)> {
    let files = library();
    let reexports: BTreeSet<String> = files
        .iter()
        .flat_map(|(_, s)| s.reexports.iter().cloned())
        .collect();
    let mut out = Vec::new();
    for (f, s) in files {
        for t in s.types {
            if t.public || reexports.contains(&t.name) {
                out.push((f.clone(), t));
            }
        }
    }
    out
}

#[test]
fn every_public_type_has_an_example() {
    let types = public_types();
    let missing: Vec<String> = types
        .iter()
        .filter(|(f, t)| {
            let f = f.to_string_lossy();
            !has_example(&t.docs) && !pending(&f) && !pending_types(&f)
        })
        .map(|(f, t)| format!("  {}:{} {} lacks an example", f.display(), t.line, t.name))
        .collect();
    println!(
        "{} public types; {} without an example",
        types.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} public types lack an example (see src/doc_coverage.rs for what counts):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn every_public_fn_has_an_example_and_every_fallible_one_an_errors_section() {
    let fns = public_fns();
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut no_example, mut no_errors, mut in_pending) = (0, 0, 0);
    for (file, item) in &fns {
        let file = file.to_string_lossy().into_owned();
        let mut lacks = Vec::new();
        if !has_example(&item.docs) {
            lacks.push("an example");
            no_example += 1;
        }
        if item.fallible && !has_errors_section(&item.docs) {
            lacks.push("`# Errors`");
            no_errors += 1;
        }
        if lacks.is_empty() {
            continue;
        }
        let owner = match &item.place {
            Place::Free { .. } => String::new(),
            Place::Method { ty } => format!("{ty}::"),
            Place::TraitMethod { name, .. } => format!("{name}::"),
        };
        if pending(&file) {
            in_pending += 1;
        }
        missing.entry(file.clone()).or_default().push(format!(
            "  {file}:{} {owner}{} lacks {}",
            item.line,
            item.name,
            lacks.join(" and ")
        ));
    }
    println!(
        "{} public functions; {no_example} without an example, {no_errors} fallible without `# Errors` ({in_pending} in pending modules)",
        fns.len()
    );
    let failing: Vec<&String> = missing
        .iter()
        .filter(|(f, _)| !pending(f))
        .flat_map(|(_, v)| v)
        .collect();
    for (f, v) in &missing {
        if pending(f) {
            println!("pending: {f}: {} items\n{}", v.len(), v.join("\n"));
        }
    }
    assert!(
        failing.is_empty(),
        "{} public functions lack docs (see src/doc_coverage.rs for what counts):\n{}",
        failing.len(),
        failing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_reader_counts_what_rustdoc_shows() {
    let src = r##"
pub mod open {
    /// Documented.
    ///
    /// ```
    /// assert!(true);
    /// ```
    pub fn shown() {}
    /// No example, and fallible.
    pub fn bare() -> std::io::Result<()> { let s = "{ pub fn fake() {}"; Ok(()) }
    pub(crate) fn internal() {}
    #[doc(hidden)]
    pub fn hidden() {}
}
mod closed {
    pub fn unexported() {}
    pub fn exported() {}
}
pub use closed::{exported, other};
/// A type.
pub struct Thing<'a>(&'a str);
impl<'a> Thing<'a> {
    /// ```text
    /// not an example
    /// ```
    pub fn get(&self) -> Result<char, Error> { let c = '{'; Ok(c) }
    fn private(&self) {}
}
impl std::fmt::Display for Thing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) }
}
/// A trait.
pub trait Backend {
    /// # Errors
    ///
    /// Never.
    fn acquire(&self, n: [u8; 4]) -> crate::Result<()>;
}
macro_rules! ops {
    () => {
        impl Thing<'_> {
            /// From a macro.
            pub fn from_macro(self) -> &'static str { "" }
        }
    };
}
#[cfg(test)]
mod tests {
    pub fn in_tests() {}
}
"##;
    let s = scan(src, true);
    let names: Vec<(&str, bool, bool, bool)> = s
        .fns
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                has_example(&f.docs),
                f.fallible,
                has_errors_section(&f.docs),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("shown", true, false, false),
            ("bare", false, true, false),
            ("unexported", false, false, false),
            ("exported", false, false, false),
            ("get", false, true, false),
            ("acquire", false, true, true),
            ("from_macro", false, false, false),
        ]
    );
    assert_eq!(s.fns[2].place, Place::Free { public: false });
    assert_eq!(s.fns[0].place, Place::Free { public: true });
    assert_eq!(s.fns[4].place, Place::Method { ty: "Thing".into() });
    assert_eq!(s.fns[1].line, 10);
    assert!(s.reexports.contains(&"exported".to_owned()));
    assert!(s.pub_types.contains(&"Thing".to_owned()));
    assert!(s.pub_types.contains(&"Backend".to_owned()));
}
