//! The size limits (issue 19): no source file in `src/` or `bridges/src/`
//! (nor in `sluice-bench/src/`, the load generator that used to live in
//! `src/bin/`) over 600 lines, no function there over 80 lines. Past those sizes a
//! file holds more than one concept and a function more than one step,
//! and a newcomer has to read all of it to change any of it.
//!
//! Exempt: unit tests kept apart (files named `tests.rs`, anything under
//! a `tests/` directory, and files their parent declares only under
//! `#[cfg(test)]`). A function is counted from the line of its `fn` to
//! the line of its closing brace; braces inside comments, strings and
//! character literals do not count.
//!
//! What is still over a limit is listed in `ALLOWED` with the reason. An
//! entry that no longer matches anything fails the test too, so the list
//! only shrinks: delete it when its file or function is back under.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

mod source_scan;
use source_scan::rust_files;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// Marks a whole-file entry in `ALLOWED`.
const FILE: &str = "*file*";

/// Over a limit for now: (path from the workspace root, function name or
/// [`FILE`], why and what removes it). A name covers every function of
/// that name in the file.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// The text with comments, string literals and character literals blanked
/// (replaced by spaces), line breaks kept: what is left is code whose
/// braces are real.
fn blank_non_code(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    // Keeps line breaks so line numbers stay right.
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(b, i) {
            // r"..." or r#"..."#: no escapes, ends at a quote and the
            // same number of hashes.
            let open = 1 + hashes + 1 + usize::from(c == b'b');
            out.extend(std::iter::repeat_n(b' ', open));
            i += open;
            while i < b.len() {
                if b[i] == b'"'
                    && b[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|h| **h == b'#')
                        .count()
                        == hashes
                {
                    out.extend(std::iter::repeat_n(b' ', 1 + hashes));
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let step = if b[i] == b'\\' { 2 } else { 1 };
                for &ch in &b[i..(i + step).min(b.len())] {
                    blank(&mut out, ch);
                }
                i += step;
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A character literal ('{', '\'', '\u{7f}'), or a lifetime.
            let len = char_literal_len(&b[i..]);
            for &ch in &b[i..(i + len).min(b.len())] {
                blank(&mut out, ch);
            }
            i += len.max(1);
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hashes of a raw string literal starting at `i` (`r"`, `r#"`,
/// `br"`), or `None`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let start = if b[i] == b'b' { i + 1 } else { i };
    if b.get(start) != Some(&b'r') {
        return None;
    }
    let hashes = b[start + 1..].iter().take_while(|c| **c == b'#').count();
    (b.get(start + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// Bytes of the character literal at the start of `b`, or 1 for a
/// lifetime's quote.
fn char_literal_len(b: &[u8]) -> usize {
    if b.get(1) == Some(&b'\\') {
        // An escape (`'\''`, `'\n'`, `'\u{7f}'`): up to the closing quote
        // after the escaped character.
        return b
            .get(3..)
            .and_then(|rest| rest.iter().position(|c| *c == b'\''))
            .map_or(1, |p| p + 4);
    }
    // One character (maybe several bytes), then the closing quote.
    let Ok(text) = std::str::from_utf8(&b[1..b.len().min(6)])
        .or_else(|e| std::str::from_utf8(&b[1..1 + e.valid_up_to()]))
    else {
        return 1;
    };
    match text.chars().next() {
        Some(ch) if text[ch.len_utf8()..].starts_with('\'') => 1 + ch.len_utf8() + 1,
        _ => 1,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every function with a body in `code` (already blanked): its name and
/// its length in lines, `fn` line to closing brace line.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find("fn") {
        let at = from + pos;
        from = at + 2;
        let before_ok = at == 0 || !is_ident(b[at - 1]);
        let after_space = b.get(at + 2).is_some_and(|c| c.is_ascii_whitespace());
        if !before_ok || !after_space {
            continue;
        }
        let name_start = at + 2 + code[at + 2..].len() - code[at + 2..].trim_start().len();
        let name_len = b[name_start..].iter().take_while(|c| is_ident(**c)).count();
        if name_len == 0 {
            continue;
        }
        let name = code[name_start..name_start + name_len].to_owned();
        // The body's opening brace: the first `{` outside parentheses and
        // brackets, unless a `;` (a declaration without body) comes first.
        let mut depth = 0i32;
        let mut open = None;
        for (k, c) in b.iter().enumerate().skip(name_start) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    open = Some(k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0i32;
        let mut close = None;
        for (k, c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => braces += 1,
                b'}' => {
                    braces -= 1;
                    if braces == 0 {
                        close = Some(k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { continue };
        let start = line_of(at);
        found.push((name, start, line_of(close) - start + 1));
    }
    found
}

/// Files declared only for tests: `#[cfg(test)] mod x;` in their parent.
fn test_only_files(files: &[PathBuf]) -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let code = blank_non_code(&text);
        let lines: Vec<&str> = code.lines().map(str::trim).collect();
        // Where the children of this file live.
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let dir = match stem {
            "mod" | "lib" | "main" => file.parent().map(Path::to_path_buf),
            _ => file.parent().map(|p| p.join(stem)),
        };
        let Some(dir) = dir else { continue };
        for pair in lines.windows(2) {
            let declared = pair[1]
                .strip_prefix("mod ")
                .or_else(|| pair[1].strip_prefix("pub mod "))
                .and_then(|m| m.strip_suffix(';'));
            if let (true, Some(name)) = (pair[0] == "#[cfg(test)]", declared) {
                out.insert(dir.join(format!("{}.rs", name.trim())));
                out.insert(dir.join(name.trim()).join("mod.rs"));
            }
        }
    }
    out
}

fn exempt(rel: &Path, test_only: bool) -> bool {
    test_only
        || rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel.components().any(|c| c.as_os_str() == "tests")
}

/// Everything over a limit, allowed or not: (path, function or FILE, lines).
fn over_limits(root: &Path) -> Vec<(String, String, usize)> {
    let mut files = Vec::new();
    for dir in ["src", "codec/src", "bridges/src", "sluice-bench/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let test_only = test_only_files(&files);
    let mut out = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root).unwrap_or(file);
        if exempt(rel, test_only.contains(file)) {
            continue;
        }
        let shown = rel.display().to_string();
        let text = std::fs::read_to_string(file).expect("read source file");
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            out.push((shown.clone(), FILE.to_owned(), lines));
        }
        for (name, _, len) in functions(&blank_non_code(&text)) {
            if len > MAX_FN_LINES {
                out.push((shown.clone(), name, len));
            }
        }
    }
    out
}

#[test]
fn files_and_functions_stay_under_the_limits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = BTreeSet::new();
    let mut errors = Vec::new();
    for (path, item, lines) in over_limits(root) {
        match ALLOWED.iter().position(|(p, i, _)| *p == path && *i == item) {
            Some(k) => {
                used.insert(k);
            }
            None if item == FILE => errors.push(format!(
                "{path}: {lines} lines, over {MAX_FILE_LINES}: split it by concept (unit tests can move to a sibling tests.rs)"
            )),
            None => errors.push(format!(
                "{path}: fn {item} has {lines} lines, over {MAX_FN_LINES}: split it into named steps"
            )),
        }
    }
    for (k, (path, item, why)) in ALLOWED.iter().enumerate() {
        if !used.contains(&k) {
            errors.push(format!(
                "allow-list entry ({path}, {item}) is under the limit now: delete it from ALLOWED in tests/size_limits.rs ({why})"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "size limits broken:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_scan_ignores_braces_in_comments_strings_and_characters() {
    let src = r##"
fn short() {
    let a = "}}}"; // }
    let b = '}';
    let c = r#"{"#;
    /* } /* nested } */ } */
}
trait T {
    fn declared(&self) -> Option<[u8; 2]>;
}
fn with_lifetime<'a>(x: &'a str) -> &'a str {
    let _escaped = '\'';
    let _brace = '{';
    x
}
"##;
    let fns: Vec<(String, usize, usize)> = functions(&blank_non_code(src));
    assert_eq!(
        fns,
        vec![
            ("short".to_owned(), 2, 6),
            ("with_lifetime".to_owned(), 11, 5),
        ]
    );
}

#[test]
fn test_only_modules_are_found_from_their_parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parent = dir.path().join("thing.rs");
    std::fs::write(&parent, "mod real;\n#[cfg(test)]\nmod checks;\n").expect("write");
    let found = test_only_files(&[parent]);
    assert!(found.contains(&dir.path().join("thing/checks.rs")));
    assert!(!found.contains(&dir.path().join("thing/real.rs")));
}
