//! Python `json.dumps` compatible serialisation.
//!
//! Plane signs webhook bodies produced by `json.dumps(payload)` with default settings, so a
//! faithful sender has to reproduce that byte layout: `", "` and `": "` separators,
//! `ensure_ascii=True` escapes and Python's `repr` for floats.

use serde_json::{Number, Value};
use std::fmt::Write as _;

/// Serialises `v` exactly like Python's `json.dumps(v)` with default arguments.
///
/// - separators are `", "` between items and `": "` after keys;
/// - every character outside printable ASCII is written as a lowercase `\uXXXX` escape
///   (characters above U+FFFF as a surrogate pair), like `ensure_ascii=True`;
/// - floats use Python's `repr` (`65535.0`, `1e-05`, `1e+16`);
/// - object keys keep their insertion order (this crate enables serde_json's `preserve_order`).
///
/// ```
/// use plane_fake::python_json_dumps;
/// let v = serde_json::json!({"name": "ünï ✓", "sort_order": 65535.0, "labels": []});
/// assert_eq!(
///     python_json_dumps(&v),
///     r#"{"name": "\u00fcn\u00ef \u2713", "sort_order": 65535.0, "labels": []}"#
/// );
/// ```
pub fn python_json_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, k);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    } else {
        // Only reachable with arbitrary_precision; keep serde_json's text.
        out.push_str(&n.to_string());
    }
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for exponents in
/// `-5 < e < 16`, otherwise `d.ddde+XX` with at least two exponent digits.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, like Python's repr.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-5 < exp && exp < 16) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp >= 0 {
        let int_len = usize::try_from(exp).unwrap_or(0) + 1;
        if digits.len() <= int_len {
            let zeros = "0".repeat(int_len - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            let (int_part, frac) = digits.split_at(int_len);
            format!("{sign}{int_part}.{frac}")
        }
    } else {
        let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_like_python_repr() {
        let cases = [
            (65535.0, "65535.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-4, "0.0001"),
            (1.5e-5, "1.5e-05"),
            (-2.5, "-2.5"),
            (123456789.125, "123456789.125"),
            (1.2345e100, "1.2345e+100"),
            (1795614128.1361065, "1795614128.1361065"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn strings_like_ensure_ascii() {
        let v = json!("a\"b\\c\n\u{1}\u{7f}é😀");
        assert_eq!(
            python_json_dumps(&v),
            r#""a\"b\\c\n\u0001\u007f\u00e9\ud83d\ude00""#
        );
    }

    #[test]
    fn separators_and_order() {
        let v = json!({"b": [1, 2, {"x": null}], "a": true});
        assert_eq!(
            python_json_dumps(&v),
            r#"{"b": [1, 2, {"x": null}], "a": true}"#
        );
    }
}
