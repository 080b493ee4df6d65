//! A local AWS-compatible endpoint: Step Functions (`awsJson1_0`), AWS Backup (`restJson1`), a
//! DynamoDB subset for the leader lease and the Tagging API's GetResources, on one HTTP port,
//! for the real SDK clients in tests, demos and benchmarks.
//!
//! It runs the project's backup machine v2 (Validate, StartBackupJob, the hooks around it,
//! copy executions) and restore machine (tests, on-demand restores, sweeps) as models, moves
//! jobs through their states by time, keeps Step Functions' idempotency rules, and injects
//! faults (throttling, 5xx, latency, dropped connections).
//! An admin surface under `/_sandbox/` reports what it saw and turns the knobs.
//!
//! Modules, bottom-up (each imports only modules above it in this list):
//! - `basics`: epoch milliseconds, `ApiError`, wire date formats, ARN and URL helpers (a leaf).
//! - `names`: Step Functions' rules for names, ARNs and page tokens (pure).
//! - `reply`: an HTTP answer as the handlers build it. `faults`: what to inject where.
//! - `stats`: the counters and StartExecution arrival times.
//! - `listing`: the List*Jobs query keys and paging both job listings share.
//! - `stack`: the stack parameters the machines are deployed with.
//! - `ssm`: the hook commands the machine sends, their timing and knobs.
//! - `validate`: the machines' `Validate` rules and `InputRefused` causes (pure).
//! - `events`: GetExecutionHistory events in Step Functions' shapes (pure).
//! - `jobs`, `copy`, `restores`: backup, copy and restore jobs (and restored instances),
//!   states derived lazily from timestamps.
//! - `world`: executions, and in `world/` the backup machine, recovery points and the restore
//!   machine, their steps and their history (no I/O, no clock).
//! - the wire: `rest` (restJson1 basics), `sfn`, `backup` (the two protocols over the world;
//!   `backup/restores`: recovery points and restores), `dynamodb` (the lease
//!   subset), `tagging` (GetResources over tagged instances).
//! - wiring: `shared` (the state behind the lock), `admin` (`/_sandbox/`), `server` (accept,
//!   route, fault, answer), `serve` (the command line); this file holds the public API.

mod admin;
mod backup;
mod basics;
mod copy;
mod dynamodb;
mod events;
mod faults;
mod jobs;
mod listing;
mod names;
mod reply;
mod rest;
mod restores;
pub mod serve;
mod server;
mod sfn;
mod shared;
mod ssm;
mod stack;
mod stats;
mod tagging;
mod validate;
mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use copy::{CopyJobRecord, CopyRule};
pub use faults::Faults;
pub use jobs::{JobRecord, JobState, JobTiming};
pub use restores::{
    RestoreJobRecord, RestoreRule, RestoreSettings, RestoredInstance, ValidationResult,
};
pub use ssm::{CommandRecord, CommandRule, HookSettings};
pub use stack::StackParameters;
pub use stats::{StartTime, Stats};
pub use tagging::TaggedInstance;
pub use world::{ExecutionRecord, ExecutionStatus, RecoveryPointRecord};

use basics::{duration_ms, now_ms};
use shared::Shared;
use world::{World, WorldConfig};

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
    /// The stack parameters the modelled machines judge their input by (the template's
    /// defaults: vault `orchestrator`, retention 7 to 36500 days, documents at `$DEFAULT`).
    pub stack: StackParameters,
    /// How restores, restored instances and the restore machine's polls behave.
    pub restore: RestoreSettings,
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
            stack: StackParameters::default(),
            restore: RestoreSettings::default(),
        }
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
        let world = World::new(WorldConfig {
            account_id: config.account_id,
            region: config.region,
            execution_delay: duration_ms(config.execution_delay),
            job_pending: duration_ms(config.job_pending),
            job_running: duration_ms(config.job_running),
            fail_resources: config.fail_resources,
            state_machines: config.state_machines.map(|list| list.into_iter().collect()),
            hooks: config.hooks,
            copy_pending: duration_ms(config.copy_pending),
            copy_running: duration_ms(config.copy_running),
            stack: config.stack,
            restore: config.restore,
        });
        let shared = Arc::new(Shared::new(world));
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(server::accept_loop(
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
        self.shared.inner().ledger.stats.clone()
    }

    /// Zeroes the counters and forgets the recorded start times.
    pub fn reset_stats(&self) {
        self.shared.inner().ledger.reset();
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

    /// How many states the execution `arn` has entered so far (what Standard workflows bill
    /// per): a plain backup takes 2, `None` for an execution that does not exist.
    pub fn state_transitions(&self, arn: &str) -> Option<usize> {
        self.shared
            .inner()
            .world
            .state_transitions(arn, now_ms())
            .ok()
    }

    /// The history events of execution `arn` so far, as GetExecutionHistory returns them
    /// (oldest first, in the wire's JSON); empty for an execution that does not exist.
    pub fn execution_history(&self, arn: &str) -> Vec<serde_json::Value> {
        self.shared
            .inner()
            .world
            .execution_history(arn, usize::MAX, false, None, now_ms())
            .map(|(events, _)| events)
            .unwrap_or_default()
    }

    /// Every restore job, oldest first, with its status now.
    pub fn restore_jobs(&self) -> Vec<RestoreJobRecord> {
        self.shared.inner().world.restore_jobs(now_ms())
    }

    /// Every instance restores have launched, oldest first, terminated ones included
    /// (`RestoredInstance::alive` tells them apart).
    pub fn restored_instances(&self) -> Vec<RestoredInstance> {
        self.shared.inner().world.restored_instances(now_ms())
    }

    /// Every validation result put on a restore job (PutRestoreValidationResult), oldest job
    /// first.
    pub fn validation_results(&self) -> Vec<ValidationResult> {
        self.restore_jobs()
            .into_iter()
            .filter_map(|r| {
                Some(ValidationResult {
                    status: r.validation_status?,
                    message: r.validation_status_message,
                    restore_job_id: r.id,
                })
            })
            .collect()
    }

    /// Every recovery point that exists now (COMPLETED backups, then COMPLETED copies).
    pub fn recovery_points(&self) -> Vec<RecoveryPointRecord> {
        self.shared.inner().world.recovery_points(now_ms())
    }

    /// Replaces how restores behave (first matching rule wins; for restores started later).
    pub fn set_restore_rules(&self, rules: Vec<RestoreRule>) {
        self.shared.inner().world.set_restore_rules(rules);
    }

    /// Sets what GetRecoveryPointRestoreMetadata answers for recovery points of `instance_arn`
    /// (merged over stable made-up values; an empty value removes a key).
    pub fn set_restore_metadata(&self, instance_arn: &str, metadata: BTreeMap<String, String>) {
        self.shared
            .inner()
            .world
            .set_restore_metadata(instance_arn, metadata);
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
        self.shared.inner().ledger.start_times.clone()
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
