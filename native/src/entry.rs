//! Each checked row's join entry, encoded as the join table stores a prediction waiting for
//! its label (`detectors.join`): the JSON list ``[t, model, version, prediction, scores,
//! segment]``.
//!
//! Building these lists in Python and encoding them took more of a worker's time than the
//! parse (`bench/README.md`); here they come out of the parse, on its threads. They hold the
//! values the columns hold (a float prediction column as floats, other columns as sent), so
//! they decode to what `LabelJoiner.add_prediction_columns` would have stored.

use std::io::Write;

use crate::check::{Checked, Column};
use crate::json::{Json, Object};

/// Every row's entry, one after another in ``bytes``; row ``i`` ends at ``ends[i]``.
#[derive(Default)]
pub(crate) struct Entries {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ends: Vec<usize>,
}

fn text(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(&mut *out, value).expect("a str always encodes");
}

fn float(out: &mut Vec<u8>, value: f64) {
    // The checks let only finite floats through; the shortest text that reads back the same.
    serde_json::to_writer(&mut *out, &value).expect("a finite float always encodes");
}

/// A scalar the checks let into a column (`check::column`): null, a bool, an int, a float or
/// a string.
fn scalar(out: &mut Vec<u8>, value: &Json<'_>) {
    match value {
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Int(n) => write!(out, "{n}").expect("writing to a Vec cannot fail"),
        Json::Float(v) => float(out, *v),
        Json::Str(s) => text(out, s),
        _ => out.extend_from_slice(b"null"),
    }
}

fn prediction(out: &mut Vec<u8>, column: &Column<'_, '_>, row: usize) {
    match column {
        Column::Floats(values, _) => float(out, values[row]),
        Column::Values(values) => scalar(out, values[row]),
    }
}

fn segment(out: &mut Vec<u8>, segment: Option<&Object<'_>>) {
    let Some(pairs) = segment else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        text(out, key);
        out.push(b':');
        text(out, value.as_str().unwrap_or(""));
    }
    out.push(b'}');
}

pub(crate) fn pending_entries(checked: &Checked<'_, '_>) -> Entries {
    let rows = checked.ids.len();
    // What every row repeats: `,"model","version",` and the score classes' keys.
    let mut head = vec![b','];
    text(&mut head, checked.model);
    head.push(b',');
    match checked.version {
        Some(version) => text(&mut head, version),
        None => head.extend_from_slice(b"null"),
    }
    head.push(b',');
    let classes: Vec<Vec<u8>> = checked.scores.as_ref().map_or_else(Vec::new, |scores| {
        scores
            .iter()
            .map(|(class, _)| {
                let mut key = Vec::new();
                text(&mut key, class);
                key.push(b':');
                key
            })
            .collect()
    });
    let mut bytes = Vec::with_capacity(rows * (head.len() + 48 + 24 * classes.len()));
    let mut ends = Vec::with_capacity(rows);
    for row in 0..rows {
        bytes.push(b'[');
        write!(bytes, "{}", checked.times[row]).expect("writing to a Vec cannot fail");
        bytes.extend_from_slice(&head);
        prediction(&mut bytes, &checked.prediction, row);
        bytes.push(b',');
        match &checked.scores {
            None => bytes.extend_from_slice(b"null"),
            Some(scores) => {
                bytes.push(b'{');
                for (i, ((_, values), key)) in scores.iter().zip(&classes).enumerate() {
                    if i > 0 {
                        bytes.push(b',');
                    }
                    bytes.extend_from_slice(key);
                    float(&mut bytes, values[row]);
                }
                bytes.push(b'}');
            }
        }
        bytes.push(b',');
        segment(
            &mut bytes,
            checked.segments.as_ref().and_then(|rows| rows[row]),
        );
        bytes.push(b']');
        ends.push(bytes.len());
    }
    Entries { bytes, ends }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;

    fn entries_of(envelope: &str) -> Vec<String> {
        let data: Json<'_> = serde_json::from_str(envelope).unwrap();
        let checked = check(&data).expect("a valid envelope");
        let Entries { bytes, ends } = pending_entries(&checked);
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let one = String::from_utf8(bytes[start..end].to_vec()).unwrap();
                start = end;
                one
            })
            .collect()
    }

    #[test]
    fn rows_become_the_joins_lists() {
        let envelope = r#"{"batch_id": "b", "model": "m\"1", "model_version": "v", "predictions": [
            {"event_id": "e1", "model": "m\"1", "model_version": "v",
             "timestamp": "2024-05-01T00:00:00Z", "features": {"x": 1},
             "prediction": 1e16, "scores": {"a": 0.25, "b": 0.75}, "segment": {"k": "é"}},
            {"event_id": "e2", "model": "m\"1", "model_version": "v",
             "timestamp": "2024-05-01T00:00:01Z", "features": {"x": 2},
             "prediction": 0.1, "scores": {"a": 1.0, "b": 0.0}, "segment": null}]}"#;
        assert_eq!(
            entries_of(envelope),
            [
                r#"[1714521600000000,"m\"1","v",1e+16,{"a":0.25,"b":0.75},{"k":"é"}]"#,
                r#"[1714521601000000,"m\"1","v",0.1,{"a":1.0,"b":0.0},null]"#,
            ]
        );
    }

    #[test]
    fn values_stay_as_sent_and_nothing_missing_is_invented() {
        let envelope = r#"{"batch_id": "b", "model": "m", "predictions": [
            {"event_id": "e1", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
             "features": {}, "prediction": 3},
            {"event_id": "e2", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
             "features": {}, "prediction": "yes"},
            {"event_id": "e3", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
             "features": {}, "prediction": true}]}"#;
        assert_eq!(
            entries_of(envelope),
            [
                r#"[1714521600000000,"m",null,3,null,null]"#,
                r#"[1714521600000000,"m",null,"yes",null,null]"#,
                r#"[1714521600000000,"m",null,true,null,null]"#,
            ]
        );
    }
}
