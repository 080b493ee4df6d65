//! The sandbox's world: executions and backup jobs whose states follow from their timestamps.
//!
//! No I/O and no clock: every method takes `now` (epoch milliseconds). A job's state is computed
//! from its creation time when somebody reads it, so 100,000 jobs cost no timers. The one step
//! that cannot be lazy is an execution's StartBackupJob task, because it creates a job that other
//! callers can see: those tasks wait in a deadline heap and run (back-dated to their deadline)
//! on the first call that observes a time past it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::copy::{CopyFilter, CopyJobRecord, CopyJobs, CopyRequest, CopyRule, Source};
use super::history;
use super::input::{DEFAULT_VAULT, TaskInput, looks_like_arn};
use super::listing::Listing;
use super::ssm::{self, CommandRecord, CommandRule, HookRun, HookSettings, Hooks, JobTiming};

pub(crate) use super::Millis;

/// Step Functions' limit on an execution name, in characters.
const MAX_NAME_CHARS: usize = 80;
/// Step Functions' limit on an execution input, in bytes.
pub(crate) const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Characters Step Functions refuses in a name, besides whitespace and control characters.
const FORBIDDEN_NAME_CHARS: &str = "<>{}[]?*\"#%\\^|~`$&,;:/";
/// AWS Backup's start window when StartBackupJob does not set one (8 hours).
const DEFAULT_START_WINDOW_MINUTES: u64 = 480;
/// How far a job meant to fail gets before it does, in percent.
const FAILING_JOB_PROGRESS: f64 = 50.0;
const GIB: u64 = 1 << 30;

/// What the world needs from [`super::SandboxConfig`], with durations in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct WorldConfig {
    pub account_id: String,
    pub region: String,
    pub execution_delay: Millis,
    pub job_pending: Millis,
    pub job_running: Millis,
    pub fail_resources: Vec<String>,
    pub state_machines: Option<HashSet<String>>,
    pub hooks: HookSettings,
    pub copy_pending: Millis,
    pub copy_running: Millis,
}

/// A refusal, named by the error code the real service sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The status of an execution, as DescribeExecution spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Started and not yet closed.
    Running,
    /// Closed with an output.
    Succeeded,
    /// Closed with an error and a cause.
    Failed,
}

impl ExecutionStatus {
    /// The wire spelling: `RUNNING`, `SUCCEEDED`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ExecutionStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The state of a backup job, as DescribeBackupJob spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted, not yet started.
    Created,
    /// Copying data.
    Running,
    /// Done; the recovery point exists.
    Completed,
    /// Ended without a usable recovery point.
    Failed,
}

impl JobState {
    /// The wire spelling: `CREATED`, `RUNNING`, `COMPLETED`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    /// True for states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One execution as the sandbox sees it at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRecord {
    /// The execution name.
    pub name: String,
    /// The execution ARN.
    pub arn: String,
    /// The state machine it runs.
    pub state_machine_arn: String,
    /// The input JSON text, as received.
    pub input: String,
    /// Its status now.
    pub status: ExecutionStatus,
    /// When StartExecution created it.
    pub start_date: DateTime<Utc>,
    /// When it closed.
    pub stop_date: Option<DateTime<Utc>>,
    /// The backup job its StartBackupJob task created, once it has.
    pub backup_job_id: Option<String>,
    /// The output JSON text, when SUCCEEDED.
    pub output: Option<String>,
    /// The error name, when FAILED.
    pub error: Option<String>,
    /// The error cause, when FAILED.
    pub cause: Option<String>,
}

/// One backup job as the sandbox sees it at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// The BackupJobId.
    pub id: String,
    /// The resource backed up.
    pub resource_arn: String,
    /// `EC2`, `EBS`, ... (from the resource ARN).
    pub resource_type: String,
    /// The vault the recovery point goes to.
    pub backup_vault_name: String,
    /// The role AWS Backup assumes.
    pub iam_role_arn: String,
    /// Its state now.
    pub state: JobState,
    /// Progress, a decimal string as AWS Backup sends it (`"42.0"`).
    pub percent_done: String,
    /// Size of the backup so far.
    pub backup_size_in_bytes: i64,
    /// Bytes copied so far.
    pub bytes_transferred: i64,
    /// Why it failed, when FAILED.
    pub status_message: Option<String>,
    /// When it was created.
    pub creation_date: DateTime<Utc>,
    /// The end of its start window.
    pub start_by: DateTime<Utc>,
    /// When it is expected to end.
    pub expected_completion_date: DateTime<Utc>,
    /// When it ended.
    pub completion_date: Option<DateTime<Utc>>,
    /// The recovery point it makes.
    pub recovery_point_arn: String,
    /// The StartBackupJob IdempotencyToken, if one was sent.
    pub idempotency_token: Option<String>,
    /// The execution whose task created it, if any.
    pub execution_name: Option<String>,
    /// StartBackupJob `BackupOptions`, as sent.
    pub backup_options: Option<Value>,
}

/// The result of an accepted StartExecution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub execution_arn: String,
    pub start_ms: Millis,
    /// True when this was an idempotent repeat of a RUNNING execution.
    pub duplicate: bool,
}

/// The result of StartBackupJob.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobStarted {
    pub record: JobRecord,
    /// The RecoveryPointArn the response carries (not for every resource type).
    pub recovery_point_arn: Option<String>,
    /// False when an earlier call with the same IdempotencyToken created the job.
    pub new: bool,
}

/// The StartBackupJob request members the sandbox uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobRequest {
    pub backup_vault_name: Option<String>,
    pub resource_arn: Option<String>,
    pub iam_role_arn: Option<String>,
    pub idempotency_token: Option<String>,
    pub start_window_minutes: Option<u64>,
    pub backup_options: Option<Value>,
}

/// The ListBackupJobs filters the sandbox honours besides the shared ones ([`Listing`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct JobFilter {
    pub resource_arn: Option<String>,
    pub state: Option<String>,
    pub backup_vault_name: Option<String>,
    pub resource_type: Option<String>,
}

/// How an execution's task went, decided when it runs.
#[derive(Debug)]
enum Run {
    /// Its task has not run yet.
    Pending,
    /// It failed before creating a job.
    Failed {
        at: Millis,
        error: &'static str,
        cause: Box<str>,
    },
    /// Its task created (or found, by idempotency token) `job`; it closes at `stop`.
    Job {
        job: u32,
        stop: Millis,
        post_failure: Option<Box<str>>,
        /// The copy branch (`CopyTo` in the input), when the job COMPLETED.
        copies: Option<Box<CopyRun>>,
    },
}

/// The modelled machine's copy branch: at `at` (its first job poll after the job ended) one
/// StartCopyJob per `CopyTo` element; `results` are the Map state's items, as the output has.
#[derive(Debug)]
struct CopyRun {
    at: Millis,
    requests: Vec<Value>,
    results: Vec<Value>,
}

#[derive(Debug)]
struct Execution {
    machine: u32,
    name: Arc<str>,
    input: Box<str>,
    start: Millis,
    /// When its StartBackupJob task runs (after the pre hook, if any).
    task_at: Millis,
    /// The hooks it runs, once decided (the pre hook at start, the post hook with the job).
    hooks: Option<Box<HookRun>>,
    run: Run,
}

#[derive(Debug)]
struct Job {
    id: Uuid,
    resource: Arc<str>,
    vault: Arc<str>,
    role: Arc<str>,
    created: Millis,
    start_window_minutes: u64,
    token: Option<Arc<str>>,
    execution: Option<u32>,
    fails: bool,
    pending: Millis,
    running: Millis,
    backup_options: Option<Box<Value>>,
}

/// The phases of a job's life, from its creation time and the configured durations.
#[derive(Debug, Clone, Copy)]
struct JobTimes {
    running_from: Millis,
    ends: Millis,
}

/// Every execution and job the sandbox holds, and the indexes that find them.
#[derive(Debug)]
pub(crate) struct World {
    config: WorldConfig,
    strings: HashSet<Arc<str>>,
    machines: Vec<Arc<str>>,
    machine_ids: HashMap<Arc<str>, u32>,
    machine_executions: Vec<Vec<u32>>,
    executions: Vec<Execution>,
    execution_ids: HashMap<(u32, Arc<str>), u32>,
    due: BinaryHeap<Reverse<(Millis, u32)>>,
    jobs: Vec<Job>,
    job_ids: HashMap<Uuid, u32>,
    job_tokens: HashMap<Arc<str>, u32>,
    last_job_created: Millis,
    /// `/_sandbox/ssm-rules`: how hook commands run.
    command_rules: Vec<CommandRule>,
    /// `/_sandbox/job-timings`: CREATED/RUNNING durations per resource.
    job_timings: Vec<JobTiming>,
    /// `/_sandbox/task-delays`: extra milliseconds before the task of each new execution, taken
    /// in turn, so that jobs can be created in another order than their executions started.
    task_delays: Vec<Millis>,
    /// Executions started since `task_delays` was set (which delay comes next).
    task_delays_used: usize,
    /// Copy jobs, from the wire or the machine's copy branch.
    copy_jobs: CopyJobs,
    /// Executions whose copy branch runs at a later time.
    copy_due: BinaryHeap<Reverse<(Millis, u32)>>,
}

impl World {
    /// An empty world.
    pub fn new(config: WorldConfig) -> Self {
        Self {
            strings: HashSet::new(),
            machines: Vec::new(),
            machine_ids: HashMap::new(),
            machine_executions: Vec::new(),
            executions: Vec::new(),
            execution_ids: HashMap::new(),
            due: BinaryHeap::new(),
            jobs: Vec::new(),
            job_ids: HashMap::new(),
            job_tokens: HashMap::new(),
            last_job_created: Millis::MIN,
            command_rules: Vec::new(),
            job_timings: Vec::new(),
            task_delays: Vec::new(),
            task_delays_used: 0,
            copy_jobs: CopyJobs::new(config.copy_pending, config.copy_running),
            copy_due: BinaryHeap::new(),
            config,
        }
    }

    /// Replaces the per-destination copy rules (first match wins; for copies started later).
    pub fn set_copy_rules(&mut self, rules: Vec<CopyRule>) {
        self.copy_jobs.set_rules(rules);
    }

    /// Every copy job, oldest first.
    pub fn copy_jobs(&mut self, now: Millis) -> Vec<CopyJobRecord> {
        self.advance(now);
        self.copy_jobs.all(now, &self.config.account_id)
    }

    /// DescribeCopyJob.
    pub fn describe_copy_job(&mut self, id: &str, now: Millis) -> Result<CopyJobRecord, ApiError> {
        self.advance(now);
        self.copy_jobs.describe(id, now, &self.config.account_id)
    }

    /// ListCopyJobs: newest first.
    pub fn list_copy_jobs(
        &mut self,
        filter: &CopyFilter,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<CopyJobRecord>, Option<String>), ApiError> {
        self.advance(now);
        self.copy_jobs
            .list(filter, listing, now, &self.config.account_id)
    }

    /// StartCopyJob from the wire: the recovery point must be one a COMPLETED job made, in the
    /// named source vault.
    pub fn start_copy_job(
        &mut self,
        request: CopyRequest,
        now: Millis,
    ) -> Result<(u32, bool, CopyJobRecord), ApiError> {
        self.advance(now);
        CopyJobs::check(&request)?;
        let rp = request.recovery_point_arn.clone().unwrap_or_default();
        let job = (0..self.jobs.len() as u32)
            .rev()
            .find(|&i| self.recovery_point_arn(&self.jobs[i as usize]) == rp)
            .ok_or_else(|| {
                ApiError::new(
                    "ResourceNotFoundException",
                    format!("Recovery point {rp} not found"),
                )
            })?;
        let (index, new) = self.copy_from_job(job, request, now)?;
        let record = self.copy_jobs.record(index, now, &self.config.account_id);
        Ok((index, new, record))
    }

    /// Starts a copy of job `job`'s recovery point (wire or machine).
    fn copy_from_job(
        &mut self,
        job: u32,
        request: CopyRequest,
        at: Millis,
    ) -> Result<(u32, bool), ApiError> {
        let j = &self.jobs[job as usize];
        if self.job_state(j, at) != JobState::Completed {
            return Err(ApiError::new(
                "InvalidRequestException",
                format!(
                    "Recovery point {} is not available (its backup job is {})",
                    self.recovery_point_arn(j),
                    self.job_state(j, at)
                ),
            ));
        }
        if request.source_backup_vault_name.as_deref() != Some(&*j.vault) {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!(
                    "Recovery point {} is not in vault {}",
                    self.recovery_point_arn(j),
                    request
                        .source_backup_vault_name
                        .as_deref()
                        .unwrap_or_default()
                ),
            ));
        }
        let source = Source {
            resource_arn: j.resource.to_string(),
            vault_arn: format!(
                "arn:aws:backup:{}:{}:backup-vault:{}",
                self.config.region, self.config.account_id, j.vault
            ),
        };
        self.copy_jobs.start(request, source, at)
    }

    /// The machine's copy branch of execution `index` at `at`: one StartCopyJob per `CopyTo`
    /// element (the Map state); a refusal is that item's `Error`/`Cause`, as its Catch makes it.
    fn run_copies(&mut self, index: u32, at: Millis) {
        let Run::Job { job, copies, .. } = &mut self.executions[index as usize].run else {
            return;
        };
        let job = *job;
        let Some(mut run) = copies.take() else {
            return;
        };
        let (vault, role) = {
            let j = &self.jobs[job as usize];
            (j.vault.to_string(), j.role.to_string())
        };
        let rp = self.recovery_point_arn(&self.jobs[job as usize]);
        for item in &run.requests {
            let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let destination = text("DestinationBackupVaultArn").unwrap_or_default();
            let request = CopyRequest {
                recovery_point_arn: Some(rp.clone()),
                source_backup_vault_name: Some(vault.clone()),
                destination_backup_vault_arn: Some(destination.clone()),
                iam_role_arn: Some(role.clone()),
                idempotency_token: text("IdempotencyToken"),
                delete_after_days: item["Lifecycle"]["DeleteAfterDays"].as_i64(),
            };
            let result =
                CopyJobs::check(&request).and_then(|()| self.copy_from_job(job, request, at));
            run.results.push(match result {
                Ok((c, _)) => json!({
                    "DestinationBackupVaultArn": destination,
                    "CopyJobId": self.copy_jobs.id_of(c),
                }),
                Err(e) => json!({
                    "DestinationBackupVaultArn": destination,
                    "Error": format!("Backup.{}", e.code),
                    "Cause": e.message,
                }),
            });
        }
        if let Run::Job { copies, .. } = &mut self.executions[index as usize].run {
            *copies = Some(run);
        }
    }

    /// Replaces the rules hook commands run by (first match wins).
    pub fn set_command_rules(&mut self, rules: Vec<CommandRule>) {
        self.command_rules = rules;
    }

    /// Replaces the per-resource job durations (first match wins; for jobs created later).
    pub fn set_job_timings(&mut self, timings: Vec<JobTiming>) {
        self.job_timings = timings;
    }

    /// Replaces the extra delays before the task of each new execution (taken in turn; empty:
    /// none). Real Step Functions gives no order between two executions' tasks; this makes one.
    pub fn set_task_delays(&mut self, delays: Vec<u64>) {
        self.task_delays = delays
            .into_iter()
            .map(|d| Millis::try_from(d).unwrap_or(Millis::MAX))
            .collect();
        self.task_delays_used = 0;
    }

    fn next_task_delay(&mut self) -> Millis {
        if self.task_delays.is_empty() {
            return 0;
        }
        let delay = self.task_delays[self.task_delays_used % self.task_delays.len()];
        self.task_delays_used += 1;
        delay
    }

    /// Every hook command the machine has sent by `now`, oldest first.
    pub fn ssm_commands(&mut self, now: Millis) -> Vec<CommandRecord> {
        self.advance(now);
        let mut all: Vec<CommandRecord> = self
            .executions
            .iter()
            .filter_map(|e| e.hooks.as_deref())
            .flat_map(|h| h.pre.iter().chain(h.post.iter()))
            .filter(|c| c.sent_at_ms <= now)
            .cloned()
            .collect();
        all.sort_by_key(|c| c.sent_at_ms);
        all
    }

    fn command(
        &self,
        execution: &str,
        phase: &'static str,
        hook: &ssm::HookRequest,
        instance: &str,
        at: Millis,
    ) -> CommandRecord {
        let (ms, status) = ssm::outcome(&self.command_rules, &self.config.hooks, phase, hook);
        CommandRecord {
            command_id: Uuid::new_v4().to_string(),
            execution_name: execution.to_string(),
            phase,
            document_name: hook.document_name.clone(),
            document_version: hook.document_version.clone(),
            parameters: hook.parameters.clone(),
            instance_id: instance.to_string(),
            sent_at_ms: at,
            ended_at_ms: at + ms,
            status,
        }
    }

    /// The account in ARNs the world mints.
    pub fn account_id(&self) -> &str {
        &self.config.account_id
    }

    /// The region in ARNs the world mints.
    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// Runs every execution task whose time has come by `now`, in deadline order.
    pub fn advance(&mut self, now: Millis) {
        loop {
            let task = self.due.peek().map(|Reverse(d)| *d);
            let copy = self.copy_due.peek().map(|Reverse(d)| *d);
            match (task, copy) {
                (Some((at, index)), c) if at <= now && c.is_none_or(|(c, _)| at <= c) => {
                    self.due.pop();
                    self.run_task(index, at);
                }
                (_, Some((at, index))) if at <= now => {
                    self.copy_due.pop();
                    self.run_copies(index, at);
                }
                _ => break,
            }
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        arc
    }

    fn machine_id(&mut self, arn: &str) -> u32 {
        if let Some(&id) = self.machine_ids.get(arn) {
            return id;
        }
        let id = u32::try_from(self.machines.len()).expect("fewer than 2^32 state machines");
        let arc: Arc<str> = Arc::from(arn);
        self.machines.push(arc.clone());
        self.machine_ids.insert(arc, id);
        self.machine_executions.push(Vec::new());
        id
    }

    fn check_machine(&self, arn: Option<&str>) -> Result<String, ApiError> {
        let arn = arn.ok_or_else(|| {
            ApiError::new(
                "ValidationException",
                "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy \
                 constraint: Member must not be null",
            )
        })?;
        if !is_state_machine_arn(arn) {
            return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")));
        }
        if let Some(known) = &self.config.state_machines
            && !known.contains(arn)
        {
            return Err(ApiError::new(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            ));
        }
        Ok(arn.to_string())
    }

    /// StartExecution with STANDARD idempotency.
    pub fn start_execution(
        &mut self,
        machine_arn: Option<&str>,
        name: Option<&str>,
        input: Option<&str>,
        now: Millis,
    ) -> Result<Started, ApiError> {
        self.advance(now);
        let machine_arn = self.check_machine(machine_arn)?;
        let name = match name {
            Some(name) => name.to_string(),
            None => Uuid::new_v4().to_string(),
        };
        if !is_valid_execution_name(&name) {
            return Err(ApiError::new(
                "InvalidName",
                format!("Invalid Name: '{name}'"),
            ));
        }
        let input = input.unwrap_or("{}");
        if input.len() > MAX_INPUT_BYTES {
            return Err(ApiError::new(
                "InvalidExecutionInput",
                format!(
                    "Invalid State Machine Execution Input: the input is {} bytes, over the {MAX_INPUT_BYTES}-byte limit",
                    input.len()
                ),
            ));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(input) {
            return Err(ApiError::new(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            ));
        }
        let execution_arn = execution_arn(&machine_arn, &name);
        let machine = self.machine_id(&machine_arn);
        let name: Arc<str> = Arc::from(name.as_str());
        if let Some(&index) = self.execution_ids.get(&(machine, name.clone())) {
            let existing = &self.executions[index as usize];
            let running = self.status_of(existing, now) == ExecutionStatus::Running;
            if running && &*existing.input == input {
                return Ok(Started {
                    execution_arn,
                    start_ms: existing.start,
                    duplicate: true,
                });
            }
            return Err(ApiError::new(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{execution_arn}'"),
            ));
        }
        let index = u32::try_from(self.executions.len()).expect("fewer than 2^32 executions");
        // The pre hook is decided now: the job is requested once it has ended.
        let parsed: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let mut task_at = now + self.config.execution_delay + self.next_task_delay();
        let hooks = match Hooks::read(&parsed, &self.config.hooks) {
            Ok(h) if !h.any() => None,
            request => {
                let instance = TaskInput::read(&parsed)
                    .resource_arn
                    .ok()
                    .and_then(|a| a.rsplit_once('/'))
                    .map_or(String::new(), |(_, id)| id.to_string());
                let pre = request
                    .as_ref()
                    .ok()
                    .and_then(|h| h.pre.as_ref())
                    .map(|p| self.command(&name, "pre", p, &instance, task_at));
                if let Some(p) = &pre {
                    task_at = p.ended_at_ms;
                }
                Some(Box::new(HookRun {
                    request,
                    pre,
                    post: None,
                    job_state_seen: None,
                    capped: false,
                }))
            }
        };
        self.executions.push(Execution {
            machine,
            name: name.clone(),
            input: input.into(),
            start: now,
            task_at,
            hooks,
            run: Run::Pending,
        });
        self.execution_ids.insert((machine, name), index);
        self.machine_executions[machine as usize].push(index);
        self.due.push(Reverse((task_at, index)));
        Ok(Started {
            execution_arn,
            start_ms: now,
            duplicate: false,
        })
    }

    /// Runs the modelled state machine's work for one execution at time `at`: its
    /// StartBackupJob task (after the pre hook), and decides the post hook.
    fn run_task(&mut self, index: u32, at: Millis) {
        let execution = &self.executions[index as usize];
        let input: Value = serde_json::from_str(&execution.input).unwrap_or(Value::Null);
        let task = TaskInput::read(&input);
        let name = execution.name.clone();
        let mut hook = self.executions[index as usize].hooks.take();
        let run = match hook.as_deref_mut() {
            Some(HookRun {
                request: Err(refusal),
                ..
            }) => Run::Failed {
                at,
                error: "PreCommandFailed",
                cause: refusal.clone().into(),
            },
            Some(h) if h.pre.as_ref().is_some_and(|p| p.status != "Success")
                && h.request.as_ref().is_ok_and(|r| r.skip_on_pre_failure) =>
            {
                // No backup; the post hook still runs, then PreCommandFailed.
                let pre = h.pre.as_ref().expect("checked");
                let cause = format!(
                    "pre hook failed: {}; OnPreHookFailure = skip: no backup was started",
                    pre.invocation()
                );
                let post = h.request.as_ref().ok().and_then(|r| r.post.clone());
                let instance = pre.instance_id.clone();
                h.post = post.map(|p| self.command(&name, "post", &p, &instance, at));
                Run::Failed {
                    at: h.post.as_ref().map_or(at, |p| p.ended_at_ms),
                    error: "PreCommandFailed",
                    cause: cause.into(),
                }
            }
            _ => match task.resource_arn {
                Err(problem) => Run::Failed {
                    at,
                    error: "States.Runtime",
                    cause: format!(
                        "An error occurred while executing the state 'StartBackupJob'. {problem} in the input '{}'",
                        self.executions[index as usize].input
                    )
                    .into(),
                },
                Ok(resource) => {
                    let request = JobRequest {
                        backup_vault_name: Some(task.vault.to_string()),
                        resource_arn: Some(resource.to_string()),
                        iam_role_arn: Some(
                            task.role
                                .map(str::to_string)
                                .unwrap_or_else(|| default_role(&self.config.account_id)),
                        ),
                        idempotency_token: Some(name.to_string()),
                        start_window_minutes: task.start_window_minutes,
                        backup_options: task.backup_options.cloned(),
                    };
                    if let Err(e) = check_backup_options(request.backup_options.as_ref(), resource)
                    {
                        Run::Failed {
                            at,
                            error: "StartBackupJobFailed",
                            cause: json!({"Error": format!("Backup.{}", e.code), "Cause": e.message})
                                .to_string()
                                .into(),
                        }
                    } else {
                        let (job, _) = self.create_job(request, Some(index), at);
                        let times = self.job_times(&self.jobs[job as usize]);
                        let mut stop = at;
                        let mut post_failure = None;
                        if let Some(h) = hook.as_deref_mut()
                            && let Ok(r) = &h.request
                            && let Some(post) = r.post.clone()
                        {
                            let (post_at, capped) = ssm::post_hook_time(
                                r,
                                &self.config.hooks,
                                at,
                                times.running_from,
                                times.ends,
                            );
                            let instance = resource.rsplit_once('/').map_or("", |(_, id)| id);
                            let sent = self.command(&name, "post", &post, instance, post_at);
                            h.capped = capped;
                            h.job_state_seen =
                                Some(self.job_state(&self.jobs[job as usize], post_at).as_str());
                            stop = sent.ended_at_ms;
                            if sent.status != "Success" {
                                post_failure = Some(
                                    format!(
                                        "post hook {} on {} ended {}: {} (exit code 1)",
                                        sent.command_id, sent.instance_id, sent.status, sent.status
                                    )
                                    .into(),
                                );
                            }
                            h.post = Some(sent);
                        }
                        // The copy branch: the machine polls the job every `end_poll` until it
                        // ends, then copies a COMPLETED one (after the post hook, if any).
                        let copy_to = input
                            .get("CopyTo")
                            .and_then(Value::as_array)
                            .filter(|c| !c.is_empty() && post_failure.is_none())
                            .cloned();
                        let copies = copy_to.map(|requests| {
                            let every = Millis::try_from(self.config.hooks.end_poll.as_millis())
                                .unwrap_or(Millis::MAX)
                                .max(1);
                            let rounds = ((times.ends - at).max(0) + every - 1) / every;
                            let copy_at = (at + rounds.max(1) * every).max(stop);
                            stop = copy_at;
                            Box::new(CopyRun {
                                at: copy_at,
                                requests,
                                results: Vec::new(),
                            })
                        });
                        let completed = self.job_state(&self.jobs[job as usize], times.ends)
                            == JobState::Completed;
                        let copies = copies.filter(|_| completed);
                        if let Some(c) = &copies {
                            self.copy_due.push(Reverse((c.at, index)));
                        }
                        Run::Job {
                            job,
                            stop,
                            post_failure,
                            copies,
                        }
                    }
                }
            },
        };
        let execution = &mut self.executions[index as usize];
        execution.hooks = hook;
        execution.run = run;
    }

    fn status_of(&self, execution: &Execution, now: Millis) -> ExecutionStatus {
        match &execution.run {
            Run::Pending => ExecutionStatus::Running,
            Run::Failed { at, .. } if now >= *at => ExecutionStatus::Failed,
            Run::Failed { .. } => ExecutionStatus::Running,
            Run::Job { stop, .. } if now < *stop => ExecutionStatus::Running,
            Run::Job { post_failure, .. } if post_failure.is_some() => ExecutionStatus::Failed,
            Run::Job { .. } => ExecutionStatus::Succeeded,
        }
    }

    fn find_execution(&self, arn: &str) -> Result<u32, ApiError> {
        let (machine_arn, name) = parse_execution_arn(arn)
            .ok_or_else(|| ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")))?;
        let not_found = || {
            ApiError::new(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}'"),
            )
        };
        let machine = *self
            .machine_ids
            .get(machine_arn.as_str())
            .ok_or_else(not_found)?;
        self.execution_ids
            .get(&(machine, Arc::from(name)))
            .copied()
            .ok_or_else(not_found)
    }

    fn execution_record(&self, index: u32, now: Millis) -> ExecutionRecord {
        let execution = &self.executions[index as usize];
        let machine_arn = &self.machines[execution.machine as usize];
        let status = self.status_of(execution, now);
        let mut record = ExecutionRecord {
            name: execution.name.to_string(),
            arn: execution_arn(machine_arn, &execution.name),
            state_machine_arn: machine_arn.to_string(),
            input: execution.input.to_string(),
            status,
            start_date: to_datetime(execution.start),
            stop_date: None,
            backup_job_id: None,
            output: None,
            error: None,
            cause: None,
        };
        match &execution.run {
            Run::Pending => {}
            Run::Failed { at, error, cause } => {
                if status == ExecutionStatus::Failed {
                    record.stop_date = Some(to_datetime(*at));
                    record.error = Some((*error).to_string());
                    record.cause = Some(cause.to_string());
                }
            }
            Run::Job {
                job,
                stop,
                post_failure,
                ..
            } => {
                let job = &self.jobs[*job as usize];
                record.backup_job_id = Some(job_id_text(job.id));
                match status {
                    ExecutionStatus::Running => {}
                    ExecutionStatus::Failed => {
                        record.stop_date = Some(to_datetime(*stop));
                        record.error = Some("PostCommandFailed".to_string());
                        record.cause = post_failure.as_deref().map(str::to_string);
                    }
                    ExecutionStatus::Succeeded => {
                        record.stop_date = Some(to_datetime(*stop));
                        record.output = Some(self.execution_output(execution, job, *stop));
                    }
                }
            }
        }
        record
    }

    /// The output of a SUCCEEDED execution: the StartBackupJob response, plus (with hooks) what
    /// the template's `Done` state merges in: the hook results and the job state seen.
    fn execution_output(&self, execution: &Execution, job: &Job, stop: Millis) -> String {
        let mut output = self.start_response_for_sfn(job);
        if let Run::Job {
            copies: Some(c), ..
        } = &execution.run
            && c.at <= stop
        {
            output["Copies"] = json!(c.results);
            output["BackupJob"] = json!({ "State": "COMPLETED" });
        }
        if let Some(h) = execution.hooks.as_deref() {
            let consistent = h.pre.as_ref().is_some_and(|p| p.status == "Success");
            output["AppConsistent"] = json!(if consistent { "true" } else { "false" });
            if let Some(p) = &h.pre {
                output["PreHook"] = p.invocation();
            }
            if let Some(p) = &h.post {
                output["PostHook"] = p.invocation();
            }
            if let Some(state) = h.job_state_seen {
                output["BackupJob"] = json!({ "State": state });
            }
            if h.capped {
                output["DowntimeCapped"] = json!(true);
            }
        }
        output.to_string()
    }

    /// The StartBackupJob response as Step Functions' SDK integrations render it (ISO dates).
    fn start_response_for_sfn(&self, job: &Job) -> Value {
        let mut response = json!({
            "BackupJobId": job_id_text(job.id),
            "CreationDate": iso_millis(job.created),
            "IsParent": false,
        });
        if let Some(arn) = self.start_response_recovery_point(job) {
            response["RecoveryPointArn"] = json!(arn);
        }
        response
    }

    /// StartBackupJob returns a RecoveryPointArn only for some resource types (not EC2).
    fn start_response_recovery_point(&self, job: &Job) -> Option<String> {
        (resource_service(&job.resource) != "ec2").then(|| self.recovery_point_arn(job))
    }

    /// DescribeExecution.
    pub fn describe_execution(
        &mut self,
        arn: &str,
        now: Millis,
    ) -> Result<ExecutionRecord, ApiError> {
        self.advance(now);
        let index = self.find_execution(arn)?;
        Ok(self.execution_record(index, now))
    }

    /// ListExecutions: newest first, `max` a page, `token` from the previous page.
    pub fn list_executions(
        &mut self,
        machine_arn: Option<&str>,
        status_filter: Option<&str>,
        max: usize,
        token: Option<&str>,
        now: Millis,
    ) -> Result<(Vec<ExecutionRecord>, Option<String>), ApiError> {
        self.advance(now);
        let machine_arn = self.check_machine(machine_arn)?;
        let Some(&machine) = self.machine_ids.get(machine_arn.as_str()) else {
            return Ok((Vec::new(), None));
        };
        let list = &self.machine_executions[machine as usize];
        let end = match token {
            None => list.len(),
            Some(token) => {
                let next = parse_token(token, &format!("e{machine}."))
                    .ok_or_else(|| ApiError::new("InvalidToken", "Invalid Token"))?;
                list.partition_point(|&index| index <= next)
            }
        };
        let matches = list[..end].iter().rev().copied().filter(|&index| {
            status_filter
                .is_none_or(|want| self.status_of(&self.executions[index as usize], now) == want)
        });
        let (page, next) = take_page(matches, max);
        let records = page
            .into_iter()
            .map(|index| self.execution_record(index, now))
            .collect();
        Ok((records, next.map(|index| format!("e{machine}.{index}"))))
    }

    /// GetExecutionHistory: the events that have happened by `now`.
    pub fn execution_history(
        &mut self,
        arn: &str,
        max: usize,
        reverse: bool,
        token: Option<&str>,
        now: Millis,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        self.advance(now);
        let index = self.find_execution(arn)?;
        let events = self.history_events(index, now);
        let from = match token {
            None => None,
            Some(token) => Some(
                parse_token(token, "h")
                    .ok_or_else(|| ApiError::new("InvalidToken", "Invalid Token"))?
                    as usize,
            ),
        };
        // Event ids are 1-based positions; the token is the id of the next event to return.
        let ids: Box<dyn Iterator<Item = usize>> = if reverse {
            let top = from.unwrap_or(events.len()).min(events.len());
            Box::new((1..=top).rev())
        } else {
            Box::new(from.unwrap_or(1).max(1)..=events.len())
        };
        let (page, next) = take_page(ids, max);
        let page = page.into_iter().map(|id| events[id - 1].clone()).collect();
        Ok((page, next.map(|id| format!("h{id}"))))
    }

    fn history_events(&self, index: u32, now: Millis) -> Vec<Value> {
        let execution = &self.executions[index as usize];
        let input: Value = serde_json::from_str(&execution.input).unwrap_or(Value::Null);
        let task = TaskInput::read(&input);
        let backup_role = task
            .role
            .map(str::to_string)
            .unwrap_or_else(|| default_role(&self.config.account_id));
        let outcome = match &execution.run {
            Run::Pending => history::Outcome::Pending,
            Run::Failed {
                at, error, cause, ..
            } => history::Outcome::FailedBeforeJob {
                at: *at,
                error,
                cause,
            },
            Run::Job {
                job,
                stop,
                post_failure,
                ..
            } => {
                let job = &self.jobs[*job as usize];
                history::Outcome::Job {
                    at: self.job_task_time(execution),
                    start_response: self.start_response_for_sfn(job).to_string(),
                    stop: *stop,
                    post_failure: post_failure.as_deref(),
                    output: self.execution_output(execution, job, *stop),
                }
            }
        };
        let timeline = history::Timeline {
            execution_name: &execution.name,
            input: &execution.input,
            task: &task,
            backup_role_arn: &backup_role,
            region: &self.config.region,
            account_id: &self.config.account_id,
            start: execution.start,
            task_at: execution.task_at,
            hooks: execution.hooks.as_deref(),
            outcome,
        };
        history::events(&timeline, now)
    }

    /// When an execution's task ran (its deadline, which `advance` back-dates to).
    fn job_task_time(&self, execution: &Execution) -> Millis {
        execution.task_at
    }

    /// StartBackupJob: a new job, or the one an earlier call with the same token created.
    /// Returns the job and whether it is new.
    pub fn start_backup_job(
        &mut self,
        request: JobRequest,
        now: Millis,
    ) -> Result<JobStarted, ApiError> {
        self.advance(now);
        for (member, value) in [
            ("BackupVaultName", &request.backup_vault_name),
            ("ResourceArn", &request.resource_arn),
            ("IamRoleArn", &request.iam_role_arn),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::new(
                    "MissingParameterValueException",
                    format!("{member} is required"),
                ));
            }
        }
        if request
            .resource_arn
            .as_deref()
            .is_some_and(|arn| !looks_like_arn(arn))
        {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!(
                    "Invalid ARN: {}",
                    request.resource_arn.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let (Some(resource), Err(e)) = (
            request.resource_arn.as_deref(),
            check_backup_options(
                request.backup_options.as_ref(),
                request.resource_arn.as_deref().unwrap_or_default(),
            ),
        ) {
            let _ = resource;
            return Err(e);
        }
        if let Some(minutes) = request.start_window_minutes
            && minutes < 60
        {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!("StartWindowMinutes must be at least 60, got {minutes}"),
            ));
        }
        let (job, new) = self.create_job(request, None, now);
        Ok(JobStarted {
            record: self.job_record(job, now),
            recovery_point_arn: self.start_response_recovery_point(&self.jobs[job as usize]),
            new,
        })
    }

    fn create_job(
        &mut self,
        request: JobRequest,
        execution: Option<u32>,
        at: Millis,
    ) -> (u32, bool) {
        if let Some(token) = &request.idempotency_token
            && let Some(&existing) = self.job_tokens.get(token.as_str())
        {
            return (existing, false);
        }
        let resource = self.intern(request.resource_arn.as_deref().unwrap_or_default());
        let vault = self.intern(
            request
                .backup_vault_name
                .as_deref()
                .unwrap_or(DEFAULT_VAULT),
        );
        let role = self.intern(request.iam_role_arn.as_deref().unwrap_or_default());
        let token = request
            .idempotency_token
            .as_deref()
            .map(|t| match execution {
                // The execution name is already held once; share it.
                Some(index) if *self.executions[index as usize].name == *t => {
                    self.executions[index as usize].name.clone()
                }
                _ => Arc::from(t),
            });
        // Jobs stay in creation order so that list pages and `createdAfter` can stop early.
        let created = at.max(self.last_job_created);
        self.last_job_created = created;
        let id = Uuid::new_v4();
        let fails = self
            .config
            .fail_resources
            .iter()
            .any(|pattern| !pattern.is_empty() && resource.contains(pattern.as_str()));
        let index = u32::try_from(self.jobs.len()).expect("fewer than 2^32 jobs");
        let timing = self
            .job_timings
            .iter()
            .find(|t| !t.resource.is_empty() && resource.contains(t.resource.as_str()));
        let (pending, running) =
            timing.map_or((self.config.job_pending, self.config.job_running), |t| {
                (
                    Millis::try_from(t.created_ms).unwrap_or(Millis::MAX),
                    Millis::try_from(t.running_ms).unwrap_or(Millis::MAX),
                )
            });
        self.jobs.push(Job {
            id,
            resource,
            vault,
            role,
            created,
            start_window_minutes: request
                .start_window_minutes
                .unwrap_or(DEFAULT_START_WINDOW_MINUTES),
            token: token.clone(),
            execution,
            fails,
            pending,
            running,
            backup_options: request.backup_options.map(Box::new),
        });
        self.job_ids.insert(id, index);
        if let Some(token) = token {
            self.job_tokens.insert(token, index);
        }
        (index, true)
    }

    fn job_times(&self, job: &Job) -> JobTimes {
        let running_from = job.created.saturating_add(job.pending);
        JobTimes {
            running_from,
            ends: running_from.saturating_add(job.running),
        }
    }

    fn job_state(&self, job: &Job, now: Millis) -> JobState {
        let times = self.job_times(job);
        if now < times.running_from {
            JobState::Created
        } else if now < times.ends {
            JobState::Running
        } else if job.fails {
            JobState::Failed
        } else {
            JobState::Completed
        }
    }

    fn recovery_point_arn(&self, job: &Job) -> String {
        let region = &self.config.region;
        if resource_service(&job.resource) == "ec2" {
            format!(
                "arn:aws:ec2:{region}::image/ami-{:017x}",
                job.id.as_u128() >> 60
            )
        } else {
            format!(
                "arn:aws:backup:{region}:{}:recovery-point:{}",
                self.config.account_id,
                job_id_text(job.id)
            )
        }
    }

    fn job_record(&self, index: u32, now: Millis) -> JobRecord {
        let job = &self.jobs[index as usize];
        let times = self.job_times(job);
        let state = self.job_state(job, now);
        let ceiling = if job.fails {
            FAILING_JOB_PROGRESS
        } else {
            100.0
        };
        let fraction = if job.running <= 0 || now >= times.ends {
            1.0
        } else {
            ((now - times.running_from) as f64 / job.running as f64).clamp(0.0, 1.0)
        };
        let percent = (fraction * ceiling * 10.0).floor() / 10.0;
        // A stable size per job, between 1 and 16 GiB.
        let size = GIB + (job.id.as_u128() % (15 * GIB as u128)) as u64;
        let transferred = (size as f64 * percent / 100.0) as i64;
        JobRecord {
            id: job_id_text(job.id),
            resource_arn: job.resource.to_string(),
            resource_type: resource_type(&job.resource),
            backup_vault_name: job.vault.to_string(),
            iam_role_arn: job.role.to_string(),
            state,
            percent_done: format!("{percent:.1}"),
            backup_size_in_bytes: if state == JobState::Completed {
                size as i64
            } else {
                transferred
            },
            bytes_transferred: transferred,
            status_message: (state == JobState::Failed).then(|| {
                format!(
                    "Backup job failed: the sandbox is configured to fail backups of {}",
                    job.resource
                )
            }),
            creation_date: to_datetime(job.created),
            start_by: to_datetime(job.created + job.start_window_minutes as Millis * 60_000),
            expected_completion_date: to_datetime(times.ends),
            completion_date: state.is_terminal().then(|| to_datetime(times.ends)),
            recovery_point_arn: self.recovery_point_arn(job),
            idempotency_token: job.token.as_deref().map(str::to_string),
            execution_name: job
                .execution
                .map(|e| self.executions[e as usize].name.to_string()),
            backup_options: job.backup_options.as_deref().cloned(),
        }
    }

    fn find_job_index(&self, id: &str) -> Option<u32> {
        let uuid = Uuid::parse_str(id).ok()?;
        self.job_ids.get(&uuid).copied()
    }

    /// DescribeBackupJob.
    pub fn describe_job(&mut self, id: &str, now: Millis) -> Result<JobRecord, ApiError> {
        self.advance(now);
        let index = self.find_job_index(id).ok_or_else(|| {
            ApiError::new(
                "ResourceNotFoundException",
                format!("Cannot find backup job with ID {id}"),
            )
        })?;
        Ok(self.job_record(index, now))
    }

    /// ListBackupJobs: newest first, a page of `listing`.
    pub fn list_jobs(
        &mut self,
        filter: &JobFilter,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<JobRecord>, Option<String>), ApiError> {
        self.advance(now);
        let (page, next) = listing.page(
            self.jobs.len(),
            "j",
            &self.config.account_id,
            |i| self.jobs[i].created,
            |i| self.job_matches(&self.jobs[i], filter, listing, now),
        )?;
        let records = page
            .into_iter()
            .map(|i| self.job_record(i as u32, now))
            .collect();
        Ok((records, next))
    }

    fn job_matches(&self, job: &Job, filter: &JobFilter, listing: &Listing, now: Millis) -> bool {
        let state = self.job_state(job, now);
        let completed = state.is_terminal().then(|| self.job_times(job).ends);
        filter
            .resource_arn
            .as_deref()
            .is_none_or(|arn| *job.resource == *arn)
            && filter.state.as_deref().is_none_or(|s| state == s)
            && filter
                .backup_vault_name
                .as_deref()
                .is_none_or(|v| *job.vault == *v)
            && filter
                .resource_type
                .as_deref()
                .is_none_or(|t| resource_type(&job.resource) == t)
            && listing.completed_in_window(completed)
    }

    /// Every execution, oldest first.
    pub fn executions(&mut self, now: Millis) -> Vec<ExecutionRecord> {
        self.advance(now);
        (0..self.executions.len() as u32)
            .map(|i| self.execution_record(i, now))
            .collect()
    }

    /// Every job, oldest first.
    pub fn jobs(&mut self, now: Millis) -> Vec<JobRecord> {
        self.advance(now);
        (0..self.jobs.len() as u32)
            .map(|i| self.job_record(i, now))
            .collect()
    }
}

/// StartBackupJob's `BackupOptions`: `WindowsVSS` = `enabled` | `disabled`, for EC2 only.
pub(crate) fn check_backup_options(
    options: Option<&Value>,
    resource: &str,
) -> Result<(), ApiError> {
    let Some(options) = options else {
        return Ok(());
    };
    let Some(map) = options.as_object() else {
        return Err(ApiError::new(
            "InvalidParameterValueException",
            "BackupOptions must be a map of strings",
        ));
    };
    for (key, value) in map {
        match (key.as_str(), value.as_str()) {
            ("WindowsVSS", Some("enabled" | "disabled")) => {
                if resource_type(resource) != "EC2" {
                    return Err(ApiError::new(
                        "InvalidParameterValueException",
                        format!(
                            "BackupOptions WindowsVSS is supported for EC2 instances only, not {resource}"
                        ),
                    ));
                }
            }
            ("WindowsVSS", _) => {
                return Err(ApiError::new(
                    "InvalidParameterValueException",
                    format!(
                        "BackupOptions WindowsVSS must be \"enabled\" or \"disabled\", got {value}"
                    ),
                ));
            }
            (other, _) => {
                return Err(ApiError::new(
                    "InvalidParameterValueException",
                    format!("Unsupported BackupOptions key {other:?} (expected WindowsVSS)"),
                ));
            }
        }
    }
    Ok(())
}

/// Takes up to `max` items; the item after them, if any, is where the next page starts.
fn take_page<T>(mut items: impl Iterator<Item = T>, max: usize) -> (Vec<T>, Option<T>) {
    let page: Vec<T> = items.by_ref().take(max).collect();
    (page, items.next())
}

fn parse_token(token: &str, prefix: &str) -> Option<u32> {
    token.strip_prefix(prefix)?.parse().ok()
}

/// Step Functions' rule for execution names (aws-facts.md, StartExecution).
pub(crate) fn is_valid_execution_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&chars)
        && !name.chars().any(|c| {
            c.is_whitespace()
                || FORBIDDEN_NAME_CHARS.contains(c)
                || ('\u{0}'..='\u{1f}').contains(&c)
                || ('\u{7f}'..='\u{9f}').contains(&c)
        })
}

/// `arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`.
pub(crate) fn is_state_machine_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "states"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5] == "stateMachine"
        && !parts[6].is_empty()
}

/// The execution ARN of `name` on a state machine.
pub(crate) fn execution_arn(machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// An execution ARN → (state machine ARN, name).
fn parse_execution_arn(arn: &str) -> Option<(String, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    let well_formed = parts.len() == 8
        && parts[0] == "arn"
        && parts[2] == "states"
        && parts[5] == "execution"
        && !parts[6].is_empty()
        && !parts[7].is_empty();
    if !well_formed {
        return None;
    }
    let machine = format!(
        "arn:{}:states:{}:{}:stateMachine:{}",
        parts[1], parts[3], parts[4], parts[6]
    );
    Some((machine, parts[7]))
}

fn resource_service(arn: &str) -> &str {
    arn.split(':').nth(2).unwrap_or_default()
}

/// AWS Backup's resource type names for the services the sandbox is likely to see.
fn resource_type(arn: &str) -> String {
    let service = resource_service(arn);
    match service {
        "ec2" if arn.contains(":volume/") => "EBS".to_string(),
        "ec2" => "EC2".to_string(),
        "elasticfilesystem" => "EFS".to_string(),
        "dynamodb" => "DynamoDB".to_string(),
        "rds" => "RDS".to_string(),
        "s3" => "S3".to_string(),
        other => other.to_uppercase(),
    }
}

/// True when a hook command asks to fail: it contains the word `fail`.
pub(crate) fn mentions_fail(command: &str) -> bool {
    command
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("fail"))
}

fn default_role(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/service-role/AWSBackupDefaultServiceRole")
}

/// AWS Backup job ids are upper-case UUIDs.
fn job_id_text(id: Uuid) -> String {
    id.hyphenated()
        .encode_upper(&mut Uuid::encode_buffer())
        .to_string()
}

/// Epoch milliseconds as a UTC date.
pub(crate) fn to_datetime(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2026-11-29T10:00:00.123Z`, how Step Functions renders SDK-integration timestamps.
pub(crate) fn iso_millis(ms: Millis) -> String {
    to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:backup";
    const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
    const T0: Millis = 1_800_000_000_000;

    fn world() -> World {
        World::new(WorldConfig {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            execution_delay: 200,
            job_pending: 1_000,
            job_running: 3_000,
            fail_resources: vec!["i-bad".into()],
            state_machines: None,
            hooks: HookSettings {
                end_poll: std::time::Duration::from_secs(5),
                ..HookSettings::default()
            },
            copy_pending: 1_000,
            copy_running: 2_000,
        })
    }

    const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
    const DR2: &str = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr";

    fn copy_input(resource: &str) -> String {
        json!({ "ResourceArn": resource, "Target": "web", "BackupVaultName": "orchestrator",
            "CopyTo": [
                { "DestinationBackupVaultArn": DR, "Lifecycle": { "DeleteAfterDays": 90 },
                  "IdempotencyToken": "copy-a" },
                { "DestinationBackupVaultArn": DR2, "Lifecycle": { "DeleteAfterDays": 365 },
                  "IdempotencyToken": "copy-b" }]})
        .to_string()
    }

    #[test]
    fn the_copy_branch_copies_a_completed_backup_after_the_job_poll() {
        let mut w = world();
        w.set_copy_rules(vec![CopyRule {
            destination: "eu-west-1".into(),
            refuse: true,
            ..CopyRule::default()
        }]);
        let s = w
            .start_execution(Some(SM), Some("n1"), Some(&copy_input(EC2)), T0)
            .unwrap();
        // Task at +200, job ends at +4,200; the machine's polls every 5 s: copies at +5,200.
        let running = w.describe_execution(&s.execution_arn, T0 + 5_199).unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert!(w.copy_jobs(T0 + 5_199).is_empty());
        let done = w.describe_execution(&s.execution_arn, T0 + 5_200).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let output: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        let copies = w.copy_jobs(T0 + 5_200);
        assert_eq!(copies.len(), 1, "the refused destination has no copy job");
        let c = &copies[0];
        assert_eq!(output["Copies"][0]["CopyJobId"], json!(c.id));
        assert_eq!(output["Copies"][0]["DestinationBackupVaultArn"], json!(DR));
        assert_eq!(output["Copies"][1]["Error"], "Backup.AccessDeniedException");
        assert_eq!(
            (c.delete_after_days, c.idempotency_token.as_deref()),
            (Some(90), Some("copy-a"))
        );
        assert_eq!(
            c.source_recovery_point_arn,
            w.jobs(T0 + 5_200)[0].recovery_point_arn
        );
        assert_eq!(w.copy_jobs(T0 + 8_200)[0].state, "COMPLETED");
    }

    #[test]
    fn a_failed_backup_starts_no_copy() {
        let mut w = world();
        let s = w
            .start_execution(
                Some(SM),
                Some("n1"),
                Some(&copy_input(
                    "arn:aws:ec2:us-east-1:123456789012:instance/i-bad",
                )),
                T0,
            )
            .unwrap();
        let done = w.describe_execution(&s.execution_arn, T0 + 60_000).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        assert_eq!(
            done.stop_date,
            Some(to_datetime(T0 + 5_200)),
            "it waited for the end"
        );
        assert!(done.output.unwrap().find("Copies").is_none());
        assert!(w.copy_jobs(T0 + 60_000).is_empty());
    }

    fn input(resource: &str) -> String {
        json!({ "ResourceArn": resource, "Target": "web" }).to_string()
    }

    #[test]
    fn names_follow_the_step_functions_rules() {
        assert!(is_valid_execution_name("web-1-20261129T100000Z"));
        assert!(is_valid_execution_name(&"x".repeat(80)));
        assert!(is_valid_execution_name("ünïcode.ok"));
        assert!(!is_valid_execution_name(""));
        assert!(!is_valid_execution_name(&"x".repeat(81)));
        for bad in [
            "a b", "a:b", "a/b", "a$b", "a\u{1}b", "a\u{85}b", "a\tb", "a`b",
        ] {
            assert!(!is_valid_execution_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn execution_arn_replaces_the_resource_type() {
        assert_eq!(
            execution_arn(SM, "n1"),
            "arn:aws:states:us-east-1:123456789012:execution:backup:n1"
        );
        let arn = execution_arn(SM, "n1");
        let (machine, name) = parse_execution_arn(&arn).unwrap();
        assert_eq!((machine.as_str(), name), (SM, "n1"));
    }

    #[test]
    fn start_is_idempotent_only_while_running_and_with_the_same_input() {
        let mut w = world();
        let first = w
            .start_execution(Some(SM), Some("n1"), Some(&input(EC2)), T0)
            .unwrap();
        assert!(!first.duplicate);
        let again = w
            .start_execution(Some(SM), Some("n1"), Some(&input(EC2)), T0 + 100)
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.execution_arn, again.start_ms),
            (first.execution_arn, T0)
        );
        let other_input = w.start_execution(Some(SM), Some("n1"), Some("{}"), T0 + 100);
        assert_eq!(other_input.unwrap_err().code, "ExecutionAlreadyExists");
        // The plain variant closes as soon as its task has run.
        let closed = w.start_execution(Some(SM), Some("n1"), Some(&input(EC2)), T0 + 200);
        assert_eq!(closed.unwrap_err().code, "ExecutionAlreadyExists");
    }

    #[test]
    fn plain_execution_succeeds_with_the_start_backup_job_response() {
        let mut w = world();
        let s = w
            .start_execution(Some(SM), Some("n1"), Some(&input(EC2)), T0)
            .unwrap();
        let running = w.describe_execution(&s.execution_arn, T0 + 199).unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert!(w.jobs(T0 + 199).is_empty());
        let done = w.describe_execution(&s.execution_arn, T0 + 250).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let output: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            output["BackupJobId"],
            json!(done.backup_job_id.clone().unwrap())
        );
        assert_eq!(output["IsParent"], json!(false));
        assert_eq!(done.stop_date, Some(to_datetime(T0 + 200)));
        let jobs = w.jobs(T0 + 250);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].creation_date, to_datetime(T0 + 200));
        assert_eq!(jobs[0].idempotency_token.as_deref(), Some("n1"));
        assert_eq!(jobs[0].execution_name.as_deref(), Some("n1"));
    }

    #[test]
    fn job_state_follows_time_and_fail_resources() {
        let mut w = world();
        let request = |arn: &str| JobRequest {
            backup_vault_name: Some("Default".into()),
            resource_arn: Some(arn.into()),
            iam_role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            idempotency_token: None,
            start_window_minutes: Some(60),
            backup_options: None,
        };
        let ok = w.start_backup_job(request(EC2), T0).unwrap().record;
        let bad_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-bad";
        let bad = w.start_backup_job(request(bad_arn), T0).unwrap().record;
        let at = |w: &mut World, id: &str, t| w.describe_job(id, t).unwrap();
        assert_eq!(at(&mut w, &ok.id, T0 + 999).state, JobState::Created);
        let half = at(&mut w, &ok.id, T0 + 2_500);
        assert_eq!(
            (half.state, half.percent_done.as_str()),
            (JobState::Running, "50.0")
        );
        let done = at(&mut w, &ok.id, T0 + 4_000);
        assert_eq!(
            (done.state, done.percent_done.as_str()),
            (JobState::Completed, "100.0")
        );
        assert_eq!(done.completion_date, Some(to_datetime(T0 + 4_000)));
        let failed = at(&mut w, &bad.id, T0 + 4_000);
        assert_eq!(failed.state, JobState::Failed);
        assert!(failed.status_message.is_some());
        assert_eq!(
            w.describe_job("00000000-0000-0000-0000-000000000000", T0)
                .unwrap_err()
                .code,
            "ResourceNotFoundException"
        );
    }

    #[test]
    fn the_same_token_returns_the_same_job() {
        let mut w = world();
        let request = JobRequest {
            backup_vault_name: Some("Default".into()),
            resource_arn: Some(EC2.into()),
            iam_role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            idempotency_token: Some("tok".into()),
            start_window_minutes: None,
            backup_options: None,
        };
        let a = w.start_backup_job(request.clone(), T0).unwrap();
        let b = w.start_backup_job(request, T0 + 5).unwrap();
        assert!(a.new && !b.new);
        assert_eq!(a.record.id, b.record.id);
        assert_eq!(w.jobs(T0 + 5).len(), 1);
    }

    fn doc(action: &str) -> Value {
        json!({"Name": "orchestrator-systemd-unit", "Version": "$DEFAULT",
               "Parameters": {"action": [action], "unit": ["db"]}})
    }

    #[test]
    fn hooks_run_around_the_job_with_the_post_hook_at_its_start() {
        // Polls every 1 s; CREATED 2.5 s, RUNNING 3 s (world()), commands 200 ms.
        let mut w = world();
        w.config.hooks.start_poll = std::time::Duration::from_secs(1);
        let hooked = json!({ "ResourceArn": EC2, "PreDocument": doc("stop"),
                             "PostDocument": doc("start") })
        .to_string();
        w.set_job_timings(vec![JobTiming {
            resource: "i-0123".into(),
            created_ms: 2_500,
            running_ms: 3_000,
        }]);
        let s = w
            .start_execution(Some(SM), Some("h1"), Some(&hooked), T0)
            .unwrap();
        // Pre hook 200..400 ms, job requested at 400 ms, RUNNING from 2.9 s: polled at 3.4 s.
        assert_eq!(w.jobs(T0 + 399).len(), 0, "the job waits for the pre hook");
        let mid = w.describe_execution(&s.execution_arn, T0 + 3_500).unwrap();
        assert_eq!(mid.status, ExecutionStatus::Running);
        let sent = w.ssm_commands(T0 + 3_500);
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].phase, sent[0].sent_at_ms), ("pre", T0 + 200));
        assert_eq!((sent[1].phase, sent[1].sent_at_ms), ("post", T0 + 3_400));
        assert_eq!(
            sent[1].parameters,
            json!({"action": ["start"], "unit": ["db"]})
        );
        let end = w.describe_execution(&s.execution_arn, T0 + 3_600).unwrap();
        assert_eq!(
            end.status,
            ExecutionStatus::Succeeded,
            "before the job ends"
        );
        assert_eq!(w.jobs(T0 + 3_600)[0].state, JobState::Running);
        let output: Value = serde_json::from_str(end.output.as_deref().unwrap()).unwrap();
        assert_eq!(output["BackupJob"], json!({"State": "RUNNING"}));
        assert_eq!(output["AppConsistent"], json!("true"));

        // A refused document: PreCommandFailed, nothing sent, no job.
        let outside = json!({ "ResourceArn": EC2, "PreDocument": {"Name": "AWS-RunShellScript"} })
            .to_string();
        let s = w
            .start_execution(Some(SM), Some("h2"), Some(&outside), T0)
            .unwrap();
        let failed = w.describe_execution(&s.execution_arn, T0 + 200).unwrap();
        assert_eq!(failed.error.as_deref(), Some("PreCommandFailed"));
        assert!(failed.cause.unwrap().contains("HookDocumentPrefix"));
        assert_eq!(failed.backup_job_id, None);

        // A failing post hook is reported.
        w.set_command_rules(vec![CommandRule {
            phase: Some("post".into()),
            status: Some("Failed".into()),
            ..CommandRule::default()
        }]);
        let s = w
            .start_execution(Some(SM), Some("h3"), Some(&hooked), T0)
            .unwrap();
        let failed = w.describe_execution(&s.execution_arn, T0 + 10_000).unwrap();
        assert_eq!(failed.error.as_deref(), Some("PostCommandFailed"));
        assert!(failed.backup_job_id.is_some());
    }

    #[test]
    fn backup_options_are_validated() {
        assert!(check_backup_options(Some(&json!({"WindowsVSS": "enabled"})), EC2).is_ok());
        assert!(check_backup_options(None, EC2).is_ok());
        let bad = check_backup_options(Some(&json!({"WindowsVSS": "on"})), EC2).unwrap_err();
        assert_eq!(bad.code, "InvalidParameterValueException");
        let ebs = "arn:aws:ec2:us-east-1:123456789012:volume/vol-1";
        assert!(check_backup_options(Some(&json!({"WindowsVSS": "enabled"})), ebs).is_err());
        assert!(check_backup_options(Some(&json!({"Other": "x"})), EC2).is_err());
    }

    #[test]
    fn missing_resource_fails_with_states_runtime() {
        let mut w = world();
        let s = w
            .start_execution(Some(SM), Some("r1"), Some("{}"), T0)
            .unwrap();
        let failed = w.describe_execution(&s.execution_arn, T0 + 200).unwrap();
        assert_eq!(failed.error.as_deref(), Some("States.Runtime"));
        assert!(failed.cause.unwrap().contains("$.ResourceArn"));
    }

    #[test]
    fn executions_list_newest_first_across_pages() {
        let mut w = world();
        for i in 0..5 {
            w.start_execution(Some(SM), Some(&format!("n{i}")), Some(&input(EC2)), T0 + i)
                .unwrap();
        }
        let (page1, token) = w.list_executions(Some(SM), None, 2, None, T0 + 10).unwrap();
        assert_eq!(
            page1.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["n4", "n3"]
        );
        let (page2, token) = w
            .list_executions(Some(SM), None, 2, token.as_deref(), T0 + 10)
            .unwrap();
        assert_eq!(
            page2.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["n2", "n1"]
        );
        let (page3, token) = w
            .list_executions(Some(SM), None, 2, token.as_deref(), T0 + 10)
            .unwrap();
        assert_eq!(page3.len(), 1);
        assert_eq!(token, None);
        let (succeeded, _) = w
            .list_executions(Some(SM), Some("SUCCEEDED"), 100, None, T0 + 10)
            .unwrap();
        assert!(succeeded.is_empty());
    }

    #[test]
    fn jobs_filter_by_creation_date_and_state() {
        let mut w = world();
        for i in 0..4 {
            let request = JobRequest {
                backup_vault_name: Some("Default".into()),
                resource_arn: Some(format!("{EC2}{i}")),
                iam_role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
                ..JobRequest::default()
            };
            w.start_backup_job(request, T0 + i * 1_000).unwrap();
        }
        let listing = Listing {
            created_after: Some(T0 + 1_000),
            ..Listing::default()
        };
        let (jobs, _) = w
            .list_jobs(&JobFilter::default(), &listing, T0 + 3_500)
            .unwrap();
        assert_eq!(jobs.len(), 3);
        let filter = JobFilter {
            state: Some("RUNNING".into()),
            ..JobFilter::default()
        };
        let (running, _) = w
            .list_jobs(&filter, &Listing::default(), T0 + 3_500)
            .unwrap();
        // Created at T0 (+1s pending: running from T0+1000 to T0+4000), T0+1000, T0+2000.
        assert_eq!(running.len(), 3);
    }
}
