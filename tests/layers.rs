//! The layer test (issue 19, "layers that only point down"; the floors are
//! drawn in docs/ARCHITECTURE.md). Every top-level module of the broker
//! crate sits on a floor; a module may name only itself and modules on
//! floors strictly below its own. Siblings on one floor do not know each
//! other. The scan reads `crate::X` paths (also `use crate::{X, Y}`) in
//! src/**/*.rs outside comments; `src/main.rs` and `src/bin/` are the
//! binaries that wire every floor together and are not scanned.
//!
//! Arrows that still point up are listed in `ALLOWED` with the reason and
//! the issue they wait for. An entry that no longer matches anything fails
//! the test too, so the list only shrinks: delete it when its arrow goes.
//!
//! Limits: `super::super::` paths that climb out of a top-level module are
//! not resolved (none exist; `crate::` is the house style for those).

use std::collections::BTreeSet;
use std::path::Path;

mod source_scan;
use source_scan::rust_files;

/// Floors, bottom first. Keep in step with docs/ARCHITECTURE.md.
const FLOORS: &[(&str, u8)] = &[
    // Bytes ⇄ packets: pure, knows nothing else.
    ("codec", 0),
    // Topic names, filters and the subscription tree; password and ACL files.
    ("topic", 1),
    ("auth", 1),
    // The per-client protocol state, messages and what they owe the disk:
    // no I/O, no clock, no async runtime.
    ("session", 2),
    // The durable journal: encodes session and message records.
    ("store", 3),
    // The typed configuration: names domain policies (queue, fsync).
    ("config", 4),
    // Shared state: registry, routing, retained messages, budgets, access.
    ("broker", 5),
    // The edges that drive the broker: MQTT listeners and bridge subscribers.
    ("server", 6),
    ("bridge", 6),
    // Cluster mode: the link to the other nodes through NATS.
    ("cluster", 6),
    // On the side: operations ($SYS, reload, process) and the admin API.
    ("ops", 7),
    ("admin", 8),
];

/// Modules that must not use an async runtime or I/O crates.
const NO_RUNTIME: &[&str] = &["codec", "topic", "session"];
const RUNTIME_CRATES: &[&str] = &["tokio", "fjall"];

/// An arrow that still points up or sideways: (importing module, path
/// prefix it names, why it is still there and what removes it).
const ALLOWED: &[(&str, &str, &str)] = &[];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

/// One named path: where it is and what it names (`bridge::compile_transform`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    path: String,
}

/// The text with comments blanked out (line comments, block comments),
/// keeping line breaks and leaving string literals alone.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' && i + 1 < b.len() {
                out.push(c as char);
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            out.push(c as char);
            i += 1;
        } else if c == b'"' && !(i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'')) {
            in_str = true;
            out.push('"');
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else {
            // Non-ASCII bytes only occur inside strings and comments in
            // this code base; push them through unchanged otherwise.
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads a path (`a::b::C`) at the start of `s`.
fn read_path(s: &str) -> String {
    let mut end = 0;
    let chars: Vec<char> = s.chars().collect();
    while end < chars.len() {
        if is_ident(chars[end]) {
            end += 1;
        } else if chars[end] == ':'
            && chars.get(end + 1) == Some(&':')
            && chars.get(end + 2).is_some_and(|c| is_ident(*c))
        {
            end += 2;
        } else {
            break;
        }
    }
    chars[..end].iter().collect()
}

/// Every path named after `prefix` (`crate::` or `tokio::`) in code.
fn references(code: &str, prefix: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find(prefix) {
        let at = from + pos;
        from = at + prefix.len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b::{Y, Z}}`: the first segment of each
            // item at depth one.
            let mut depth = 1;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                if depth == 0 {
                    break;
                }
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if item_start && is_ident(c) && depth == 1 => {
                        item_start = false;
                        let path = read_path(&group[k..]);
                        let l = line + group[..k].matches('\n').count();
                        found.push(Reference { line: l, path });
                    }
                    _ => {}
                }
            }
        } else {
            let path = read_path(rest);
            if !path.is_empty() {
                found.push(Reference { line, path });
            }
        }
    }
    found
}

/// The top-level module a source file belongs to, or `None` for the crate
/// root and the binaries.
fn module_of(src_dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir).ok()?;
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    match first.as_str() {
        "lib.rs" | "main.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// Every arrow that breaks the rule, allowed or not: (file, line, from, path).
fn violations(src_dir: &Path) -> Vec<(String, usize, String, String)> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Some(module) = module_of(src_dir, &file) else {
            continue;
        };
        let own = floor(&module)
            .unwrap_or_else(|| panic!("module `{module}` has no floor: add it to FLOORS in tests/layers.rs and to docs/ARCHITECTURE.md"));
        let text = std::fs::read_to_string(&file).expect("read source file");
        let code = strip_comments(&text);
        let shown = file
            .strip_prefix(src_dir.parent().unwrap_or(src_dir))
            .unwrap_or(&file)
            .display()
            .to_string();
        for r in references(&code, "crate::") {
            let target = r.path.split("::").next().unwrap_or_default();
            if target == module || target.is_empty() {
                continue;
            }
            match floor(target) {
                Some(f) if f < own => {}
                // Not a module (a macro, or a path the scan cannot place).
                None => {}
                Some(_) => out.push((
                    shown.clone(),
                    r.line,
                    module.clone(),
                    format!("crate::{}", r.path),
                )),
            }
        }
        if NO_RUNTIME.contains(&module.as_str()) {
            for krate in RUNTIME_CRATES {
                for r in references(&code, &format!("{krate}::")) {
                    out.push((
                        shown.clone(),
                        r.line,
                        module.clone(),
                        format!("{krate}::{}", r.path),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn modules_import_only_from_floors_below() {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src_dir);
    let mut used = BTreeSet::new();
    let mut errors = Vec::new();
    for (file, line, from, path) in &found {
        let allowed = |(m, p, _): &&(&str, &str, &str)| {
            m == from
                && path
                    .strip_prefix("crate::")
                    .is_some_and(|rest| rest.starts_with(p))
        };
        match ALLOWED.iter().position(|e| allowed(&e)) {
            Some(k) => {
                used.insert(k);
            }
            None => errors.push(format!(
                "{file}:{line}: `{from}` (floor {}) names `{path}`: not on a floor below it, or a runtime/I-O crate the pure core must not use",
                floor(from).unwrap_or(0)
            )),
        }
    }
    for (k, (m, p, why)) in ALLOWED.iter().enumerate() {
        if !used.contains(&k) {
            errors.push(format!(
                "allow-list entry ({m} -> {p}) matches nothing any more: delete it from ALLOWED in tests/layers.rs ({why})"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "layer rule broken (see docs/ARCHITECTURE.md):\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_floor() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read src/lib.rs");
    for line in lib.lines() {
        if let Some(name) = line
            .trim()
            .strip_prefix("pub mod ")
            .or_else(|| line.trim().strip_prefix("mod "))
        {
            let name = name.trim_end_matches(';').trim();
            assert!(
                floor(name).is_some(),
                "module `{name}` has no floor in tests/layers.rs"
            );
        }
    }
}

#[test]
fn the_scan_reads_paths_groups_and_skips_comments() {
    let code = strip_comments(
        "use crate::codec::QoS;\n// crate::admin in a comment\n/* crate::ops */ let x = \"crate::server\";\nuse crate::{\n    topic::TopicFilter,\n    store::{Op, Store},\n};\nlet y = crate::broker::Broker::new();\nlet z = my_crate::bridge::X;\n",
    );
    let paths: Vec<(usize, String)> = references(&code, "crate::")
        .into_iter()
        .map(|r| (r.line, r.path))
        .collect();
    assert_eq!(
        paths,
        vec![
            (1, "codec::QoS".to_owned()),
            // Inside a string literal: still read (conservative).
            (3, "server".to_owned()),
            (5, "topic::TopicFilter".to_owned()),
            (6, "store".to_owned()),
            (8, "broker::Broker::new".to_owned()),
        ]
    );
}
