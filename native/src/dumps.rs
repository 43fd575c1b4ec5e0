//! Compact JSON of Python values, byte for byte what
//! `json.dumps(value, separators=(",", ":"))` writes, NaN and infinities included.
//!
//! orjson is ~10x faster than the standard library but writes NaN and infinities as `null`,
//! so the worker's sketches states (empty sketches have infinite bounds) went through
//! `json.dumps`: ~5 % of a busy worker's event loop. This walks the same values in Rust.
//! It answers `None` for anything it does not write exactly as `json.dumps` would (keys
//! other than str, subclasses of int, float or str, integers beyond 64 bits, strings that
//! are not UTF-8, deep nesting): the caller then calls `json.dumps` itself.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Nesting deeper than this is left to `json.dumps` (which also finds cycles).
const MAX_DEPTH: usize = 64;

/// The JSON text of ``value`` as `json.dumps` (compact separators) writes it, or None.
pub fn dumps(value: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    write_value(value, &mut out, 0).then_some(out)
}

fn write_value(value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(text) = value.cast_exact::<PyString>() {
        return write_str(text, out);
    } else if let Ok(flag) = value.cast_exact::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if let Ok(number) = value.cast_exact::<PyFloat>() {
        write_float(number.value(), out);
    } else if value.is_exact_instance_of::<PyInt>() {
        let Ok(number) = value.extract::<i64>() else {
            return false; // beyond 64 bits
        };
        out.extend_from_slice(number.to_string().as_bytes());
    } else if let Ok(dict) = value.cast_exact::<PyDict>() {
        out.push(b'{');
        for (index, (key, item)) in dict.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let Ok(key) = key.cast_exact::<PyString>() else {
                return false; // json.dumps turns other keys into text its own way
            };
            if !write_str(key, out) {
                return false;
            }
            out.push(b':');
            if !write_value(&item, out, depth + 1) {
                return false;
            }
        }
        out.push(b'}');
    } else if let Ok(list) = value.cast_exact::<PyList>() {
        return write_items(list.iter(), out, depth);
    } else if let Ok(tuple) = value.cast_exact::<PyTuple>() {
        return write_items(tuple.iter(), out, depth);
    } else {
        return false;
    }
    true
}

fn write_items<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> bool {
    out.push(b'[');
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if !write_value(&item, out, depth + 1) {
            return false;
        }
    }
    out.push(b']');
    true
}

fn write_str(text: &Bound<'_, PyString>, out: &mut Vec<u8>) -> bool {
    let Ok(text) = text.to_str() else {
        return false; // lone surrogates: not UTF-8
    };
    escape_into(text, out);
    true
}

/// ``text`` as a JSON string the way `json.dumps` writes it (``ensure_ascii``): quotes,
/// backslashes and control characters escaped, every non-ASCII character as ``\uXXXX``
/// (a surrogate pair beyond the basic plane).
pub fn escape_into(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let plain = |byte: u8| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\';
    if bytes.iter().all(|&byte| plain(byte)) {
        out.extend_from_slice(bytes); // base64 samples and names: the usual case
    } else {
        for character in text.chars() {
            let code = character as u32;
            match character {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{08}' => out.extend_from_slice(b"\\b"),
                '\u{0c}' => out.extend_from_slice(b"\\f"),
                _ if (0x20..0x7f).contains(&code) => out.push(code as u8),
                _ if code < 0x10000 => push_unicode_escape(code, out),
                _ => {
                    let rest = code - 0x10000;
                    push_unicode_escape(0xd800 | (rest >> 10), out);
                    push_unicode_escape(0xdc00 | (rest & 0x3ff), out);
                }
            }
        }
    }
    out.push(b'"');
}

fn push_unicode_escape(unit: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
}

/// ``value`` as Python's ``float.__repr__`` writes it, with `json.dumps`' words for the
/// values JSON lacks (``NaN``, ``Infinity``, ``-Infinity``).
pub fn write_float(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
    } else {
        write_repr(value, out);
    }
}

/// Python's repr of a finite float: the shortest digits that read back to ``value``, the
/// closest of them (zmij, a Schubfach, picks the same digits as CPython's dtoa), in fixed
/// notation when the decimal point falls within 16 digits of them and ``d.ddde±XX``
/// otherwise (CPython's ``format_float_short``, mode 'r').
fn write_repr(value: f64, out: &mut Vec<u8>) {
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(value.abs()).as_bytes(); // "0.001", "1e-7", "1.5e16"
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&text[..at], parse_exponent(&text[at + 1..])),
        None => (text, 0),
    };
    // value = 0.DIGITS x 10^point, DIGITS without leading or trailing zeros
    let dot = mantissa
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(mantissa.len());
    let mut point = dot as i32 + exponent;
    let mut digits = [0u8; 32];
    let mut count = 0usize;
    for &byte in mantissa.iter().filter(|&&b| b != b'.') {
        if count == 0 && byte == b'0' {
            point -= 1;
        } else if count < digits.len() {
            digits[count] = byte;
            count += 1;
        }
    }
    while count > 0 && digits[count - 1] == b'0' {
        count -= 1;
    }
    if value.is_sign_negative() {
        out.push(b'-');
    }
    if count == 0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let digits = &digits[..count];
    let count = count as i32;
    if point <= -4 || point > 16 {
        out.push(digits[0]);
        if count > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let power = point - 1;
        let sign = if power < 0 { '-' } else { '+' };
        out.extend_from_slice(format!("e{sign}{:02}", power.abs()).as_bytes());
    } else if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend_from_slice(digits);
    } else if point >= count {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', (point - count) as usize));
        out.extend_from_slice(b".0");
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = digits
        .iter()
        .fold(0i32, |n, &b| n * 10 + i32::from(b - b'0'));
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_repr(value: f64) -> String {
        let mut out = Vec::new();
        write_float(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_read_as_python_writes_them() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (483.39680000000004, "483.39680000000004"),
            (274564663099778.12, "274564663099778.12"), // a tie of the last digit
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (value, text) in cases {
            assert_eq!(python_repr(value), text, "{value:e}");
        }
    }

    #[test]
    fn strings_escape_as_json_dumps_does() {
        let mut out = Vec::new();
        escape_into("a\"b\\c\n\u{1}é😀", &mut out);
        assert_eq!(out, b"\"a\\\"b\\\\c\\n\\u0001\\u00e9\\ud83d\\ude00\"");
    }
}
