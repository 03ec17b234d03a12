//! The seeds' JSON envelopes: `{"success": true, "data": …}` and
//! `{"success": false, "error": {"code", "message", "details"}}`.

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Error;
use crate::model::page::Page;

/// `{"success": true, "data": value}`.
pub fn ok<T: Serialize>(value: &T) -> Value {
    json!({ "success": true, "data": to_value(value) })
}

/// A page as seed 000 lists members: `data` is the rows, `pagination` sits beside it, and
/// `next_cursor` when there is a next page.
pub fn page<T: Serialize>(page: &Page<T>) -> Value {
    let mut out = json!({
        "success": true,
        "data": to_value(&page.data),
        "pagination": to_value(&page.pagination),
    });
    if let Some(cursor) = &page.next_cursor {
        out["next_cursor"] = Value::from(cursor.as_str());
    }
    out
}

/// [`ok`] as compact JSON text, written straight from the value (no [`Value`] in between):
/// what a host serving HTTP sends. The same JSON as `ok(value).to_string()`, keys in the
/// value's own order.
pub fn ok_text<T: Serialize>(value: &T) -> String {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        success: bool,
        data: &'a T,
    }
    to_text(&Envelope {
        success: true,
        data: value,
    })
}

/// [`page`] as compact JSON text, as [`ok_text`] is to [`ok`].
pub fn page_text<T: Serialize>(page: &Page<T>) -> String {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        success: bool,
        data: &'a [T],
        pagination: &'a crate::model::page::Pagination,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_cursor: Option<&'a str>,
    }
    to_text(&Envelope {
        success: true,
        data: &page.data,
        pagination: &page.pagination,
        next_cursor: page.next_cursor.as_deref(),
    })
}

/// `{"success": false, "error": {...}}`; `details` appears only when there are some.
pub fn error(err: &Error) -> Value {
    let mut body = json!({ "code": err.code(), "message": err.message() });
    let details = err.details();
    if !details.is_empty() {
        body["details"] = Value::Object(details.into_iter().collect());
    }
    json!({ "success": false, "error": body })
}

/// The envelope of a result, and the HTTP status a host would answer with.
pub fn respond<T: Serialize>(result: &Result<T, Error>) -> (u16, Value) {
    match result {
        Ok(value) => (200, ok(value)),
        Err(err) => (err.http_status(), error(err)),
    }
}

fn to_text<T: Serialize>(value: &T) -> String {
    // As `to_value`: model types serialize infallibly.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // Model types serialize infallibly (string keys, no non-finite floats).
    serde_json::to_value(value).unwrap_or(Value::Null)
}
