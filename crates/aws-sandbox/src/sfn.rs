//! Step Functions over `awsJson1_0`: `POST /`, `X-Amz-Target: AWSStepFunctions.<Op>`,
//! camelCase JSON, epoch-second timestamps, errors as HTTP 400 `{"__type", "message"}`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::basics::{ApiError, Millis, epoch_seconds};
use super::reply::Reply;
use super::stats::{Ledger, StartTime};
use super::world::{ExecutionRecord, World};

/// The `X-Amz-Target` prefix of every Step Functions operation.
pub(crate) const TARGET_PREFIX: &str = "AWSStepFunctions.";
/// ListExecutions and GetExecutionHistory page size when `maxResults` is 0 or absent.
const DEFAULT_PAGE: usize = 100;
/// The largest `maxResults` Step Functions accepts.
const MAX_PAGE: u64 = 1000;

/// When and from whom a request arrived.
pub(crate) struct Received {
    /// Arrival, epoch milliseconds.
    pub at_ms: Millis,
    /// The access key id that signed it.
    pub access_key: Option<String>,
}

/// Answers one Step Functions operation.
pub(crate) fn handle(
    operation: &str,
    body: &[u8],
    world: &mut World,
    ledger: &mut Ledger,
    received: Received,
    now: Millis,
) -> Reply {
    let request = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            _ => {
                return error(&ApiError::new(
                    "SerializationException",
                    "the request body is not a JSON object",
                ));
            }
        }
    };
    let text = |member: &str| request.get(member).and_then(Value::as_str);
    let result = match operation {
        "StartExecution" => {
            return start_execution(&request, world, ledger, received, now);
        }
        "DescribeExecution" => world
            .describe_execution(text("executionArn").unwrap_or_default(), now)
            .map(|record| describe(&record)),
        "ListExecutions" => page_size(&request).and_then(|max| {
            world
                .list_executions(
                    text("stateMachineArn"),
                    text("statusFilter"),
                    max,
                    text("nextToken"),
                    now,
                )
                .map(|(records, next)| {
                    let items: Vec<Value> = records.iter().map(list_item).collect();
                    with_token(json!({ "executions": items }), "nextToken", next)
                })
        }),
        "GetExecutionHistory" => page_size(&request).and_then(|max| {
            world
                .execution_history(
                    text("executionArn").unwrap_or_default(),
                    max,
                    request
                        .get("reverseOrder")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    text("nextToken"),
                    now,
                )
                .map(|(events, next)| with_token(json!({ "events": events }), "nextToken", next))
        }),
        other => Err(ApiError {
            code: "UnknownOperationException",
            message: format!("the sandbox does not implement {other}"),
        }),
    };
    match result {
        Ok(body) => Reply::json(200, &body),
        Err(e) => error(&e),
    }
}

fn start_execution(
    request: &Map<String, Value>,
    world: &mut World,
    ledger: &mut Ledger,
    received: Received,
    now: Millis,
) -> Reply {
    let text = |member: &str| request.get(member).and_then(Value::as_str);
    let result = world.start_execution(text("stateMachineArn"), text("name"), text("input"), now);
    let outcome = match &result {
        Ok(started) if started.duplicate => {
            ledger.stats.start_execution_duplicates += 1;
            "duplicate"
        }
        Ok(_) => {
            ledger.stats.start_execution_accepted += 1;
            "accepted"
        }
        Err(e) if e.code == "ExecutionAlreadyExists" => {
            ledger.stats.already_exists += 1;
            "already_exists"
        }
        Err(_) => "rejected",
    };
    ledger
        .start_times
        .push(start_time(request, received, outcome));
    match result {
        Ok(started) => Reply::json(
            200,
            &json!({
                "executionArn": started.execution_arn,
                "startDate": epoch_seconds(started.start_ms),
            }),
        ),
        Err(e) => error(&e),
    }
}

/// The start-time entry of one StartExecution request, read from its raw body.
pub(crate) fn start_time_of(
    body: &[u8],
    received_ms: Millis,
    outcome: &'static str,
    access_key: Option<String>,
) -> StartTime {
    let request = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let received = Received {
        at_ms: received_ms,
        access_key,
    };
    start_time(&request, received, outcome)
}

fn start_time(
    request: &Map<String, Value>,
    received: Received,
    outcome: &'static str,
) -> StartTime {
    let scheduled_for = request
        .get("input")
        .and_then(Value::as_str)
        .and_then(|input| serde_json::from_str::<Value>(input).ok())
        .and_then(|input| input.get("ScheduledFor")?.as_str().map(str::to_string));
    StartTime {
        name: request
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        input_scheduled_for: scheduled_for,
        received_at_ms: received.at_ms,
        outcome,
        access_key: received.access_key,
    }
}

fn page_size(request: &Map<String, Value>) -> Result<usize, ApiError> {
    match request.get("maxResults").and_then(Value::as_u64) {
        None | Some(0) => Ok(DEFAULT_PAGE),
        Some(n) if n <= MAX_PAGE => Ok(n as usize),
        Some(n) => Err(ApiError {
            code: "ValidationException",
            message: format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy \
                 constraint: Member must have value less than or equal to {MAX_PAGE}"
            ),
        }),
    }
}

fn with_token(mut body: Value, member: &str, token: Option<String>) -> Value {
    if let Some(token) = token {
        body[member] = json!(token);
    }
    body
}

fn seconds(date: DateTime<Utc>) -> f64 {
    epoch_seconds(date.timestamp_millis())
}

fn list_item(record: &ExecutionRecord) -> Value {
    let mut item = json!({
        "executionArn": record.arn,
        "stateMachineArn": record.state_machine_arn,
        "name": record.name,
        "status": record.status.as_str(),
        "startDate": seconds(record.start_date),
    });
    if let Some(stop) = record.stop_date {
        item["stopDate"] = json!(seconds(stop));
    }
    item
}

fn describe(record: &ExecutionRecord) -> Value {
    let mut body = list_item(record);
    body["input"] = json!(record.input);
    body["inputDetails"] = json!({ "included": true });
    if let Some(output) = &record.output {
        body["output"] = json!(output);
        body["outputDetails"] = json!({ "included": true });
    }
    if let Some(error) = &record.error {
        body["error"] = json!(error);
    }
    if let Some(cause) = &record.cause {
        body["cause"] = json!(cause);
    }
    body
}

/// An awsJson1_0 error: HTTP 400 (500 for server faults) with `__type` and `message`.
pub(crate) fn error(e: &ApiError) -> Reply {
    let status = match e.code {
        "InternalFailure" => 500,
        "ServiceUnavailable" => 503,
        _ => 400,
    };
    Reply::json(status, &json!({ "__type": e.code, "message": e.message })).error_type(e.code)
}
