//! driftline's native ingest: predictions, from JSON bytes to checked columns.
//!
//! `parse_envelopes` (SDK envelopes) and `parse_events` (a run of single-event messages) are
//! the native twin of the Python fast lane (`streams.ingest_columns`' `_rows_of` and
//! `streams.ingest_uniform.UniformRows.check`): they answer columns only for rows they can
//! vouch for in full (every row of a model version of one shape, every value valid under the
//! v1 contract) and `None` for anything else, which the Python path then decides with its
//! exact words. They may say no to valid messages; they must never say yes to one pydantic
//! rejects, nor read a value differently (`tests/test_ingest_native.py` compares both on valid
//! and malformed messages).
//!
//! The JSON is parsed and checked without the GIL (the consumer thread fetches meanwhile);
//! only the output's Python objects are built with it.

use std::collections::HashMap;
use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};

mod b64;
mod check;
mod dumps;
mod entry;
mod expiry;
mod journal;
mod json;
mod time;

use check::{
    check, check_events, Checked, Column, ENVELOPE_FIELDS, MAX_BATCH_BYTES, MAX_BATCH_PREDICTIONS,
    MAX_EVENT_BYTES, MAX_FEATURES, MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_SCORES, MAX_SEGMENT_KEYS,
    MAX_SEGMENT_VALUE_LENGTH, MAX_STRING_VALUE_LENGTH, REQUIRED_ROW_FIELDS, ROW_FIELDS,
};
use json::{might_hold_int_minus_zero, Json};

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

/// The prediction column: as `column_object`, except that ints alone (class ids) come as
/// ``bytes`` of native int64 (``nulls`` None) rather than a list of Python ints: the fold
/// reads them as numbers without an object per row, and the join gets the same ints back.
fn prediction_object<'py>(
    py: Python<'py>,
    column: &Column<'_, '_>,
) -> PyResult<Bound<'py, PyTuple>> {
    if let Column::Values(values) = column {
        let ints: Option<Vec<u8>> = values
            .iter()
            .map(|value| match value {
                Json::Int(n) => Some(n.to_ne_bytes()),
                _ => None,
            })
            .collect::<Option<Vec<[u8; 8]>>>()
            .map(|all| all.concat());
        if let Some(bytes) = ints.filter(|bytes| !bytes.is_empty()) {
            return PyTuple::new(
                py,
                [
                    PyBytes::new(py, &bytes).into_any(),
                    py.None().into_bound(py),
                ],
            );
        }
    }
    column_object(py, column)
}

/// Threads that parse a list of envelopes at most (`parse_envelopes`).
const MAX_PARSE_THREADS: usize = 4;

/// The machine's cores, asked once: `available_parallelism` reads the cgroup's CPU quota
/// files on every call (open, statx, read), ~10 % of a parse of ten envelopes.
fn parse_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Each of ``raws`` parsed into its slot of ``trees`` and checked, on up to
/// `MAX_PARSE_THREADS` threads (the machine's cores). One spawn per thread for both steps: a
/// thread checks the trees it parsed, which the caller keeps alive for the checked columns.
fn parse_and_check<'t, 'r>(
    raws: &[&'r [u8]],
    trees: &'t mut [Option<Json<'r>>],
) -> Vec<Option<Checked<'t, 'r>>> {
    fn step<'t, 'r>(
        raws: &[&'r [u8]],
        trees: &'t mut [Option<Json<'r>>],
    ) -> Vec<Option<Checked<'t, 'r>>> {
        for (tree, raw) in trees.iter_mut().zip(raws) {
            *tree = parse_within(raw, MAX_BATCH_BYTES);
        }
        let trees: &'t [Option<Json<'r>>] = trees;
        trees
            .iter()
            .map(|tree| tree.as_ref().and_then(check))
            .collect()
    }
    let threads = parse_cores().min(MAX_PARSE_THREADS).min(raws.len());
    if threads <= 1 {
        return step(raws, trees);
    }
    let chunk = raws.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = raws
            .chunks(chunk)
            .zip(trees.chunks_mut(chunk))
            .map(|(raws, trees)| scope.spawn(move || step(raws, trees)))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("an envelope parse thread panicked"))
            .collect()
    })
}

/// The JSON document of one message of at most ``limit`` bytes; None for anything the
/// Python lanes must read (not JSON, too large, a ``-0`` that may be Python's int).
fn parse_within(raw: &[u8], limit: usize) -> Option<Json<'_>> {
    if raw.is_empty() || raw.len() > limit || might_hold_int_minus_zero(raw) {
        return None;
    }
    serde_json::from_slice(raw).ok()
}

/// ``parse_envelopes(raws) -> list``: each SDK envelope's rows as columns, or None where it
/// is not certainly valid (also for a single event and a value that is not bytes). Parsed and
/// checked on the machine's cores without the GIL; only the columns' Python objects are built
/// on the caller's thread.
///
/// The tuple: ``(model, model_version, event_ids, times, features, prediction, scores,
/// segments)``. ``times`` is a bytearray of native int64 epoch microseconds; ``features`` a
/// list of ``(name, (values, nulls))`` and ``prediction`` one ``(values, nulls)``, where
/// ``values`` is a bytearray of native float64 (``nulls``: a bytearray of 0/1, or None) or a
/// list of the values as sent (``nulls`` None); ``scores`` a list of ``(class, bytearray of
/// float64)`` or None; ``segments`` a list of dicts and Nones, or None. A ``prediction`` of
/// ints alone comes as ``bytes`` of native int64 (`prediction_object`); ``entries`` each
/// row's join entry as the join table stores a waiting prediction (JSON bytes, `entry`).
#[pyfunction]
fn parse_envelopes<'py>(
    py: Python<'py>,
    raws: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let messages: Vec<Option<Bound<'py, PyBytes>>> = raws
        .iter()
        .map(|raw| raw.cast_into::<PyBytes>().ok())
        .collect();
    let slices: Vec<&[u8]> = messages
        .iter()
        .map(|bytes| bytes.as_ref().map_or(&b""[..], |b| b.as_bytes()))
        .collect();
    // One release of the GIL for both steps: taking it back can wait a switch interval
    // (5 ms) behind the event loop's thread when the parse runs on a helper thread.
    let mut parsed: Vec<Option<Json<'_>>> =
        std::iter::repeat_with(|| None).take(slices.len()).collect();
    let trees = parsed.as_mut_slice();
    let checked: Vec<Option<Checked<'_, '_>>> = py.detach(move || parse_and_check(&slices, trees));
    let mut out = Vec::with_capacity(checked.len());
    for one in &checked {
        out.push(match one {
            Some(columns) => columns_tuple(py, columns)?.into_any(),
            None => py.None().into_bound(py),
        });
    }
    // Freeing the documents' trees (a few allocations per row) was ~13 % of the call: not
    // while holding the GIL the event loop's thread waits for. (The checked columns borrow
    // from the trees and are a few allocations per envelope.)
    drop(checked);
    py.detach(move || drop(parsed));
    PyList::new(py, out)
}

/// The columns of checked rows as Python objects (see `parse_envelopes`).
fn columns_tuple<'py>(py: Python<'py>, checked: &Checked<'_, '_>) -> PyResult<Bound<'py, PyTuple>> {
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
    let mut entries = Vec::with_capacity(checked.entries.ends.len());
    let mut start = 0;
    for &end in &checked.entries.ends {
        entries.push(PyBytes::new(py, &checked.entries.bytes[start..end]));
        start = end;
    }
    PyTuple::new(
        py,
        [
            PyString::new(py, checked.model).into_any(),
            version,
            ids.into_any(),
            PyByteArray::new(py, &times).into_any(),
            PyList::new(py, features)?.into_any(),
            prediction_object(py, &checked.prediction)?.into_any(),
            scores,
            segments,
            PyList::new(py, entries)?.into_any(),
        ],
    )
}

/// ``parse_events(raws) -> list | None``: single events (one JSON document per message) as
/// columns, one ``(places, columns)`` per model version, where ``places`` is a bytearray of
/// native int64: each row's index in ``raws``, and ``columns`` is `parse_envelopes`' tuple.
/// None unless every message is certainly a valid single event: the Python lanes then decide
/// them all, so a refusal never splits the messages between the lanes.
#[pyfunction]
fn parse_events<'py>(
    py: Python<'py>,
    raws: &Bound<'py, PyList>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let mut messages = Vec::with_capacity(raws.len());
    for raw in raws.iter() {
        match raw.cast_into::<PyBytes>() {
            Ok(bytes) => messages.push(bytes),
            Err(_) => return Ok(None),
        }
    }
    let slices: Vec<&[u8]> = messages.iter().map(|bytes| bytes.as_bytes()).collect();
    // One release of the GIL for both steps (see `parse_envelopes`).
    let mut parsed: Option<Vec<Json<'_>>> = None;
    let parsed_slot = &mut parsed;
    let groups = py.detach(move || {
        *parsed_slot = slices
            .iter()
            .map(|raw| parse_within(raw, MAX_EVENT_BYTES))
            .collect();
        let events: &Option<Vec<Json<'_>>> = parsed_slot;
        events.as_ref().and_then(|events| check_events(events))
    });
    let Some(groups) = groups else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(groups.len());
    for (places, checked) in &groups {
        let places: Vec<u8> = places.iter().flat_map(|i| i.to_ne_bytes()).collect();
        out.push(PyTuple::new(
            py,
            [
                PyByteArray::new(py, &places).into_any(),
                columns_tuple(py, checked)?.into_any(),
            ],
        )?);
    }
    Ok(Some(PyList::new(py, out)?))
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
        ("MAX_EVENT_BYTES", MAX_EVENT_BYTES),
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

/// The join entries of ``values`` whose leading event time is before ``older_than`` (all
/// when None): their indices, times and whether each holds more than its time; None when any
/// entry is not in the joiner's integer layout (the caller then reads them in Python).
#[pyfunction]
#[pyo3(signature = (values, older_than=None))]
#[allow(clippy::type_complexity)]
fn entry_times(
    values: &Bound<'_, PyList>,
    older_than: Option<i64>,
) -> PyResult<Option<(Vec<usize>, Vec<i64>, Vec<bool>)>> {
    let (mut indices, mut times, mut more) = (Vec::new(), Vec::new(), Vec::new());
    for (index, value) in values.iter().enumerate() {
        // Anything but bytes (a bytearray, say) is left to the Python loop too.
        let Some((time, holds_more)) = value
            .cast::<PyBytes>()
            .ok()
            .and_then(|raw| expiry::leading_time(raw.as_bytes()))
        else {
            return Ok(None);
        };
        if older_than.is_none_or(|horizon| time < horizon) {
            indices.push(index);
            times.push(time);
            more.push(holds_more);
        }
    }
    Ok(Some((indices, times, more)))
}

/// ``value`` as ``json.dumps(value, separators=(",", ":")).encode()`` writes it (NaN and
/// infinities too), ~10x faster; None for what only ``json.dumps`` writes exactly (keys other
/// than str, subclasses, integers beyond 64 bits, lone surrogates, deep nesting).
#[pyfunction]
fn dumps_compact<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    dumps::dumps(value).map(|text| PyBytes::new(py, &text))
}

/// ``base64.b64encode(data).decode("ascii")``, the same text.
#[pyfunction]
fn b64encode(data: &[u8]) -> String {
    b64::encode(data)
}

/// The bytes of a ``str`` that ``b64encode`` could have written; None for anything else
/// (the caller's binascii decides, errors included).
#[pyfunction]
fn b64decode<'py>(py: Python<'py>, text: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    let text = text
        .cast_exact::<PyString>()
        .ok()?
        .to_str()
        .ok()?
        .as_bytes();
    // Decoded straight into the bytes object; refused text drops it (the error is never raised).
    PyBytes::new_with(py, b64::decoded_len(text)?, |out| {
        b64::decode_into(text, out).ok_or_else(|| PyValueError::new_err("not canonical base64"))
    })
    .ok()
}

/// ``streams.journal_table.encode_journal(changes)``'s bytes, its frame led by ``magic``;
/// None unless every key is ``bytes`` and every value ``bytes`` or None.
#[pyfunction]
fn encode_journal<'py>(
    py: Python<'py>,
    changes: &Bound<'py, PyDict>,
    magic: &[u8],
) -> Option<Bound<'py, PyBytes>> {
    let mut held = Vec::with_capacity(changes.len());
    for (key, value) in changes.iter() {
        let key = key.cast_into_exact::<PyBytes>().ok()?;
        let value = if value.is_none() {
            None
        } else {
            Some(value.cast_into_exact::<PyBytes>().ok()?)
        };
        held.push((key, value));
    }
    let slices: Vec<journal::Change<'_>> = held
        .iter()
        .map(|(key, value)| (key.as_bytes(), value.as_ref().map(|value| value.as_bytes())))
        .collect();
    let length = journal::framed_len(magic, &slices)?;
    PyBytes::new_with(py, length, |out| {
        journal::write_frame(magic, &slices, out);
        Ok(())
    })
    .ok()
}

#[pymodule]
fn driftline_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(parse_envelopes, module)?)?;
    module.add_function(wrap_pyfunction!(parse_events, module)?)?;
    module.add_function(wrap_pyfunction!(limits, module)?)?;
    module.add_function(wrap_pyfunction!(fields, module)?)?;
    module.add_function(wrap_pyfunction!(entry_times, module)?)?;
    module.add_function(wrap_pyfunction!(dumps_compact, module)?)?;
    module.add_function(wrap_pyfunction!(b64encode, module)?)?;
    module.add_function(wrap_pyfunction!(b64decode, module)?)?;
    module.add_function(wrap_pyfunction!(encode_journal, module)?)?;
    Ok(())
}
