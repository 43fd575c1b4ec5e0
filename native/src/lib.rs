//! driftline's native ingest: an SDK envelope of predictions, from JSON bytes to checked columns.
//!
//! `parse_envelope` is the native twin of the Python fast lane (`streams.ingest_columns`'
//! `_rows_of` and `streams.ingest_uniform.UniformRows.check`): it answers columns only for an
//! envelope it can vouch for in full (every row of one shape, every value valid under the v1
//! contract) and `None` for anything else, which the Python path then decides with its exact
//! words. It may say no to a valid envelope; it must never say yes to one pydantic rejects, nor
//! read a value differently (`tests/test_ingest_native.py` compares both on valid and
//! malformed envelopes).
//!
//! The JSON is parsed and checked without the GIL (the consumer thread fetches meanwhile);
//! only the output's Python objects are built with it.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyFloat, PyList, PyString, PyTuple};

mod json;

use json::{get, keys_unique, might_hold_int_minus_zero, Json, Object};

// The v1 contract's limits (schemas/fields.py) and field names (schemas/events.py);
// `limits()` and `fields()` hand them to Python, which refuses the module when they differ.
const MAX_ID_LENGTH: usize = 256;
const MAX_NAME_LENGTH: usize = 256;
const MAX_STRING_VALUE_LENGTH: usize = 1024;
const MAX_SEGMENT_VALUE_LENGTH: usize = 128;
const MAX_SEGMENT_KEYS: usize = 16;
const MAX_FEATURES: usize = 1_000;
const MAX_SCORES: usize = 1_000;
const MAX_BATCH_PREDICTIONS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 16 << 20;

const ENVELOPE_FIELDS: [&str; 5] = [
    "schema_version",
    "batch_id",
    "model",
    "model_version",
    "predictions",
];
const ROW_FIELDS: [&str; 9] = [
    "schema_version",
    "event_id",
    "model",
    "model_version",
    "timestamp",
    "features",
    "prediction",
    "scores",
    "segment",
];
const REQUIRED_ROW_FIELDS: [&str; 5] = ["event_id", "model", "timestamp", "features", "prediction"];

/// Characters as Python counts them (code points).
fn char_count(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

fn text<'b>(value: &'b Json<'_>, shortest: usize, limit: usize) -> Option<&'b str> {
    value
        .as_str()
        .filter(|s| (shortest..=limit).contains(&char_count(s)))
}

/// The JSON integer 1 (not 1.0, not true).
fn is_version_one(value: &Json<'_>) -> bool {
    matches!(value, Json::Int(1))
}

/// A checked column of scalars (`streams.ingest_uniform._values`).
enum Column<'b, 'a> {
    /// Every value a float, or null where `nulls` (its value 0.0).
    Floats(Vec<f64>, Option<Vec<u8>>),
    /// The values as sent (ints, floats, strings, booleans, nulls).
    Values(Vec<&'b Json<'a>>),
}

fn column<'b, 'a>(values: Vec<&'b Json<'a>>, nullable: bool) -> Option<Column<'b, 'a>> {
    let (mut null, mut float, mut other) = (false, false, false);
    for value in &values {
        match value {
            Json::Null => null = true,
            Json::Float(_) => float = true,
            Json::Bool(_) | Json::Int(_) => other = true,
            Json::Str(s) if char_count(s) <= MAX_STRING_VALUE_LENGTH => other = true,
            _ => return None, // arrays, objects, huge ints, long strings: the Python lanes'
        }
    }
    if null && !nullable {
        return None;
    }
    if float && !other {
        let mut nulls = if null {
            Some(vec![0u8; values.len()])
        } else {
            None
        };
        let mut out = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            match value {
                Json::Float(v) if v.is_finite() => out.push(*v),
                Json::Null => {
                    out.push(0.0);
                    if let Some(mask) = nulls.as_mut() {
                        mask[i] = 1;
                    }
                }
                _ => return None, // serde_json reads no NaN or infinity: checked all the same
            }
        }
        return Some(Column::Floats(out, nulls));
    }
    Some(Column::Values(values))
}

/// Epoch microseconds of an RFC 3339 time with a zone, as `streams.readers_columns.bulk_times`
/// reads it (same pattern, ASCII digits only); None for anything else.
fn epoch_us(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    let digits = |at: usize, n: usize| -> Option<i64> {
        let mut value = 0i64;
        for &c in b.get(at..at + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(c - b'0');
        }
        Some(value)
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || punctuation.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut at = 19;
    let mut micros = 0i64;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let n = at - start;
        if !(1..=6).contains(&n) {
            return None;
        }
        micros = digits(start, n)? * 10i64.pow((6 - n) as u32);
    }
    let zone = &b[at..];
    let offset_minutes = if zone == b"Z" {
        0
    } else if zone.len() == 6 && (zone[0] == b'+' || zone[0] == b'-') && zone[3] == b':' {
        let (hours, minutes) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        (if zone[0] == b'+' { 1 } else { -1 }) * (hours * 60 + minutes)
    } else {
        return None;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year == 0
        || !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000 + micros - offset_minutes * 60_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// An envelope every row of which is certainly a valid v1 PredictionEvent, as columns.
struct Checked<'b, 'a> {
    model: &'b str,
    version: Option<&'b str>,
    ids: Vec<&'b str>,
    times: Vec<i64>,
    features: Vec<(&'b str, Column<'b, 'a>)>,
    prediction: Column<'b, 'a>,
    scores: Option<Vec<(&'b str, Vec<f64>)>>,
    segments: Option<Vec<Option<&'b Object<'a>>>>,
}

/// Each object's values in the order of ``names`` (the first object's keys, unique), when it
/// has exactly those keys; None otherwise.
fn aligned<'b, 'a>(objects: &[&'b Object<'a>], names: &[&str]) -> Option<Vec<Vec<&'b Json<'a>>>> {
    let mut out = Vec::with_capacity(objects.len());
    for object in objects {
        if object.len() != names.len() {
            return None;
        }
        let in_order = object.iter().zip(names).all(|((key, _), name)| key == name);
        out.push(if in_order {
            object.iter().map(|(_, value)| value).collect()
        } else {
            // Same count and every name found: the same keys, none twice.
            names
                .iter()
                .map(|name| get(object, name))
                .collect::<Option<Vec<_>>>()?
        });
    }
    Some(out)
}

/// Column ``index`` of rows aligned by `aligned`.
fn pick<'b, 'a>(rows: &[Vec<&'b Json<'a>>], index: usize) -> Vec<&'b Json<'a>> {
    rows.iter().map(|row| row[index]).collect()
}

fn check<'b, 'a>(data: &'b Json<'a>) -> Option<Checked<'b, 'a>> {
    let envelope = data.as_object()?;
    if !keys_unique(envelope)
        || !envelope
            .iter()
            .all(|(key, _)| ENVELOPE_FIELDS.contains(&key.as_ref()))
        || !get(envelope, "schema_version").is_none_or(is_version_one)
    {
        return None;
    }
    let Json::Array(rows) = get(envelope, "predictions")? else {
        return None;
    };
    if !(1..=MAX_BATCH_PREDICTIONS).contains(&rows.len()) {
        return None;
    }
    text(get(envelope, "batch_id")?, 1, MAX_ID_LENGTH)?;
    let model = text(get(envelope, "model")?, 1, MAX_NAME_LENGTH)?;
    let version = match get(envelope, "model_version") {
        None | Some(Json::Null) => None,
        Some(value) => Some(text(value, 1, MAX_ID_LENGTH)?),
    };
    let rows: Vec<&Object<'a>> = rows.iter().map(Json::as_object).collect::<Option<_>>()?;
    let names: Vec<&str> = rows[0].iter().map(|(key, _)| key.as_ref()).collect();
    if !keys_unique(rows[0])
        || !names.iter().all(|name| ROW_FIELDS.contains(name))
        || !REQUIRED_ROW_FIELDS.iter().all(|name| names.contains(name))
    {
        return None;
    }
    let fields = aligned(&rows, &names)?;
    let at = |name: &str| names.iter().position(|n| *n == name);
    for row in &fields {
        // Every row of the envelope's model version and of schema version 1.
        if row[at("model")?].as_str() != Some(model) {
            return None;
        }
        let row_version = match at("model_version").map(|i| row[i]) {
            None | Some(Json::Null) => None,
            Some(Json::Str(s)) => Some(s.as_ref()),
            Some(_) => return None,
        };
        if row_version != version || !at("schema_version").is_none_or(|i| is_version_one(row[i])) {
            return None;
        }
    }
    let ids = pick(&fields, at("event_id")?)
        .into_iter()
        .map(|value| text(value, 1, MAX_ID_LENGTH))
        .collect::<Option<Vec<_>>>()?;
    let times = pick(&fields, at("timestamp")?)
        .into_iter()
        .map(|value| value.as_str().and_then(epoch_us))
        .collect::<Option<Vec<_>>>()?;
    let prediction = column(pick(&fields, at("prediction")?), false)?;
    let features = check_features(pick(&fields, at("features")?))?;
    let scores = match at("scores") {
        None => None,
        Some(i) => check_scores(pick(&fields, i))?,
    };
    let segments = match at("segment") {
        None => None,
        Some(i) => check_segments(pick(&fields, i))?,
    };
    Some(Checked {
        model,
        version,
        ids,
        times,
        features,
        prediction,
        scores,
        segments,
    })
}

#[allow(clippy::type_complexity)]
fn check_features<'b, 'a>(column_of: Vec<&'b Json<'a>>) -> Option<Vec<(&'b str, Column<'b, 'a>)>> {
    let tables = column_of
        .into_iter()
        .map(Json::as_object)
        .collect::<Option<Vec<_>>>()?;
    let names: Vec<&str> = tables[0].iter().map(|(key, _)| key.as_ref()).collect();
    if names.len() > MAX_FEATURES
        || !keys_unique(tables[0])
        || !names
            .iter()
            .all(|name| (1..=MAX_NAME_LENGTH).contains(&char_count(name)))
    {
        return None;
    }
    let rows = aligned(&tables, &names)?;
    names
        .into_iter()
        .enumerate()
        .map(|(index, name)| Some((name, column(pick(&rows, index), true)?)))
        .collect()
}

/// Class -> probabilities, when every row scores the same classes in the same order; the
/// outer None when no row has scores; the inner None (refused) for anything else.
#[allow(clippy::type_complexity)]
fn check_scores<'b>(column_of: Vec<&'b Json<'_>>) -> Option<Option<Vec<(&'b str, Vec<f64>)>>> {
    if column_of.iter().all(|value| matches!(value, Json::Null)) {
        return Some(None);
    }
    let tables = column_of
        .into_iter()
        .map(Json::as_object)
        .collect::<Option<Vec<_>>>()?;
    let classes: Vec<&str> = tables[0].iter().map(|(key, _)| key.as_ref()).collect();
    if classes.is_empty()
        || classes.len() > MAX_SCORES
        || !keys_unique(tables[0])
        || !classes
            .iter()
            .all(|name| (1..=MAX_NAME_LENGTH).contains(&char_count(name)))
        || !tables.iter().all(|table| {
            table.len() == classes.len() && table.iter().zip(&classes).all(|((k, _), c)| k == c)
        })
    {
        return None; // another order: the Python lanes keep each row's own order
    }
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(tables.len()); classes.len()];
    for table in &tables {
        for (probabilities, (_, value)) in columns.iter_mut().zip(table.iter()) {
            match value {
                // A float in [0, 1]: the JSON integers 0 and 1 are refused like any int.
                Json::Float(p) if (0.0..=1.0).contains(p) => probabilities.push(*p),
                _ => return None,
            }
        }
    }
    Some(Some(classes.into_iter().zip(columns).collect()))
}

/// Segment dicts (or nulls), the outer None when no row has one; the inner None: refused.
#[allow(clippy::type_complexity)]
fn check_segments<'b, 'a>(
    column_of: Vec<&'b Json<'a>>,
) -> Option<Option<Vec<Option<&'b Object<'a>>>>> {
    let mut out = Vec::with_capacity(column_of.len());
    for value in column_of {
        match value {
            Json::Null => out.push(None),
            Json::Object(segment) => {
                if segment.len() > MAX_SEGMENT_KEYS
                    || !keys_unique(segment)
                    || !segment.iter().all(|(key, value)| {
                        (1..=MAX_SEGMENT_VALUE_LENGTH).contains(&char_count(key))
                            && text(value, 0, MAX_SEGMENT_VALUE_LENGTH).is_some()
                    })
                {
                    return None;
                }
                out.push(Some(segment));
            }
            _ => return None,
        }
    }
    Some(if out.iter().all(Option::is_none) {
        None
    } else {
        Some(out)
    })
}

fn f64_bytes<'py>(py: Python<'py>, values: &[f64]) -> Bound<'py, PyByteArray> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    PyByteArray::new(py, &bytes)
}

fn scalar<'py, 'b>(
    py: Python<'py>,
    value: &'b Json<'_>,
    texts: &mut HashMap<&'b str, Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Json::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Json::Int(n) => n.into_pyobject(py)?.into_any(),
        Json::Float(v) => PyFloat::new(py, *v).into_any(),
        Json::Str(s) => {
            // Categorical columns repeat a few values: one str object each.
            if let Some(known) = texts.get(s.as_ref()) {
                known.clone()
            } else {
                let made = PyString::new(py, s).into_any();
                texts.insert(s.as_ref(), made.clone());
                made
            }
        }
        _ => py.None().into_bound(py), // null (`column` lets nothing else through)
    })
}

fn column_object<'py>(py: Python<'py>, column: &Column<'_, '_>) -> PyResult<Bound<'py, PyTuple>> {
    match column {
        Column::Floats(values, nulls) => {
            let nulls = match nulls {
                Some(mask) => PyByteArray::new(py, mask).into_any(),
                None => py.None().into_bound(py),
            };
            PyTuple::new(py, [f64_bytes(py, values).into_any(), nulls])
        }
        Column::Values(values) => {
            let mut texts = HashMap::new();
            let items = values
                .iter()
                .map(|value| scalar(py, value, &mut texts))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(
                py,
                [PyList::new(py, items)?.into_any(), py.None().into_bound(py)],
            )
        }
    }
}

/// ``parse_envelope(raw) -> tuple | None``: an SDK envelope's rows as columns.
///
/// The tuple: ``(model, model_version, event_ids, times, features, prediction, scores,
/// segments)``. ``times`` is a bytearray of native int64 epoch microseconds; ``features`` a
/// list of ``(name, (values, nulls))`` and ``prediction`` one ``(values, nulls)``, where
/// ``values`` is a bytearray of native float64 (``nulls``: a bytearray of 0/1, or None) or a
/// list of the values as sent (``nulls`` None); ``scores`` a list of ``(class, bytearray of
/// float64)`` or None; ``segments`` a list of dicts and Nones, or None.
/// None when the envelope is not certainly valid, or is a single event.
#[pyfunction]
fn parse_envelope<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
    if raw.is_empty() || raw.len() > MAX_BATCH_BYTES {
        return Ok(None);
    }
    let parsed: Option<Json<'_>> = py.detach(|| {
        (!might_hold_int_minus_zero(raw))
            .then(|| serde_json::from_slice(raw).ok())
            .flatten()
    });
    let Some(data) = parsed else { return Ok(None) };
    let Some(checked) = py.detach(|| check(&data)) else {
        return Ok(None);
    };
    let ids = PyList::new(py, checked.ids.iter().map(|id| PyString::new(py, id)))?;
    let times: Vec<u8> = checked.times.iter().flat_map(|t| t.to_ne_bytes()).collect();
    let features = checked
        .features
        .iter()
        .map(|(name, column)| {
            PyTuple::new(
                py,
                [
                    PyString::new(py, name).into_any(),
                    column_object(py, column)?.into_any(),
                ],
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    let scores = match &checked.scores {
        None => py.None().into_bound(py),
        Some(classes) => PyList::new(
            py,
            classes
                .iter()
                .map(|(class, values)| {
                    PyTuple::new(
                        py,
                        [
                            PyString::new(py, class).into_any(),
                            f64_bytes(py, values).into_any(),
                        ],
                    )
                })
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
    };
    let segments = match &checked.segments {
        None => py.None().into_bound(py),
        Some(rows) => {
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.push(match row {
                    None => py.None().into_bound(py),
                    Some(segment) => {
                        let dict = PyDict::new(py);
                        for (key, value) in segment.iter() {
                            dict.set_item(key.as_ref(), value.as_str().unwrap_or(""))?;
                        }
                        dict.into_any()
                    }
                });
            }
            PyList::new(py, items)?.into_any()
        }
    };
    let version = match checked.version {
        Some(v) => PyString::new(py, v).into_any(),
        None => py.None().into_bound(py),
    };
    let out = PyTuple::new(
        py,
        [
            PyString::new(py, checked.model).into_any(),
            version,
            ids.into_any(),
            PyByteArray::new(py, &times).into_any(),
            PyList::new(py, features)?.into_any(),
            column_object(py, &checked.prediction)?.into_any(),
            scores,
            segments,
        ],
    )?;
    Ok(Some(out))
}

/// The v1 limits this build checks, for Python to compare with `schemas.fields`.
#[pyfunction]
fn limits(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for (name, value) in [
        ("MAX_ID_LENGTH", MAX_ID_LENGTH),
        ("MAX_NAME_LENGTH", MAX_NAME_LENGTH),
        ("MAX_STRING_VALUE_LENGTH", MAX_STRING_VALUE_LENGTH),
        ("MAX_SEGMENT_VALUE_LENGTH", MAX_SEGMENT_VALUE_LENGTH),
        ("MAX_SEGMENT_KEYS", MAX_SEGMENT_KEYS),
        ("MAX_FEATURES", MAX_FEATURES),
        ("MAX_SCORES", MAX_SCORES),
        ("MAX_BATCH_PREDICTIONS", MAX_BATCH_PREDICTIONS),
        ("MAX_BATCH_BYTES", MAX_BATCH_BYTES),
    ] {
        out.set_item(name, value)?;
    }
    Ok(out)
}

/// The field names this build knows (envelope, row, required in a row), for Python to
/// compare with `schemas.events`' models.
#[pyfunction]
fn fields(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("envelope", ENVELOPE_FIELDS.to_vec())?;
    out.set_item("row", ROW_FIELDS.to_vec())?;
    out.set_item("required", REQUIRED_ROW_FIELDS.to_vec())?;
    Ok(out)
}

#[pymodule]
fn driftline_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(parse_envelope, module)?)?;
    module.add_function(wrap_pyfunction!(limits, module)?)?;
    module.add_function(wrap_pyfunction!(fields, module)?)?;
    Ok(())
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

    #[test]
    fn times_match_the_calendar() {
        assert_eq!(epoch_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            epoch_us("2024-05-01T00:00:01.5Z"),
            Some(1_714_521_601_500_000)
        );
        assert_eq!(
            epoch_us("2024-05-01T02:00:00+02:00"),
            Some(1_714_521_600_000_000)
        );
        assert_eq!(epoch_us("2024-02-30T00:00:00Z"), None);
        assert_eq!(epoch_us("2024-05-01T00:00:00.1234567Z"), None);
        assert_eq!(epoch_us("2024-05-01 00:00:00Z"), None);
        assert_eq!(epoch_us("0000-05-01T00:00:00Z"), None);
    }
}
