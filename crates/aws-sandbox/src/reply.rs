//! An HTTP answer as every protocol handler builds it (status, JSON body, the error type
//! header), before the server turns it into a hyper response.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// An HTTP answer before it becomes a hyper response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub error_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub(crate) fn json(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            error_type: None,
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// An answer without a body (HTTP 204 for operations without output members).
    pub(crate) fn empty(status: u16) -> Self {
        Self {
            status,
            error_type: None,
            body: Vec::new(),
        }
    }

    /// Names the error in `X-Amzn-Errortype`, which both protocols' SDK parsers read first.
    pub(crate) fn error_type(mut self, code: &'static str) -> Self {
        self.error_type = Some(code);
        self
    }

    /// The hyper response: JSON, a fresh request id, the error type when there is one.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            headers.insert("x-amzn-requestid", id);
        }
        if let Some(code) = self.error_type {
            headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
        }
        response
    }
}
