//! The layout check CI runs: no import circles between the modules of either crate.
//!
//! A circle means a type lives in the wrong room (the model inside its loader, a state in the
//! loop that reports it). Each `.rs` file is a module; an edge is any path it names outside
//! `#[cfg(test)]` code: `use crate::…`, `use super::…`, `use self::…`, a parent's `use child::…`
//! (a re-export is an import too) and inline `crate::…` / `super::…` paths. Comments and strings
//! are not code. On failure the test prints every circle with the names that tie it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

#[test]
fn the_daemon_has_no_import_circles() {
    assert_no_circles(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
}

#[test]
fn the_sandbox_has_no_import_circles() {
    assert_no_circles(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/aws-sandbox/src"));
}

#[test]
fn a_circle_is_found_and_named() {
    // Two files that import each other, and a parent that re-exports a child that uses it.
    let files = BTreeMap::from([
        (module(&["a"]), "use crate::b::B;\npub struct A;".to_string()),
        (module(&["b"]), "pub struct B(crate::a::A);".to_string()),
        (module(&["c"]), "mod d;\npub use d::D;\npub struct C;".to_string()),
        (module(&["c", "d"]), "use super::C;\npub struct D;".to_string()),
        (
            module(&["e"]),
            "// use crate::a::A;\nconst S: &str = \"crate::a\";\n#[cfg(test)]\nmod t { use crate::a::A; }".to_string(),
        ),
    ]);
    let circles = circles(&edges(&files));
    let named: Vec<Vec<String>> = circles
        .iter()
        .map(|c| c.iter().map(|m| m.join("::")).collect())
        .collect();
    assert_eq!(
        named,
        vec![vec!["a", "b"], vec!["c", "c::d"]],
        "{circles:?}"
    );
}

fn module(parts: &[&str]) -> Module {
    parts.iter().map(|p| p.to_string()).collect()
}

fn assert_no_circles(root: &Path) {
    let files = read_modules(root);
    assert!(files.len() > 5, "no modules read under {}", root.display());
    let edges = edges(&files);
    let circles = circles(&edges);
    let mut report = String::new();
    for c in &circles {
        report.push_str(&format!("circle: {}\n", names(c)));
        for a in c {
            for (b, why) in edges.get(a).into_iter().flatten() {
                if c.contains(b) {
                    let why: Vec<&str> = why.iter().map(String::as_str).take(6).collect();
                    report.push_str(&format!(
                        "  {} -> {}: {}\n",
                        a.join("::"),
                        b.join("::"),
                        why.join(", ")
                    ));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles in {}:\n{report}",
        root.display()
    );
}

fn names(c: &BTreeSet<Module>) -> String {
    c.iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every `.rs` file under `root` by module path (`lib.rs`/`main.rs` are the crate root).
fn read_modules(root: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .with_extension("");
                let mut m: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if m.last().is_some_and(|l| l == "mod") {
                    m.pop();
                }
                if m == ["lib"] || m == ["main"] {
                    // The binary's root is a crate of its own: it imports the library by name.
                    if m == ["main"] {
                        continue;
                    }
                    m.clear();
                }
                out.insert(m, std::fs::read_to_string(&path).expect("read file"));
            }
        }
    }
    out
}

/// Module -> the modules it names, with the names it takes from each.
fn edges(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> {
    let mut out: BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> = BTreeMap::new();
    for (module, text) in files {
        let code = drop_test_items(&strip_comments_and_strings(text));
        let children: BTreeSet<&str> = files
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().expect("child").as_str())
            .collect();
        for path in paths(&code, module, &children) {
            // The longest prefix of the path that is a module is the one it imports from.
            for k in (0..=path.len()).rev() {
                let target: Module = path[..k].to_vec();
                if files.contains_key(&target) {
                    if &target != module {
                        let name = path.get(k).cloned().unwrap_or_else(|| "*".into());
                        out.entry(module.clone())
                            .or_default()
                            .entry(target)
                            .or_default()
                            .insert(name);
                    }
                    break;
                }
            }
        }
    }
    out
}

/// Every path `code` names, absolute from the crate root.
fn paths(code: &str, module: &Module, children: &BTreeSet<&str>) -> Vec<Module> {
    let mut out = Vec::new();
    // `use` trees, expanded; then blanked, so the inline scan below does not see them again.
    let mut code = code.to_string();
    let mut from = 0;
    while let Some(i) = find_word(&code[from..], "use").map(|i| i + from) {
        let Some(end) = code[i..].find(';').map(|e| e + i) else {
            break;
        };
        let tree: String = code[i + 3..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for p in expand(&tree) {
            if let Some(abs) = absolute(&p, module, children) {
                out.push(abs);
            }
        }
        code.replace_range(i..end, &" ".repeat(end - i));
        from = end;
    }
    // Inline paths: `crate::a::b`, `super::c`.
    let code = code.as_str();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let tail: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<String> = tail
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(abs) = absolute(&parts, module, children) {
                out.push(abs);
            }
        }
    }
    out
}

/// `crate::…`, `super::…`, `self::…` or a child's name, from the crate root; `None` for other
/// crates and `std`.
fn absolute(parts: &[String], module: &Module, children: &BTreeSet<&str>) -> Option<Module> {
    let (first, rest) = parts.split_first()?;
    let mut base: Module = match first.as_str() {
        "crate" => Vec::new(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        "self" => module.clone(),
        child if children.contains(child) => {
            let mut m = module.clone();
            m.push(child.to_string());
            return Some(m.into_iter().chain(rest.iter().cloned()).collect());
        }
        _ => return None,
    };
    let mut rest = rest;
    // `super::super::…`
    while let Some((s, r)) = rest.split_first() {
        if s != "super" {
            break;
        }
        base.pop();
        rest = r;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// `a::{b, c::{d, e as f}}` -> `[a, b]`, `[a, c, d]`, `[a, c, e]` (`pub use`, globs included).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let split = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| p.split(" as ").next().unwrap_or("").trim().to_string())
            .filter(|p| !p.is_empty() && p != "*")
            .collect()
    };
    let Some(open) = tree.find('{') else {
        return vec![split(tree)];
    };
    let head = split(&tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| {
            expand(p).into_iter().map(|tail| {
                let tail: Vec<String> = tail.into_iter().filter(|t| t != "self").collect();
                head.iter().cloned().chain(tail).collect()
            })
        })
        .collect()
}

/// The index of `word` standing alone in `s`.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find(word).map(|i| i + from) {
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let after = b
            .get(i + word.len())
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
        if before && after {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// `code` without comments, string and char literals (each literal becomes `""`).
fn strip_comments_and_strings(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied();
        if at(0) == Some('/') && at(1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(0) == Some('/') && at(1) == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if at(0) == Some('r')
            && (at(1) == Some('"') || at(1) == Some('#'))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if at(0) == Some('"') {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if at(0) == Some('\'')
            && (at(2) == Some('\'') || (at(1) == Some('\\') && at(3) == Some('\'')))
        {
            // A char literal ('a', '\n'); a lifetime ('a) is left as it is.
            out.push_str("' '");
            i += if at(1) == Some('\\') { 4 } else { 3 };
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `code` without the items that follow `#[cfg(test)]` (a `{…}` block, or up to `;`).
fn drop_test_items(code: &str) -> String {
    let mut code = code.to_string();
    while let Some(at) = code.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let brace = code[after..].find('{').map(|i| i + after);
        let semi = code[after..].find(';').map(|i| i + after);
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (None, Some(s)) => s + 1,
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = code.len();
                for (k, ch) in code[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => code.len(),
        };
        code.replace_range(at..end, "");
    }
    code
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn circles(edges: &BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>) -> Vec<BTreeSet<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        out: Vec<BTreeSet<Module>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        let i = s.index.len();
        s.index.insert(v.clone(), i);
        s.low.insert(v.clone(), i);
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        let next: Vec<Module> = s
            .edges
            .get(v)
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default();
        for w in next {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = &w == v;
                comp.insert(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<Module> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.keys().cloned()))
        .collect();
    for v in &nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}
