//! What every AWS Backup operation does alike over `restJson1`: a request body that must be a
//! JSON object, a page of rows with its `NextToken`, epoch-second timestamps in bodies, and
//! errors named by the `X-Amzn-Errortype` header with a `{"Code", "Message"}` body.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::basics::{ApiError, epoch_seconds};
use super::reply::Reply;

/// A request body that must be a JSON object.
pub(crate) fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::new(
            "InvalidRequestException",
            "the request body is not a JSON object",
        )),
    }
}

/// A List* answer: the page's rows under `key`, and the token of the next page if any.
pub(crate) fn page(key: &str, rows: Vec<Value>, next: Option<String>) -> Value {
    let mut body = json!({ key: rows });
    if let Some(next) = next {
        body["NextToken"] = json!(next);
    }
    body
}

/// A date as restJson1 bodies carry it: epoch seconds.
pub(crate) fn seconds(date: DateTime<Utc>) -> f64 {
    epoch_seconds(date.timestamp_millis())
}

/// A restJson1 error: the status, `X-Amzn-Errortype`, and a `{"Code", "Message"}` body.
pub(crate) fn error(e: &ApiError) -> Reply {
    let status = match e.code {
        "ResourceNotFoundException" | "UnknownOperationException" => 404,
        "AccessDeniedException" => 403,
        "ThrottlingException" => 429,
        "ServiceUnavailableException" => 503,
        _ => 400,
    };
    Reply::json(status, &json!({ "Code": e.code, "Message": e.message })).error_type(e.code)
}
