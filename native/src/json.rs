//! A JSON document as a tree that borrows its strings and keeps object keys in order, as
//! written (duplicates included: the checks refuse them), without hashing any key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

pub type Object<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

#[derive(Debug)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer that fits 64 signed bits.
    Int(i64),
    Float(f64),
    /// An integer beyond 64 signed bits, or a float that may be one: serde_json reads one from
    /// -9.2e18 down as a float, Python as an int. The checks refuse it wherever it is, so the
    /// Python lanes read such a document. (``-0``, an int to Python, a float to serde_json,
    /// is caught before: `might_hold_int_minus_zero`.)
    Ambiguous,
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

impl<'a> Json<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(pairs) => Some(pairs),
            _ => None,
        }
    }
}

/// The value of ``name`` in an object (a linear scan: objects here have a few keys).
pub fn get<'b, 'a>(object: &'b Object<'a>, name: &str) -> Option<&'b Json<'a>> {
    object
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// No key twice (orjson keeps the last of duplicates, pydantic too: refusing is simpler).
pub fn keys_unique(object: &Object<'_>) -> bool {
    if object.len() <= 32 {
        return object
            .iter()
            .enumerate()
            .all(|(i, (key, _))| object[..i].iter().all(|(other, _)| other != key));
    }
    let mut seen = std::collections::HashSet::with_capacity(object.len());
    object.iter().all(|(key, _)| seen.insert(key.as_ref()))
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Json<'de>, E> {
        Ok(i64::try_from(value).map_or(Json::Ambiguous, Json::Int))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Json<'de>, E> {
        Ok(if value.abs() >= 9.2e18 {
            Json::Ambiguous
        } else {
            Json::Float(value)
        })
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            pairs.push((key, map.next_value()?));
        }
        Ok(Json::Object(pairs))
    }
}

/// An object key, borrowed from the document where it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(value.to_owned())))
    }
}

/// Could the document hold the integer ``-0`` (Python: the int 0; serde_json: the float -0.0)?
/// A ``-0`` outside strings not followed by a digit, ``.``, ``e`` or ``E``. Strings are
/// skipped (ids such as ``"m-0"``); a document that is not JSON may answer either way.
pub fn might_hold_int_minus_zero(raw: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'"', b'-', &raw[at..]) {
        at += found;
        if raw[at] == b'-' {
            if raw.get(at + 1) == Some(&b'0')
                && !matches!(raw.get(at + 2), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
            {
                return true;
            }
            at += 1;
            continue;
        }
        // A string: skip to its closing quote, past escaped characters.
        at += 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &raw[at..]) {
                None => return false,
                Some(found) if raw[at + found] == b'\\' => at += found + 2,
                Some(found) => {
                    at += found + 1;
                    break;
                }
            }
            if at >= raw.len() {
                return false;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_python_reads_otherwise_are_ambiguous() {
        fn read(text: &str) -> Json<'_> {
            serde_json::from_str(text).unwrap()
        }
        for text in ["-9223372036854775809", "9223372036854775808", "1e19"] {
            assert!(matches!(read(text), Json::Ambiguous), "{text}");
        }
        assert!(matches!(read("-9223372036854775808"), Json::Int(i64::MIN)));
        assert!(matches!(read("-0.0"), Json::Float(v) if v == 0.0 && v.is_sign_negative()));
        assert!(matches!(read("-1e18"), Json::Float(_)));
    }

    #[test]
    fn an_int_minus_zero_is_found() {
        assert!(might_hold_int_minus_zero(b"[-0]"));
        assert!(might_hold_int_minus_zero(b"{\"x\":-0,\"y\":1}"));
        assert!(!might_hold_int_minus_zero(
            b"[-0.0,-0e1,\"2024-05-01T00:00:00-05:00\"]"
        ));
        assert!(might_hold_int_minus_zero(br#"["a\"-0",-0]"#));
        assert!(!might_hold_int_minus_zero(br#"["m-0","a\"-0\\",1]"#));
    }
}
