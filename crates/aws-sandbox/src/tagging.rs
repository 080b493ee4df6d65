//! The Resource Groups Tagging API's `GetResources` over `awsJson1_1`: `POST /`,
//! `X-Amz-Target: ResourceGroupsTaggingAPI_20170126.GetResources`, over a set of EC2 instances
//! with tags that tests change through `/_sandbox/instances`.
//!
//! `TagFilters` (at most 50, each with at most 20 values; a resource must match every filter,
//! a filter with any of its values, or any value when it lists none), `ResourceTypeFilters`
//! (`ec2:instance` or `ec2`; another type matches nothing here), `ResourcesPerPage` (1-100,
//! default 100), `PaginationToken` (opaque; `""` on the last page). Errors are HTTP 400
//! `{"__type": Code, "Message"}`: `InvalidParameterException`, `PaginationTokenExpiredException`,
//! `ThrottledException` (fault injection), `AccessDeniedException` (when denied); 500
//! `InternalServiceException`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::reply::Reply;

/// The `X-Amz-Target` prefix of every Resource Groups Tagging API operation.
pub(crate) const TARGET_PREFIX: &str = "ResourceGroupsTaggingAPI_20170126.";

/// GetResources' largest and default `ResourcesPerPage`.
const MAX_PAGE: u64 = 100;
/// Most `TagFilters`, and most values in one.
const MAX_FILTERS: usize = 50;
const MAX_VALUES: usize = 20;
/// Marks our pagination tokens.
const TOKEN_PREFIX: &str = "sbx1-";

/// An instance as the admin surface sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaggedInstance {
    /// The instance ARN (`arn:aws:ec2:REGION:ACCOUNT:instance/i-…`).
    pub arn: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// The tagged instances, by ARN (the order pages follow), and the access switch.
#[derive(Debug, Default)]
pub(crate) struct Tagging {
    instances: BTreeMap<String, BTreeMap<String, String>>,
    denied: bool,
}

impl Tagging {
    /// Adds or replaces instances (their tags too).
    pub(crate) fn put(&mut self, instances: Vec<TaggedInstance>) {
        for i in instances {
            self.instances.insert(i.arn, i.tags);
        }
    }

    /// Removes instances by ARN or instance id; returns how many went.
    pub(crate) fn remove(&mut self, which: &[String]) -> usize {
        let before = self.instances.len();
        self.instances.retain(|arn, _| {
            !which
                .iter()
                .any(|w| arn == w || arn.ends_with(&format!("/{w}")))
        });
        before - self.instances.len()
    }

    /// Every instance.
    pub(crate) fn list(&self) -> Vec<TaggedInstance> {
        self.instances
            .iter()
            .map(|(arn, tags)| TaggedInstance {
                arn: arn.clone(),
                tags: tags.clone(),
            })
            .collect()
    }

    /// From now on GetResources answers AccessDeniedException (or works again).
    pub(crate) fn set_denied(&mut self, denied: bool) {
        self.denied = denied;
    }
}

struct TagError {
    status: u16,
    code: &'static str,
    message: String,
}

fn invalid(message: impl Into<String>) -> TagError {
    TagError {
        status: 400,
        code: "InvalidParameterException",
        message: message.into(),
    }
}

/// An error in this protocol's shape.
pub(crate) fn error(status: u16, code: &'static str, message: &str) -> Reply {
    Reply::json(status, &json!({ "__type": code, "Message": message })).error_type(code)
}

/// A throttled call.
pub(crate) fn throttled() -> Reply {
    error(400, "ThrottledException", "Rate exceeded")
}

/// A server fault.
pub(crate) fn server_error() -> Reply {
    error(
        500,
        "InternalServiceException",
        "The request processing failed because of an unknown error, exception, or failure.",
    )
}

/// Instances the restore machine launched and tagged, not terminated: listed with the rest.
pub(crate) type Restored = [(String, BTreeMap<String, String>)];

/// Answers one operation.
pub(crate) fn handle(operation: &str, body: &[u8], state: &Tagging, restored: &Restored) -> Reply {
    let result = match operation {
        _ if state.denied => Err(TagError {
            status: 400,
            code: "AccessDeniedException",
            message: format!(
                "User: arn:aws:iam::123456789012:role/orchestrator is not authorized to perform: tag:{operation}"
            ),
        }),
        "GetResources" => get_resources(body, state, restored),
        _ => Err(TagError {
            status: 400,
            code: "UnknownOperationException",
            message: format!("the sandbox does not serve {operation}"),
        }),
    };
    match result {
        Ok(v) => Reply::json(200, &v),
        Err(e) => error(e.status, e.code, &e.message),
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// What a GetResources request asks for.
struct Query {
    per_page: u64,
    filters: Vec<(String, Vec<String>)>,
    instances_wanted: bool,
    after: Option<String>,
}

fn parse_filters(req: &Value) -> Result<Vec<(String, Vec<String>)>, TagError> {
    let mut filters = Vec::new();
    let Some(list) = req.get("TagFilters").and_then(Value::as_array) else {
        return Ok(filters);
    };
    if list.len() > MAX_FILTERS {
        return Err(invalid(format!(
            "TagFilters: at most {MAX_FILTERS} filters"
        )));
    }
    for f in list {
        let key = f
            .get("Key")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("TagFilters: every filter needs a Key"))?;
        let values: Vec<String> = f
            .get("Values")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if values.len() > MAX_VALUES {
            return Err(invalid(format!(
                "TagFilters: at most {MAX_VALUES} values for key {key}"
            )));
        }
        filters.push((key.to_string(), values));
    }
    Ok(filters)
}

fn parse_query(body: &[u8]) -> Result<Query, TagError> {
    let req: Value = serde_json::from_slice(body).map_err(|_| TagError {
        status: 400,
        code: "SerializationException",
        message: "the request body is not JSON".into(),
    })?;
    let per_page = match req.get("ResourcesPerPage") {
        None | Some(Value::Null) => MAX_PAGE,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(invalid(format!(
                    "ResourcesPerPage must be between 1 and {MAX_PAGE}"
                )));
            }
        },
    };
    let filters = parse_filters(&req)?;
    let types: Vec<&str> = req
        .get("ResourceTypeFilters")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let instances_wanted =
        types.is_empty() || types.iter().any(|t| *t == "ec2:instance" || *t == "ec2");
    let after = match req.get("PaginationToken").and_then(Value::as_str) {
        None | Some("") => None,
        Some(t) => Some(
            t.strip_prefix(TOKEN_PREFIX)
                .and_then(unhex)
                .ok_or_else(|| TagError {
                    status: 400,
                    code: "PaginationTokenExpiredException",
                    message: "the pagination token is invalid or expired".into(),
                })?,
        ),
    };
    Ok(Query {
        per_page,
        filters,
        instances_wanted,
        after,
    })
}

fn get_resources(body: &[u8], state: &Tagging, restored: &Restored) -> Result<Value, TagError> {
    let q = parse_query(body)?;
    let matches = |tags: &BTreeMap<String, String>| {
        q.filters.iter().all(|(k, values)| {
            tags.get(k)
                .is_some_and(|v| values.is_empty() || values.contains(v))
        })
    };
    let after = |arn: &str| q.after.as_deref().is_none_or(|a| arn > a);
    // The set instances (many) and the restored ones (few), merged in ARN order.
    let mut extra: Vec<(&String, &BTreeMap<String, String>)> = restored
        .iter()
        .map(|(a, t)| (a, t))
        .filter(|(a, _)| after(a) && !state.instances.contains_key(*a))
        .collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    let set = match &q.after {
        Some(a) => state
            .instances
            .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
        None => state.instances.range::<String, _>(..),
    };
    let mut merged = Merge {
        a: set.peekable(),
        b: extra.into_iter().peekable(),
    };
    let mut page = Vec::new();
    let mut last: Option<&String> = None;
    let mut more = false;
    if q.instances_wanted {
        for (arn, tags) in merged.by_ref().filter(|(_, t)| matches(t)) {
            if page.len() as u64 == q.per_page {
                more = true;
                break;
            }
            page.push(json!({
                "ResourceARN": arn,
                "Tags": tags.iter().map(|(k, v)| json!({ "Key": k, "Value": v })).collect::<Vec<_>>(),
            }));
            last = Some(arn);
        }
    }
    let token = match (more, last) {
        (true, Some(arn)) => format!("{TOKEN_PREFIX}{}", hex(arn)),
        _ => String::new(),
    };
    Ok(json!({ "PaginationToken": token, "ResourceTagMappingList": page }))
}

/// Two ARN-ordered lists as one.
struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'x, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (&'x String, &'x BTreeMap<String, String>)>,
    B: Iterator<Item = (&'x String, &'x BTreeMap<String, String>)>,
{
    type Item = (&'x String, &'x BTreeMap<String, String>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: u32) -> Tagging {
        let mut t = Tagging::default();
        t.put(
            (0..n)
                .map(|i| TaggedInstance {
                    arn: format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:017x}"),
                    tags: BTreeMap::from([
                        ("backup".to_string(), "daily".to_string()),
                        ("n".to_string(), (i % 2).to_string()),
                    ]),
                })
                .collect(),
        );
        t
    }

    fn call(state: &Tagging, body: Value) -> (u16, Value) {
        let r = handle("GetResources", body.to_string().as_bytes(), state, &[]);
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn pages_until_an_empty_token_with_and_filters() {
        let s = state(25);
        let mut token = String::new();
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let (status, v) = call(
                &s,
                json!({ "ResourcesPerPage": 10, "PaginationToken": token,
                        "TagFilters": [{ "Key": "backup", "Values": ["daily"] }, { "Key": "n", "Values": ["1"] }],
                        "ResourceTypeFilters": ["ec2:instance"] }),
            );
            assert_eq!(status, 200);
            pages += 1;
            seen += v["ResourceTagMappingList"].as_array().unwrap().len();
            token = v["PaginationToken"].as_str().unwrap().to_string();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!((seen, pages), (12, 2));
    }

    #[test]
    fn bad_requests_get_the_service_errors() {
        let s = state(1);
        let (status, v) = call(&s, json!({ "ResourcesPerPage": 101 }));
        assert_eq!(
            (status, v["__type"].as_str()),
            (400, Some("InvalidParameterException"))
        );
        let (_, v) = call(&s, json!({ "PaginationToken": "nonsense" }));
        assert_eq!(v["__type"], "PaginationTokenExpiredException");
        let (_, v) = call(&s, json!({ "ResourceTypeFilters": ["s3"] }));
        assert_eq!(v["ResourceTagMappingList"].as_array().unwrap().len(), 0);
        let mut denied = state(1);
        denied.set_denied(true);
        let (status, v) = call(&denied, json!({}));
        assert_eq!(
            (status, v["__type"].as_str()),
            (400, Some("AccessDeniedException"))
        );
    }
}
