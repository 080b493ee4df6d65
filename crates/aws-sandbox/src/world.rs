//! The sandbox's world: executions of the modelled state machine, and the backup and copy jobs
//! they start, whose states follow from their timestamps.
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

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::basics::{ApiError, Millis, duration_ms, iso_millis, to_datetime};
use super::copy::{CopyFilter, CopyJobRecord, CopyJobs, CopyRequest, CopyRule, Source};
use super::history;
use super::input::TaskInput;
use super::jobs::{
    BackupJobs, JobFilter, JobRecord, JobRequest, JobSettings, JobStarted, JobState, JobTiming,
    check_backup_options,
};
use super::listing::Listing;
use super::names::{
    execution_arn, is_state_machine_arn, is_valid_execution_name, parse_execution_arn, parse_token,
    take_page,
};
use super::ssm::{self, CommandRecord, CommandRule, HookRun, HookSettings, Hooks};

/// Step Functions' limit on an execution input, in bytes.
pub(crate) const MAX_INPUT_BYTES: usize = 256 * 1024;

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

/// The result of an accepted StartExecution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub execution_arn: String,
    pub start_ms: Millis,
    /// True when this was an idempotent repeat of a RUNNING execution.
    pub duplicate: bool,
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

/// Every execution and job the sandbox holds, and the indexes that find them.
#[derive(Debug)]
pub(crate) struct World {
    config: WorldConfig,
    machines: Vec<Arc<str>>,
    machine_ids: HashMap<Arc<str>, u32>,
    machine_executions: Vec<Vec<u32>>,
    executions: Vec<Execution>,
    execution_ids: HashMap<(u32, Arc<str>), u32>,
    due: BinaryHeap<Reverse<(Millis, u32)>>,
    /// Backup jobs, from the wire or the machine's StartBackupJob task.
    jobs: BackupJobs,
    /// `/_sandbox/ssm-rules`: how hook commands run.
    command_rules: Vec<CommandRule>,
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
            machines: Vec::new(),
            machine_ids: HashMap::new(),
            machine_executions: Vec::new(),
            executions: Vec::new(),
            execution_ids: HashMap::new(),
            due: BinaryHeap::new(),
            jobs: BackupJobs::new(JobSettings {
                account_id: config.account_id.clone(),
                region: config.region.clone(),
                pending: config.job_pending,
                running: config.job_running,
                fail_resources: config.fail_resources.clone(),
            }),
            command_rules: Vec::new(),
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
        let job = self.jobs.find_by_recovery_point(&rp).ok_or_else(|| {
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
        let state = self.jobs.state(job, at);
        if state != JobState::Completed {
            return Err(ApiError::new(
                "InvalidRequestException",
                format!(
                    "Recovery point {} is not available (its backup job is {state})",
                    self.jobs.recovery_point_arn(job),
                ),
            ));
        }
        let vault = self.jobs.vault(job);
        if request.source_backup_vault_name.as_deref() != Some(vault) {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!(
                    "Recovery point {} is not in vault {}",
                    self.jobs.recovery_point_arn(job),
                    request
                        .source_backup_vault_name
                        .as_deref()
                        .unwrap_or_default()
                ),
            ));
        }
        let source = Source {
            resource_arn: self.jobs.resource(job).to_string(),
            vault_arn: format!(
                "arn:aws:backup:{}:{}:backup-vault:{vault}",
                self.config.region, self.config.account_id
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
        let vault = self.jobs.vault(job).to_string();
        let role = self.jobs.role(job).to_string();
        let rp = self.jobs.recovery_point_arn(job);
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
        self.jobs.set_timings(timings);
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

    /// StartExecution's checks of the name and input, as Step Functions makes them.
    fn check_start(name: Option<&str>, input: &str) -> Result<String, ApiError> {
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
        Ok(name)
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
        let input = input.unwrap_or("{}");
        let name = Self::check_start(name, input)?;
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
        let parsed: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let mut task_at = now + self.config.execution_delay + self.next_task_delay();
        let hooks = self.pre_hook(&name, &parsed, &mut task_at);
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

    /// Decides an execution's hooks when it starts: the pre hook runs first (from `task_at`,
    /// which it moves to its end: the job is requested once it has ended). None without hooks.
    fn pre_hook(&self, name: &str, input: &Value, task_at: &mut Millis) -> Option<Box<HookRun>> {
        let request = match Hooks::read(input, &self.config.hooks) {
            Ok(h) if !h.any() => return None,
            request => request,
        };
        let instance = TaskInput::read(input)
            .resource_arn
            .ok()
            .and_then(|a| a.rsplit_once('/'))
            .map_or(String::new(), |(_, id)| id.to_string());
        let pre = request
            .as_ref()
            .ok()
            .and_then(|h| h.pre.as_ref())
            .map(|p| self.command(name, "pre", p, &instance, *task_at));
        if let Some(p) = &pre {
            *task_at = p.ended_at_ms;
        }
        Some(Box::new(HookRun {
            request,
            pre,
            post: None,
            job_state_seen: None,
            capped: false,
        }))
    }

    /// Runs the modelled state machine's work for one execution at time `at`: its
    /// StartBackupJob task (after the pre hook), then decides the post hook and the copies.
    fn run_task(&mut self, index: u32, at: Millis) {
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
            Some(h)
                if h.pre.as_ref().is_some_and(|p| p.status != "Success")
                    && h.request.as_ref().is_ok_and(|r| r.skip_on_pre_failure) =>
            {
                self.skip_backup(index, h, at)
            }
            h => self.start_backup(index, h, at),
        };
        let execution = &mut self.executions[index as usize];
        execution.hooks = hook;
        execution.run = run;
    }

    /// A failed pre hook with `OnPreHookFailure = skip`: no backup; the post hook still runs,
    /// then the execution fails with PreCommandFailed.
    fn skip_backup(&self, index: u32, h: &mut HookRun, at: Millis) -> Run {
        let name = &self.executions[index as usize].name;
        let pre = h.pre.as_ref().expect("a failed pre hook");
        let cause = format!(
            "pre hook failed: {}; OnPreHookFailure = skip: no backup was started",
            pre.invocation()
        );
        let post = h.request.as_ref().ok().and_then(|r| r.post.clone());
        let instance = pre.instance_id.clone();
        h.post = post.map(|p| self.command(name, "post", &p, &instance, at));
        Run::Failed {
            at: h.post.as_ref().map_or(at, |p| p.ended_at_ms),
            error: "PreCommandFailed",
            cause: cause.into(),
        }
    }

    /// The StartBackupJob task with the input's members, then the post hook and the copy
    /// branch it leads to.
    fn start_backup(&mut self, index: u32, hook: Option<&mut HookRun>, at: Millis) -> Run {
        let execution = &self.executions[index as usize];
        let name = execution.name.clone();
        let input: Value = serde_json::from_str(&execution.input).unwrap_or(Value::Null);
        let task = TaskInput::read(&input);
        let resource = match task.resource_arn {
            Ok(resource) => resource,
            Err(problem) => {
                return Run::Failed {
                    at,
                    error: "States.Runtime",
                    cause: format!(
                        "An error occurred while executing the state 'StartBackupJob'. {problem} in the input '{}'",
                        execution.input
                    )
                    .into(),
                };
            }
        };
        let request = JobRequest {
            backup_vault_name: Some(task.vault.to_string()),
            resource_arn: Some(resource.to_string()),
            iam_role_arn: Some(
                task.role
                    .map_or_else(|| default_role(&self.config.account_id), str::to_string),
            ),
            idempotency_token: Some(name.to_string()),
            start_window_minutes: task.start_window_minutes,
            backup_options: task.backup_options.cloned(),
        };
        if let Err(e) = check_backup_options(request.backup_options.as_ref(), resource) {
            return Run::Failed {
                at,
                error: "StartBackupJobFailed",
                cause: json!({"Error": format!("Backup.{}", e.code), "Cause": e.message})
                    .to_string()
                    .into(),
            };
        }
        let (job, _) = self.jobs.create(request, Some(&name), at);
        let (stop, post_failure) = match hook {
            Some(h) => self.post_hook(&name, h, resource, job, at),
            None => (at, None),
        };
        let (stop, copies) = if post_failure.is_none() {
            self.plan_copies(index, &input, job, at, stop)
        } else {
            (stop, None)
        };
        Run::Job {
            job,
            stop,
            post_failure,
            copies,
        }
    }

    /// Sends the post hook (if the input has one) when the machine's job polls let it go.
    /// Returns when the execution can close and why it fails, if the hook failed.
    fn post_hook(
        &self,
        name: &str,
        h: &mut HookRun,
        resource: &str,
        job: u32,
        at: Millis,
    ) -> (Millis, Option<Box<str>>) {
        let Ok(request) = &h.request else {
            return (at, None);
        };
        let Some(post) = request.post.clone() else {
            return (at, None);
        };
        let times = self.jobs.times(job);
        let (post_at, capped) = ssm::post_hook_time(
            request,
            &self.config.hooks,
            at,
            times.running_from,
            times.ends,
        );
        let instance = resource.rsplit_once('/').map_or("", |(_, id)| id);
        let sent = self.command(name, "post", &post, instance, post_at);
        h.capped = capped;
        h.job_state_seen = Some(self.jobs.state(job, post_at).as_str());
        let stop = sent.ended_at_ms;
        let failure = (sent.status != "Success").then(|| {
            format!(
                "post hook {} on {} ended {}: {} (exit code 1)",
                sent.command_id, sent.instance_id, sent.status, sent.status
            )
            .into()
        });
        h.post = Some(sent);
        (stop, failure)
    }

    /// The copy branch: the machine polls the job every `end_poll` until it ends, then copies
    /// a COMPLETED one (after the post hook, if any). Returns when the execution closes and the
    /// copies it makes (none without `CopyTo`, or when the job does not complete).
    fn plan_copies(
        &mut self,
        index: u32,
        input: &Value,
        job: u32,
        at: Millis,
        stop: Millis,
    ) -> (Millis, Option<Box<CopyRun>>) {
        let Some(requests) = input
            .get("CopyTo")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        else {
            return (stop, None);
        };
        let times = self.jobs.times(job);
        let every = duration_ms(self.config.hooks.end_poll).max(1);
        let rounds = ((times.ends - at).max(0) + every - 1) / every;
        let copy_at = (at + rounds.max(1) * every).max(stop);
        if self.jobs.state(job, times.ends) != JobState::Completed {
            // The machine waited for the job's end, then had nothing to copy.
            return (copy_at, None);
        }
        self.copy_due.push(Reverse((copy_at, index)));
        let run = CopyRun {
            at: copy_at,
            requests: requests.clone(),
            results: Vec::new(),
        };
        (copy_at, Some(Box::new(run)))
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
                record.backup_job_id = Some(self.jobs.id(*job));
                match status {
                    ExecutionStatus::Running => {}
                    ExecutionStatus::Failed => {
                        record.stop_date = Some(to_datetime(*stop));
                        record.error = Some("PostCommandFailed".to_string());
                        record.cause = post_failure.as_deref().map(str::to_string);
                    }
                    ExecutionStatus::Succeeded => {
                        record.stop_date = Some(to_datetime(*stop));
                        record.output = Some(self.execution_output(execution, *job, *stop));
                    }
                }
            }
        }
        record
    }

    /// The output of a SUCCEEDED execution: the StartBackupJob response, plus (with hooks) what
    /// the template's `Done` state merges in: the hook results and the job state seen.
    fn execution_output(&self, execution: &Execution, job: u32, stop: Millis) -> String {
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
    fn start_response_for_sfn(&self, job: u32) -> Value {
        let mut response = json!({
            "BackupJobId": self.jobs.id(job),
            "CreationDate": iso_millis(self.jobs.created(job)),
            "IsParent": false,
        });
        if let Some(arn) = self.jobs.start_response_recovery_point(job) {
            response["RecoveryPointArn"] = json!(arn);
        }
        response
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
            .map_or_else(|| default_role(&self.config.account_id), str::to_string);
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
            } => history::Outcome::Job {
                // The task ran at its deadline, which `advance` back-dates to.
                at: execution.task_at,
                start_response: self.start_response_for_sfn(*job).to_string(),
                stop: *stop,
                post_failure: post_failure.as_deref(),
                output: self.execution_output(execution, *job, *stop),
            },
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

    /// StartBackupJob from the wire: a new job, or the one an earlier call with the same token
    /// created.
    pub fn start_backup_job(
        &mut self,
        request: JobRequest,
        now: Millis,
    ) -> Result<JobStarted, ApiError> {
        self.advance(now);
        self.jobs.start(request, now)
    }

    /// DescribeBackupJob.
    pub fn describe_job(&mut self, id: &str, now: Millis) -> Result<JobRecord, ApiError> {
        self.advance(now);
        self.jobs.describe(id, now)
    }

    /// ListBackupJobs: newest first, a page of `listing`.
    pub fn list_jobs(
        &mut self,
        filter: &JobFilter,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<JobRecord>, Option<String>), ApiError> {
        self.advance(now);
        self.jobs.list(filter, listing, now)
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
        self.jobs.all(now)
    }
}

/// The role the modelled machine passes when the input names none.
fn default_role(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/service-role/AWSBackupDefaultServiceRole")
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
}
