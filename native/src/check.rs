//! The checks of an envelope against the v1 contract, as `streams.ingest_uniform` makes them:
//! columns for an envelope every row of which is certainly valid, None for anything else.

use crate::entry::{pending_entries, Entries};
use crate::json::{get, keys_unique, Json, Object};
use crate::time::epoch_us;

// The v1 contract's limits (schemas/fields.py) and field names (schemas/events.py);
// `limits()` and `fields()` hand them to Python, which refuses the module when they differ.
pub(crate) const MAX_ID_LENGTH: usize = 256;
pub(crate) const MAX_NAME_LENGTH: usize = 256;
pub(crate) const MAX_STRING_VALUE_LENGTH: usize = 1024;
pub(crate) const MAX_SEGMENT_VALUE_LENGTH: usize = 128;
pub(crate) const MAX_SEGMENT_KEYS: usize = 16;
pub(crate) const MAX_FEATURES: usize = 1_000;
pub(crate) const MAX_SCORES: usize = 1_000;
pub(crate) const MAX_BATCH_PREDICTIONS: usize = 10_000;
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;
pub(crate) const MAX_EVENT_BYTES: usize = 1 << 20;

pub(crate) const ENVELOPE_FIELDS: [&str; 5] = [
    "schema_version",
    "batch_id",
    "model",
    "model_version",
    "predictions",
];
pub(crate) const ROW_FIELDS: [&str; 9] = [
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
pub(crate) const REQUIRED_ROW_FIELDS: [&str; 5] =
    ["event_id", "model", "timestamp", "features", "prediction"];

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
pub(crate) enum Column<'b, 'a> {
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

/// An envelope every row of which is certainly a valid v1 PredictionEvent, as columns.
pub(crate) struct Checked<'b, 'a> {
    pub(crate) model: &'b str,
    pub(crate) version: Option<&'b str>,
    pub(crate) ids: Vec<&'b str>,
    pub(crate) times: Vec<i64>,
    pub(crate) features: Vec<(&'b str, Column<'b, 'a>)>,
    pub(crate) prediction: Column<'b, 'a>,
    pub(crate) scores: Option<Vec<(&'b str, Vec<f64>)>>,
    pub(crate) segments: Option<Vec<Option<&'b Object<'a>>>>,
    /// Each row's join entry (`crate::entry`).
    pub(crate) entries: Entries,
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

pub(crate) fn check<'b, 'a>(data: &'b Json<'a>) -> Option<Checked<'b, 'a>> {
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
    check_rows(&rows, model, version)
}

/// Single events (one JSON document each) grouped by model version, each group as columns
/// with each row's place among ``events``; None unless every event is certainly valid.
#[allow(clippy::type_complexity)]
pub(crate) fn check_events<'b, 'a>(
    events: &'b [Json<'a>],
) -> Option<Vec<(Vec<i64>, Checked<'b, 'a>)>> {
    let mut groups: Vec<((&'b str, Option<&'b str>), Vec<i64>, Vec<&'b Object<'a>>)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let row = event.as_object()?;
        let model = text(get(row, "model")?, 1, MAX_NAME_LENGTH)?;
        let version = match get(row, "model_version") {
            None | Some(Json::Null) => None,
            Some(value) => Some(text(value, 1, MAX_ID_LENGTH)?),
        };
        // A few models per topic: a linear search beats hashing their names.
        let at = match groups
            .iter()
            .position(|(key, _, _)| *key == (model, version))
        {
            Some(at) => at,
            None => {
                groups.push(((model, version), Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        groups[at].1.push(index as i64);
        groups[at].2.push(row);
    }
    groups
        .into_iter()
        .map(|((model, version), places, rows)| Some((places, check_rows(&rows, model, version)?)))
        .collect()
}

/// Rows of one model version as columns, when every row is certainly valid (and of that
/// model version: an envelope's rows must carry its own).
fn check_rows<'b, 'a>(
    rows: &[&'b Object<'a>],
    model: &'b str,
    version: Option<&'b str>,
) -> Option<Checked<'b, 'a>> {
    let names: Vec<&str> = rows[0].iter().map(|(key, _)| key.as_ref()).collect();
    if !keys_unique(rows[0])
        || !names.iter().all(|name| ROW_FIELDS.contains(name))
        || !REQUIRED_ROW_FIELDS.iter().all(|name| names.contains(name))
    {
        return None;
    }
    let fields = aligned(rows, &names)?;
    let at = |name: &str| names.iter().position(|n| *n == name);
    // Where the fields of every row sit, looked up once (the first row is required to have
    // `model`, so the lookup cannot fail).
    let (model_at, version_at, schema_at) =
        (at("model")?, at("model_version"), at("schema_version"));
    for row in &fields {
        // Every row of the envelope's model version and of schema version 1.
        if row[model_at].as_str() != Some(model) {
            return None;
        }
        let row_version = match version_at.map(|i| row[i]) {
            None | Some(Json::Null) => None,
            Some(Json::Str(s)) => Some(s.as_ref()),
            Some(_) => return None,
        };
        if row_version != version || !schema_at.is_none_or(|i| is_version_one(row[i])) {
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
    let mut checked = Checked {
        model,
        version,
        ids,
        times,
        features,
        prediction,
        scores,
        segments,
        entries: Entries::default(),
    };
    checked.entries = pending_entries(&checked);
    Some(checked)
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
