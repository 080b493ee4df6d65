//! A local AWS-compatible endpoint: Step Functions (`awsJson1_0`), AWS Backup (`restJson1`) and a
//! DynamoDB subset for the leader lease, on one HTTP port, for the real SDK clients in tests,
//! demos and benchmarks.
//!
//! It runs the project's one state machine (StartBackupJob, and the hook variant that waits for
//! the job), moves jobs CREATED → RUNNING → COMPLETED|FAILED by time, keeps Step Functions'
//! idempotency rules, and injects faults (throttling, 5xx, latency, dropped connections).
//! An admin surface under `/_sandbox/` reports what it saw and sets faults.
//!
//! - `input`: the execution input as the modelled state machine reads it (pure).
//! - `history`: GetExecutionHistory events of the modelled state machine (uses `input`).
//! - `world`: executions and jobs, states derived lazily from timestamps (no I/O, no clock;
//!   uses `input` and `history`, neither of which knows it).
//! - `sfn`, `backup`: the two wire protocols; `dynamodb`: the lease subset of DynamoDB
//!   (`awsJson1_0`, conditional PutItem/DeleteItem); `tagging`: the Resource Groups Tagging
//!   API's GetResources (`awsJson1_1`) over tagged EC2 instances.
//! - `faults`: what to inject into which request.
//! - `serve`: the command line of a served sandbox (this crate's binary, `orchestrator sandbox`).

mod backup;
mod copy;
mod dynamodb;
mod faults;
mod history;
mod input;
mod listing;
mod serve;
mod sfn;
mod ssm;
mod tagging;
mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use copy::{CopyJobRecord, CopyRule};
pub use faults::Faults;
pub use serve::{ServeArgs, serve_until_interrupted};
pub use ssm::{CommandRecord, CommandRule, HookSettings, JobTiming};
pub use tagging::TaggedInstance;
pub use world::{ExecutionRecord, ExecutionStatus, JobRecord, JobState};

use faults::{FaultsJson, Injected};
use world::{World, WorldConfig};

/// Epoch milliseconds, the sandbox's only notion of time.
pub(crate) type Millis = i64;

/// The largest request body read; StartExecution's 256 KiB input, JSON-escaped, fits.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Where the admin surface lives; no AWS path starts with it.
const ADMIN_PREFIX: &str = "/_sandbox/";
/// How long the accept loop pauses when accepting fails (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the sandbox simulates, and how fast.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The account in the ARNs it mints.
    pub account_id: String,
    /// The region in the ARNs it mints.
    pub region: String,
    /// How long an execution stays RUNNING before its StartBackupJob task runs.
    pub execution_delay: Duration,
    /// A job's time in CREATED before RUNNING.
    pub job_pending: Duration,
    /// A job's time in RUNNING before COMPLETED (PercentDone grows linearly meanwhile).
    pub job_running: Duration,
    /// Resource ARNs (exact, or a substring) whose jobs end FAILED instead of COMPLETED.
    pub fail_resources: Vec<String>,
    /// `None`: every well-formed state machine ARN exists; `Some`: only these do.
    pub state_machines: Option<Vec<String>>,
    /// How the modelled machine is deployed (hook prefix, raw commands) and how fast it polls
    /// (`end_poll` also times its copy branch: the first job poll after the job ended).
    pub hooks: HookSettings,
    /// A copy job's time in CREATED before RUNNING.
    pub copy_pending: Duration,
    /// A copy job's time in RUNNING before COMPLETED.
    pub copy_running: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            account_id: "123456789012".to_string(),
            region: "us-east-1".to_string(),
            execution_delay: Duration::from_millis(200),
            job_pending: Duration::from_secs(1),
            job_running: Duration::from_secs(3),
            fail_resources: Vec::new(),
            state_machines: None,
            hooks: HookSettings::default(),
            copy_pending: Duration::from_secs(1),
            copy_running: Duration::from_secs(3),
        }
    }
}

/// Counters of what the sandbox answered, since start or the last reset.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// AWS requests received (admin requests are not counted).
    pub requests: u64,
    /// AWS requests by operation name.
    pub by_operation: BTreeMap<String, u64>,
    /// AWS requests by the access key id that signed them, then by operation (unsigned
    /// requests are not counted here): which client made which calls.
    pub by_access_key: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests throttled, answered 5xx or dropped, plus connections dropped on accept.
    pub faults_injected: u64,
    /// StartExecution calls that created an execution.
    pub start_execution_accepted: u64,
    /// StartExecution calls answered with an existing RUNNING execution.
    pub start_execution_duplicates: u64,
    /// StartExecution calls refused with ExecutionAlreadyExists.
    pub already_exists: u64,
    /// Requests that waited for injected latency.
    pub delayed: u64,
}

/// One StartExecution request as it arrived: for measuring how late a slot was fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartTime {
    /// The execution name asked for.
    pub name: String,
    /// `ScheduledFor` from the input, when present.
    pub input_scheduled_for: Option<String>,
    /// When the request arrived, epoch milliseconds by the sandbox's clock.
    pub received_at_ms: i64,
    /// `accepted`, `duplicate`, `already_exists`, `rejected`, `throttled`, `server_error`
    /// or `dropped`.
    pub outcome: &'static str,
    /// The access key id that signed the request (SigV4 `Credential=`), when signed: which
    /// client sent it.
    pub access_key: Option<String>,
}

/// The state behind one lock: requests are short, so one lock is simplest and fast enough.
#[derive(Debug)]
pub(crate) struct Inner {
    world: World,
    stats: Stats,
    start_times: Vec<StartTime>,
    dynamodb: dynamodb::Tables,
    tagging: tagging::Tagging,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    faults: Mutex<Faults>,
}

impl Shared {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running sandbox endpoint. Dropping it stops it too; [`Sandbox::shutdown`] also waits.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Sandbox {
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub async fn start(addr: SocketAddr, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let millis = |d: Duration| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX);
        let world = World::new(WorldConfig {
            account_id: config.account_id,
            region: config.region,
            execution_delay: millis(config.execution_delay),
            job_pending: millis(config.job_pending),
            job_running: millis(config.job_running),
            fail_resources: config.fail_resources,
            state_machines: config.state_machines.map(|list| list.into_iter().collect()),
            hooks: config.hooks,
            copy_pending: millis(config.copy_pending),
            copy_running: millis(config.copy_running),
        });
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                world,
                stats: Stats::default(),
                start_times: Vec::new(),
                dynamodb: dynamodb::Tables::default(),
                tagging: tagging::Tagging::default(),
            }),
            faults: Mutex::new(Faults::default()),
        });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(
            listener,
            shared.clone(),
            cancel.clone(),
            tasks.clone(),
        ));
        info!(listen = %addr, "sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            cancel,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults() = faults;
    }

    /// The faults in force (with `throttle_next` as far as it has counted down).
    pub fn faults(&self) -> Faults {
        self.shared.faults().clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.inner().stats.clone()
    }

    /// Zeroes the counters and forgets the recorded start times.
    pub fn reset_stats(&self) {
        let mut inner = self.shared.inner();
        inner.stats = Stats::default();
        inner.start_times.clear();
    }

    /// Every execution, oldest first, with its status now.
    pub fn executions(&self) -> Vec<ExecutionRecord> {
        self.shared.inner().world.executions(now_ms())
    }

    /// Every backup job, oldest first, with its state now.
    pub fn jobs(&self) -> Vec<JobRecord> {
        self.shared.inner().world.jobs(now_ms())
    }

    /// Every copy job, oldest first, with its state now.
    pub fn copy_jobs(&self) -> Vec<CopyJobRecord> {
        self.shared.inner().world.copy_jobs(now_ms())
    }

    /// Replaces how copies to each destination behave (first matching rule wins).
    pub fn set_copy_rules(&self, rules: Vec<CopyRule>) {
        self.shared.inner().world.set_copy_rules(rules);
    }

    /// Every hook command the modelled machine has sent, oldest first.
    pub fn ssm_commands(&self) -> Vec<CommandRecord> {
        self.shared.inner().world.ssm_commands(now_ms())
    }

    /// Replaces how hook commands run (first matching rule wins).
    pub fn set_command_rules(&self, rules: Vec<CommandRule>) {
        self.shared.inner().world.set_command_rules(rules);
    }

    /// Replaces the per-resource CREATED/RUNNING durations of jobs created from now on.
    pub fn set_job_timings(&self, timings: Vec<JobTiming>) {
        self.shared.inner().world.set_job_timings(timings);
    }

    /// Adds or replaces tagged EC2 instances (what GetResources finds).
    pub fn put_instances(&self, instances: Vec<TaggedInstance>) {
        self.shared.inner().tagging.put(instances);
    }

    /// Removes instances (by ARN or instance id); returns how many went.
    pub fn remove_instances(&self, which: &[String]) -> usize {
        self.shared.inner().tagging.remove(which)
    }

    /// Every tagged instance, by ARN.
    pub fn instances(&self) -> Vec<TaggedInstance> {
        self.shared.inner().tagging.list()
    }

    /// From now on the Tagging API answers AccessDeniedException (or works again).
    pub fn set_tagging_denied(&self, denied: bool) {
        self.shared.inner().tagging.set_denied(denied);
    }

    /// Extra delays (ms) before the StartBackupJob task of each new execution, taken in turn.
    pub fn set_task_delays(&self, delays: Vec<u64>) {
        self.shared.inner().world.set_task_delays(delays);
    }

    /// Every StartExecution request received, in arrival order.
    pub fn start_times(&self) -> Vec<StartTime> {
        self.shared.inner().start_times.clone()
    }

    /// The items of a DynamoDB table in the wire's attribute-value JSON (`{"pk": {"S": …}}`),
    /// ordered by `pk`: what a `GetItem` of each would answer.
    pub fn dynamodb_items(&self, table: &str) -> Vec<serde_json::Value> {
        self.shared.inner().dynamodb.items(table)
    }

    /// Stops accepting, closes every connection and waits for the tasks to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        info!(listen = %self.addr, "sandbox stopped");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
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
            shared.inner().stats.faults_injected += 1;
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

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let received = now_ms();
    if let Some(admin_path) = request.uri().path().strip_prefix(ADMIN_PREFIX) {
        let admin_path = admin_path.to_string();
        let method = request.method().clone();
        let reply = match read_body(request).await {
            Ok(body) => admin(&shared, &method, &admin_path, &body),
            Err(reply) => reply,
        };
        return Ok(reply.into_response());
    }
    let call = Call::of(&request);
    let access_key = access_key(&request);
    let query = request.uri().query().map(str::to_string);
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(reply) => return Ok(reply.into_response()),
    };
    let operation = call.name().to_string();
    let decision = shared
        .faults()
        .decide(&operation, access_key.as_deref(), rand::random::<f64>);
    {
        let mut inner = shared.inner();
        inner.stats.requests += 1;
        *inner
            .stats
            .by_operation
            .entry(operation.clone())
            .or_default() += 1;
        if let Some(key) = &access_key {
            *inner
                .stats
                .by_access_key
                .entry(key.clone())
                .or_default()
                .entry(operation.clone())
                .or_default() += 1;
        }
        if decision.action.is_some() {
            inner.stats.faults_injected += 1;
        }
        if !decision.latency.is_zero() {
            inner.stats.delayed += 1;
        }
    }
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    if let Some(injected) = decision.action {
        if operation == "StartExecution" {
            let outcome = match injected {
                Injected::Drop => "dropped",
                Injected::Throttle => "throttled",
                Injected::ServerError => "server_error",
            };
            let entry = sfn::start_time_of(&body, received, outcome, access_key);
            shared.inner().start_times.push(entry);
        }
        debug!(operation = %operation, fault = ?injected, "sandbox fault injected");
        return match injected {
            Injected::Drop => Err(Dropped),
            Injected::Throttle => Ok(throttled(&call).into_response()),
            Injected::ServerError => Ok(server_error(&call).into_response()),
        };
    }
    let now = now_ms();
    let reply = {
        let mut inner = shared.inner();
        match &call {
            Call::Sfn(operation) => {
                let at = sfn::Received {
                    at_ms: received,
                    access_key,
                };
                sfn::handle(operation, &body, &mut inner, at, now)
            }
            Call::DynamoDb(operation) => dynamodb::handle(operation, &body, &mut inner.dynamodb),
            Call::Tagging(operation) => tagging::handle(operation, &body, &inner.tagging),
            Call::Backup(operation) => {
                backup::handle(operation, query.as_deref(), &body, &mut inner, now)
            }
            Call::Unknown => backup::error(&world::ApiError {
                code: "UnknownOperationException",
                message: "no such operation in the sandbox".into(),
            }),
        }
    };
    debug!(operation = %operation, status = reply.status, "sandbox answered");
    Ok(reply.into_response())
}

/// The access key id of a SigV4-signed request:
/// `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …`.
fn access_key(request: &Request<Incoming>) -> Option<String> {
    let auth = request.headers().get("authorization")?.to_str().ok()?;
    let credential = auth.split_once("Credential=")?.1;
    let key = credential.split('/').next()?.trim();
    (!key.is_empty()).then(|| key.to_string())
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
    let e = world::ApiError {
        code: "ThrottlingException",
        message: "Rate exceeded".into(),
    };
    match call {
        Call::Sfn(_) => sfn::error(&e),
        Call::DynamoDb(_) => dynamodb::throttled(),
        Call::Tagging(_) => tagging::throttled(),
        _ => backup::error(&e),
    }
}

fn server_error(call: &Call) -> Reply {
    match call {
        Call::DynamoDb(_) => dynamodb::server_error(),
        Call::Tagging(_) => tagging::server_error(),
        Call::Sfn(_) => sfn::error(&world::ApiError {
            code: "InternalFailure",
            message: "The request processing has failed because of an unknown error".into(),
        }),
        _ => backup::error(&world::ApiError {
            code: "ServiceUnavailableException",
            message: "The service is unavailable; try again later".into(),
        }),
    }
}

/// The admin surface: reports and fault settings, as JSON.
fn admin(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    let now = now_ms();
    match (method.as_str(), path) {
        ("GET", "stats") => Reply::json(200, &shared.inner().stats),
        ("GET", "executions") => Reply::json(200, &shared.inner().world.executions(now)),
        ("GET", "jobs") => Reply::json(200, &shared.inner().world.jobs(now)),
        ("GET", "start-times") => Reply::json(200, &shared.inner().start_times),
        ("GET", "copy-jobs") => Reply::json(200, &shared.inner().world.copy_jobs(now)),
        ("POST", "copy-rules") => match serde_json::from_slice::<Vec<CopyRule>>(body) {
            Ok(rules) => {
                shared.inner().world.set_copy_rules(rules);
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("GET", p) if p.starts_with("dynamodb/") => {
            let table = &p["dynamodb/".len()..];
            Reply::json(200, &shared.inner().dynamodb.items(table))
        }
        ("GET", "ssm-commands") => Reply::json(200, &shared.inner().world.ssm_commands(now)),
        ("POST", "ssm-rules") => match serde_json::from_slice::<Vec<CommandRule>>(body) {
            Ok(rules) => {
                shared.inner().world.set_command_rules(rules);
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("POST", "job-timings") => match serde_json::from_slice::<Vec<JobTiming>>(body) {
            Ok(timings) => {
                shared.inner().world.set_job_timings(timings);
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("GET", "instances") => Reply::json(200, &shared.inner().tagging.list()),
        ("POST", "instances") => match serde_json::from_slice::<Vec<TaggedInstance>>(body) {
            Ok(list) => {
                shared.inner().tagging.put(list);
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("POST", "instances/remove") => match serde_json::from_slice::<Vec<String>>(body) {
            Ok(which) => {
                let removed = shared.inner().tagging.remove(&which);
                Reply::json(200, &json!({ "removed": removed }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("POST", "tagging-access") => match serde_json::from_slice::<Value>(body) {
            Ok(v) => {
                let denied = v["denied"].as_bool().unwrap_or(false);
                shared.inner().tagging.set_denied(denied);
                Reply::json(200, &json!({ "denied": denied }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("POST", "task-delays") => match serde_json::from_slice::<Vec<u64>>(body) {
            Ok(delays) => {
                shared.inner().world.set_task_delays(delays);
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
        },
        ("GET", "faults") => Reply::json(200, &FaultsJson::from(&*shared.faults())),
        ("POST", "faults") => {
            let parsed = serde_json::from_slice::<FaultsJson>(body)
                .map_err(|e| e.to_string())
                .and_then(FaultsJson::into_faults);
            match parsed {
                Ok(faults) => {
                    let reply = Reply::json(200, &FaultsJson::from(&faults));
                    *shared.faults() = faults;
                    reply
                }
                Err(message) => Reply::json(400, &json!({ "error": message })),
            }
        }
        ("POST", "reset-stats") => {
            let mut inner = shared.inner();
            inner.stats = Stats::default();
            inner.start_times.clear();
            Reply::json(200, &inner.stats)
        }
        _ => Reply::json(
            404,
            &json!({ "error": format!("no admin endpoint {method} {ADMIN_PREFIX}{path}") }),
        ),
    }
}

/// An HTTP answer before it becomes a hyper response.
#[derive(Debug)]
pub(crate) struct Reply {
    status: u16,
    error_type: Option<&'static str>,
    body: Vec<u8>,
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

    /// Names the error in `X-Amzn-Errortype`, which both protocols' SDK parsers read first.
    pub(crate) fn error_type(mut self, code: &'static str) -> Self {
        self.error_type = Some(code);
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
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

/// The wall clock in epoch milliseconds: the sandbox answers real clients in real time.
fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
    })
}
