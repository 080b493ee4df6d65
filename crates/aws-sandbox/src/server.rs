//! The HTTP server: accepts connections, tells the protocols apart (awsJson `X-Amz-Target`
//! prefixes, AWS Backup's REST paths, the admin prefix), counts and faults each request, and
//! hands it to its protocol's handler under the shared lock.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::basics::{ApiError, Millis, now_ms};
use super::faults::{Decision, Injected};
use super::reply::Reply;
use super::shared::Shared;
use super::{admin, backup, dynamodb, rest, sfn, tagging};

/// The largest request body read; StartExecution's 256 KiB input, JSON-escaped, fits.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long the accept loop pauses when accepting fails (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until cancelled; each is served on its own task.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                warn!(error = %e, "sandbox accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if shared.faults().drops_at_accept() {
            shared.inner().ledger.stats.faults_injected += 1;
            drop(stream);
            continue;
        }
        tasks.spawn(serve_connection(stream, shared.clone(), cancel.clone()));
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) {
    // Small request/response pairs: waiting for more bytes only adds latency.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(shared.clone(), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                debug!(error = %e, "sandbox connection ended");
            }
        }
        () = cancel.cancelled() => {}
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct Dropped;

/// Which protocol and operation a request is.
enum Call {
    Sfn(String),
    DynamoDb(String),
    Tagging(String),
    Backup(backup::Operation),
    Unknown,
}

impl Call {
    fn of(request: &Request<Incoming>) -> Self {
        let path = request.uri().path();
        if request.method() == Method::POST && path == "/" {
            let target = request
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok());
            if let Some(op) = target.and_then(|t| t.strip_prefix(dynamodb::TARGET_PREFIX)) {
                return Self::DynamoDb(op.to_string());
            }
            if let Some(op) = target.and_then(|t| t.strip_prefix(tagging::TARGET_PREFIX)) {
                return Self::Tagging(op.to_string());
            }
            if let Some(target) = target {
                let operation = target.strip_prefix(sfn::TARGET_PREFIX).unwrap_or(target);
                return Self::Sfn(operation.to_string());
            }
        }
        backup::Operation::route(request.method(), path).map_or(Self::Unknown, Self::Backup)
    }

    fn name(&self) -> &str {
        match self {
            Self::Sfn(operation) | Self::DynamoDb(operation) | Self::Tagging(operation) => {
                operation
            }
            Self::Backup(operation) => operation.name(),
            Self::Unknown => "Unknown",
        }
    }
}

/// One request as it arrived, read.
struct Arrived {
    call: Call,
    access_key: Option<String>,
    /// The region the request was signed for.
    region: Option<String>,
    query: Option<String>,
    body: Bytes,
    at: Millis,
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let at = now_ms();
    if let Some(admin_path) = request.uri().path().strip_prefix(admin::PREFIX) {
        let admin_path = admin_path.to_string();
        let method = request.method().clone();
        let reply = match read_body(request).await {
            Ok(body) => admin::handle(&shared, &method, &admin_path, &body),
            Err(reply) => reply,
        };
        return Ok(reply.into_response());
    }
    let call = Call::of(&request);
    let access_key = access_key(&request);
    let region = signed_region(&request);
    let query = request.uri().query().map(str::to_string);
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(reply) => return Ok(reply.into_response()),
    };
    let arrived = Arrived {
        call,
        access_key,
        region,
        query,
        body,
        at,
    };
    let decision = decide(&shared, &arrived);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    if let Some(injected) = decision.action {
        return inject(&shared, arrived, injected);
    }
    let reply = answer(&shared, arrived);
    Ok(reply.into_response())
}

/// Decides the faults for a request and counts it.
fn decide(shared: &Shared, arrived: &Arrived) -> Decision {
    let operation = arrived.call.name();
    let key = arrived.access_key.as_deref();
    let decision = shared.faults().decide(operation, key, rand::random::<f64>);
    shared.inner().ledger.count(
        operation,
        key,
        decision.action.is_some(),
        !decision.latency.is_zero(),
    );
    decision
}

/// Answers a request with the fault decided for it (a StartExecution is still recorded).
fn inject(
    shared: &Shared,
    arrived: Arrived,
    injected: Injected,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let operation = arrived.call.name();
    if operation == "StartExecution" {
        let outcome = match injected {
            Injected::Drop => "dropped",
            Injected::Throttle => "throttled",
            Injected::ServerError => "server_error",
        };
        let entry = sfn::start_time_of(&arrived.body, arrived.at, outcome, arrived.access_key);
        shared.inner().ledger.start_times.push(entry);
    }
    debug!(operation = %operation, fault = ?injected, "sandbox fault injected");
    match injected {
        Injected::Drop => Err(Dropped),
        Injected::Throttle => Ok(throttled(&arrived.call).into_response()),
        Injected::ServerError => Ok(server_error(&arrived.call).into_response()),
    }
}

/// Hands a request to its protocol's handler under the lock.
fn answer(shared: &Shared, arrived: Arrived) -> Reply {
    let now = now_ms();
    let mut guard = shared.inner();
    let inner = &mut *guard;
    let reply = match &arrived.call {
        Call::Sfn(operation) => {
            let received = sfn::Received {
                at_ms: arrived.at,
                access_key: arrived.access_key,
            };
            sfn::handle(
                operation,
                &arrived.body,
                &mut inner.world,
                &mut inner.ledger,
                received,
                now,
            )
        }
        Call::DynamoDb(operation) => {
            dynamodb::handle(operation, &arrived.body, &mut inner.dynamodb)
        }
        Call::Tagging(operation) => {
            let restored = inner.world.tagged_restored(now);
            tagging::handle(operation, &arrived.body, &inner.tagging, &restored)
        }
        Call::Backup(operation) => backup::handle(
            operation,
            arrived.query.as_deref(),
            &arrived.body,
            &mut inner.world,
            backup::Caller {
                region: arrived.region.as_deref(),
            },
            now,
        ),
        Call::Unknown => rest::error(&ApiError::new(
            "UnknownOperationException",
            "no such operation in the sandbox",
        )),
    };
    debug!(operation = %arrived.call.name(), status = reply.status, "sandbox answered");
    reply
}

/// The access key id of a SigV4-signed request:
/// `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …`.
fn access_key(request: &Request<Incoming>) -> Option<String> {
    let auth = request.headers().get("authorization")?.to_str().ok()?;
    let credential = auth.split_once("Credential=")?.1;
    let key = credential.split('/').next()?.trim();
    (!key.is_empty()).then(|| key.to_string())
}

/// The region of a SigV4-signed request's credential scope (`Credential=KEY/DATE/REGION/…`).
fn signed_region(request: &Request<Incoming>) -> Option<String> {
    let auth = request.headers().get("authorization")?.to_str().ok()?;
    let credential = auth.split_once("Credential=")?.1;
    let region = credential.split('/').nth(2)?.trim();
    (!region.is_empty()).then(|| region.to_string())
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(Reply::json(
            413,
            &json!({ "__type": "SerializationException", "message": e.to_string() }),
        )),
    }
}

fn throttled(call: &Call) -> Reply {
    let e = ApiError::new("ThrottlingException", "Rate exceeded");
    match call {
        Call::Sfn(_) => sfn::error(&e),
        Call::DynamoDb(_) => dynamodb::throttled(),
        Call::Tagging(_) => tagging::throttled(),
        _ => rest::error(&e),
    }
}

fn server_error(call: &Call) -> Reply {
    match call {
        Call::DynamoDb(_) => dynamodb::server_error(),
        Call::Tagging(_) => tagging::server_error(),
        Call::Sfn(_) => sfn::error(&ApiError::new(
            "InternalFailure",
            "The request processing has failed because of an unknown error",
        )),
        _ => rest::error(&ApiError::new(
            "ServiceUnavailableException",
            "The service is unavailable; try again later",
        )),
    }
}
