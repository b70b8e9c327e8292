//! A jq value to strict, compact JSON.
//!
//! jaq's own writer favours showing every value over producing valid JSON
//! (it prints `NaN`, byte strings as `b"..."`, non-string keys). A sink
//! needs valid JSON, so this writer maps those the way jq does where jq has
//! an answer: NaN -> `null`, +/-infinity -> +/-`1.7976931348623157e308`;
//! byte strings and invalid UTF-8 become strings with U+FFFD replacements;
//! a non-string object key is an error (jq cannot build one either).

use jaq_json::{Num, Val};

/// Deepest output we serialize. jq rules can build arbitrarily deep values
/// (`reduce range(1e6) as $i (0; [.])`); this bounds the writer's recursion.
/// It is larger than any decoded payload can be, so that wrapping a payload
/// in a few objects (`{data: .payload}`) never trips it.
pub(crate) const MAX_OUTPUT_DEPTH: usize = 512;

/// Appends `v` as compact JSON to `out`.
pub(crate) fn to_json(out: &mut Vec<u8>, v: &Val, depth_left: usize) -> Result<(), String> {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(n) => number(out, n),
        Val::TStr(s) | Val::BStr(s) => string(out, s),
        Val::Arr(items) => {
            let depth_left = descend(depth_left)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                to_json(out, item, depth_left)?;
            }
            out.push(b']');
        }
        Val::Obj(fields) => {
            let depth_left = descend(depth_left)?;
            out.push(b'{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Val::TStr(s) | Val::BStr(s) => string(out, s),
                    other => return Err(format!("object key {other} is not a string")),
                }
                out.push(b':');
                to_json(out, v, depth_left)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn descend(depth_left: usize) -> Result<usize, String> {
    depth_left
        .checked_sub(1)
        .ok_or_else(|| format!("output is nested deeper than {MAX_OUTPUT_DEPTH} levels"))
}

fn number(out: &mut Vec<u8>, n: &Num) {
    use std::io::Write;
    match n {
        Num::Float(f) if f.is_nan() => out.extend_from_slice(b"null"),
        Num::Float(f) if f.is_infinite() => {
            let max = if *f > 0.0 { f64::MAX } else { f64::MIN };
            let _ = write!(out, "{}", Num::Float(max));
        }
        // Kept as text to preserve precision; jaq only makes these from
        // number literals, but check rather than trust.
        Num::Dec(d) if !is_json_number(d) => number(out, &Num::from_dec_str(d)),
        // Int, BigInt and finite Float (ryu) print as valid JSON numbers.
        n => {
            let _ = write!(out, "{n}");
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_json_number(s: &str) -> bool {
    fn digits(s: &[u8]) -> (usize, &[u8]) {
        let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
        (n, &s[n..])
    }
    let s = s.as_bytes();
    let s = s.strip_prefix(b"-").unwrap_or(s);
    let s = match s {
        [b'0', rest @ ..] => rest,
        [b'1'..=b'9', ..] => digits(s).1,
        _ => return false,
    };
    let s = match s.strip_prefix(b".") {
        Some(frac) => match digits(frac) {
            (0, _) => return false,
            (_, rest) => rest,
        },
        None => s,
    };
    let s = match s {
        [b'e' | b'E', exp @ ..] => {
            let exp = exp
                .strip_prefix(b"+")
                .or_else(|| exp.strip_prefix(b"-"))
                .unwrap_or(exp);
            match digits(exp) {
                (0, _) => return false,
                (_, rest) => rest,
            }
        }
        s => s,
    };
    s.is_empty()
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    let s = String::from_utf8_lossy(s);
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &*s);
}

/// `v` as text for a template: strings as-is, `null` as nothing, anything
/// else as compact JSON.
pub(crate) fn to_text(v: &Val) -> String {
    match v {
        Val::Null => String::new(),
        Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
        v => {
            let mut out = Vec::new();
            match to_json(&mut out, v, MAX_OUTPUT_DEPTH) {
                Ok(()) => String::from_utf8(out).unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &Val) -> String {
        let mut out = Vec::new();
        to_json(&mut out, v, MAX_OUTPUT_DEPTH).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn non_finite_numbers_become_valid_json() {
        assert_eq!(json(&Val::Num(Num::Float(f64::NAN))), "null");
        assert_eq!(
            json(&Val::Num(Num::Float(f64::INFINITY))),
            "1.7976931348623157e308"
        );
        assert_eq!(
            json(&Val::Num(Num::Float(f64::NEG_INFINITY))),
            "-1.7976931348623157e308"
        );
    }

    #[test]
    fn json_number_grammar() {
        for ok in ["0", "-0", "12", "1.5", "-1.5e10", "1E+2", "0.0e-1"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "NaN", "inf", "1.5x", "0x10",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn strings_are_escaped_and_bytes_made_utf8() {
        assert_eq!(json(&Val::utf8_str("a\"b\n")), r#""a\"b\n""#);
        assert_eq!(json(&Val::byte_str(&b"\xffok"[..])), "\"\u{fffd}ok\"");
    }

    #[test]
    fn non_string_keys_are_rejected() {
        let obj = Val::obj([(Val::from(1isize), Val::Null)].into_iter().collect());
        let err = to_json(&mut Vec::new(), &obj, MAX_OUTPUT_DEPTH).unwrap_err();
        assert!(err.contains("not a string"), "{err}");
    }

    #[test]
    fn output_depth_is_bounded() {
        let mut v = Val::Null;
        for _ in 0..=MAX_OUTPUT_DEPTH {
            v = [v].into_iter().collect();
        }
        let err = to_json(&mut Vec::new(), &v, MAX_OUTPUT_DEPTH).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
    }
}
