//! The sandbox's world: executions of the modelled state machine, and the backup and copy jobs
//! they start, whose states follow from their timestamps.
//!
//! No I/O and no clock: every method takes `now` (epoch milliseconds). A job's state is computed
//! from its creation time when somebody reads it, so 100,000 jobs cost no timers. The one step
//! that cannot be lazy is an execution's StartBackupJob task, because it creates a job that other
//! callers can see: those tasks wait in a deadline heap and run (back-dated to their deadline)
//! on the first call that observes a time past it.

mod backup;
mod backup_history;
mod recovery_points;
mod restore;
mod restore_history;
mod runs;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::basics::{ApiError, Millis, to_datetime};
use super::copy::{CopyFilter, CopyJobRecord, CopyJobs, CopyRequest, CopyRule, Source};
use super::events;
use super::jobs::{
    BackupJobs, JobFilter, JobRecord, JobRequest, JobSettings, JobStarted, JobState, JobTiming,
};
use super::listing::Listing;
use super::names::{
    execution_arn, is_state_machine_arn, is_valid_execution_name, parse_execution_arn, parse_token,
    take_page,
};
use super::restores::{
    RestoreFilter, RestoreJobRecord, RestoreJobs, RestoreRule, RestoreSettings, RestoredInstance,
};
use super::ssm::{self, CommandRecord, CommandRule, HookRun, HookSettings};
use super::stack::StackParameters;
use super::validate::Rules;

use runs::{CopyRun, CopySource, RestoreRun, SweepRun};

pub use runs::RecoveryPointRecord;
pub(crate) use runs::{Place, PointFilter};

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
    pub stack: StackParameters,
    pub restore: RestoreSettings,
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
    /// The restore job its StartRestoreJob task created (restore machine), once it has.
    pub restore_job_id: Option<String>,
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

/// How an execution went, as far as the world has decided.
#[derive(Debug)]
enum Run {
    /// Its first task has not run yet.
    Pending,
    /// `Validate` refused the input (`InputRefused`): nothing was sent.
    Refused { at: Millis, cause: Box<str> },
    /// It failed before creating a job (the pre hook failed with `OnPreHookFailure = skip`).
    Failed {
        at: Millis,
        error: &'static str,
        cause: Box<str>,
    },
    /// Its StartBackupJob task created (or found, by idempotency token) `job`; it closes at
    /// `stop`, failed when its post hook failed.
    Job {
        job: u32,
        stop: Millis,
        post_failure: Option<Box<str>>,
    },
    /// A copy execution (`Action: copy`), decided and closed at once.
    Copy(Box<CopyRun>),
    /// A restore test or an on-demand restore (restore machine), decided at its first task.
    Restore(Box<RestoreRun>),
    /// A sweep (restore machine), decided and closed at once.
    Sweep(Box<SweepRun>),
}

#[derive(Debug)]
struct Execution {
    machine: u32,
    name: Arc<str>,
    input: Box<str>,
    start: Millis,
    /// When its first task after the pre hook runs (StartBackupJob, DescribeCopySource).
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
    /// Copy jobs, from the wire or the machine's copy executions.
    copy_jobs: CopyJobs,
    /// Restore jobs and the instances they launch, from the wire or the restore machine.
    restores: RestoreJobs,
    /// `/_sandbox/restore-metadata`: what restores of an instance get back, by instance ARN.
    metadata_overrides: HashMap<String, BTreeMap<String, String>>,
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
            restores: RestoreJobs::new(config.restore.clone()),
            metadata_overrides: HashMap::new(),
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
        let hooks = self
            .executions
            .iter()
            .filter_map(|e| e.hooks.as_deref())
            .flat_map(|h| h.pre.iter().chain(h.post.iter()));
        let validations = self.executions.iter().filter_map(|e| match &e.run {
            Run::Restore(run) => run.validation.as_ref(),
            _ => None,
        });
        let mut all: Vec<CommandRecord> = hooks
            .chain(validations)
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
        while let Some(&Reverse((at, index))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            self.run_task(index, at);
        }
    }

    /// The rules `Validate` judges an input of `machine` by: the partition, region and account
    /// of its ARN (where its stack is deployed), the stack parameters and hook settings.
    fn rules(&self, machine: u32) -> Rules<'_> {
        let parts: Vec<&str> = self.machines[machine as usize].split(':').collect();
        Rules {
            partition: parts.get(1).copied().unwrap_or("aws"),
            region: parts.get(3).copied().unwrap_or_default(),
            account: parts.get(4).copied().unwrap_or_default(),
            stack: &self.config.stack,
            hooks: &self.config.hooks,
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
        let first = now + self.config.execution_delay + self.next_task_delay();
        self.executions.push(Execution {
            machine,
            name: name.clone(),
            input: input.into(),
            start: now,
            task_at: first,
            hooks: None,
            run: Run::Pending,
        });
        self.execution_ids.insert((machine, name), index);
        self.machine_executions[machine as usize].push(index);
        if self.is_restore_machine(machine) {
            self.begin_restore(index, first);
        } else {
            self.begin_backup(index, first);
        }
        Ok(Started {
            execution_arn,
            start_ms: now,
            duplicate: false,
        })
    }

    /// Runs execution `index`'s task that was due at `at`.
    fn run_task(&mut self, index: u32, at: Millis) {
        if self.is_restore_machine(self.executions[index as usize].machine) {
            self.run_restore_task(index, at);
        } else {
            self.run_backup_task(index, at);
        }
    }

    fn status_of(&self, execution: &Execution, now: Millis) -> ExecutionStatus {
        let (stop, failed) = match &execution.run {
            Run::Pending => return ExecutionStatus::Running,
            Run::Refused { at, .. } | Run::Failed { at, .. } => (*at, true),
            Run::Job {
                stop, post_failure, ..
            } => (*stop, post_failure.is_some()),
            Run::Copy(run) => (
                execution.task_at,
                !matches!(run.source, CopySource::Found(_)),
            ),
            Run::Restore(run) => (run.end, run.error.is_some()),
            Run::Sweep(run) => (run.at, run.outcome != "Swept"),
        };
        match (now < stop, failed) {
            (true, _) => ExecutionStatus::Running,
            (false, true) => ExecutionStatus::Failed,
            (false, false) => ExecutionStatus::Succeeded,
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
            restore_job_id: None,
            output: None,
            error: None,
            cause: None,
        };
        self.job_ids_of(index, now, &mut record);
        if status == ExecutionStatus::Running {
            return record;
        }
        let (stop, outcome) = self.closing(index);
        record.stop_date = Some(to_datetime(stop));
        match outcome {
            Ok(output) => record.output = Some(output),
            Err((error, cause)) => {
                record.error = Some(error.to_string());
                record.cause = Some(cause);
            }
        }
        record
    }

    /// The backup or restore job an execution's task created, once it has by `now`.
    fn job_ids_of(&self, index: u32, now: Millis, record: &mut ExecutionRecord) {
        match &self.executions[index as usize].run {
            Run::Job { job, .. } => record.backup_job_id = Some(self.jobs.id(*job)),
            Run::Restore(run) if run.at <= now => {
                if let Some((_, Ok(r))) = &run.started {
                    record.restore_job_id = Some(self.restores.id(*r));
                }
            }
            _ => {}
        }
    }

    /// When a decided execution closes, and its output or its error and cause.
    fn closing(&self, index: u32) -> (Millis, Result<String, (&'static str, String)>) {
        let execution = &self.executions[index as usize];
        match &execution.run {
            Run::Pending => (Millis::MAX, Err(("", String::new()))),
            Run::Refused { at, cause } => (*at, Err(("InputRefused", cause.to_string()))),
            Run::Failed { at, error, cause } => (*at, Err((error, cause.to_string()))),
            Run::Job {
                stop,
                post_failure: Some(cause),
                ..
            } => (*stop, Err(("PostCommandFailed", cause.to_string()))),
            Run::Job {
                job,
                stop,
                post_failure: None,
            } => (*stop, Ok(self.backup_output(index, *job))),
            Run::Copy(run) => {
                let at = execution.task_at;
                match &run.source {
                    CopySource::Unavailable(cause) => {
                        (at, Err(("CopySourceUnavailable", cause.to_string())))
                    }
                    CopySource::Refused { cause, .. } => {
                        (at, Err(("InputRefused", cause.to_string())))
                    }
                    CopySource::Found(_) => (at, Ok(World::copy_output(run))),
                }
            }
            Run::Restore(run) => (run.end, World::restore_closing(run)),
            Run::Sweep(run) => (run.at, World::sweep_closing(run, &execution.input)),
        }
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
        if self.is_restore_machine(self.executions[index as usize].machine) {
            self.restore_history(index, now)
        } else {
            self.backup_history(index, now)
        }
    }

    /// How many states execution `arn` has entered by `now` (Standard workflows bill each).
    pub fn state_transitions(&mut self, arn: &str, now: Millis) -> Result<usize, ApiError> {
        self.advance(now);
        let index = self.find_execution(arn)?;
        Ok(events::transitions(&self.history_events(index, now)))
    }

    /// Every execution's name, ARN and state transitions so far, oldest first.
    pub fn transitions(&mut self, now: Millis) -> Vec<Value> {
        self.advance(now);
        (0..self.executions.len() as u32)
            .map(|i| {
                let e = &self.executions[i as usize];
                let arn = execution_arn(&self.machines[e.machine as usize], &e.name);
                serde_json::json!({
                    "name": &*e.name,
                    "arn": arn,
                    "transitions": events::transitions(&self.history_events(i, now)),
                })
            })
            .collect()
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

    /// DescribeRestoreJob.
    pub fn describe_restore_job(
        &mut self,
        id: &str,
        now: Millis,
    ) -> Result<RestoreJobRecord, ApiError> {
        self.advance(now);
        self.restores.describe(id, now)
    }

    /// ListRestoreJobs: newest first, a page of `listing`.
    pub fn list_restore_jobs(
        &mut self,
        filter: &RestoreFilter,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<RestoreJobRecord>, Option<String>), ApiError> {
        self.advance(now);
        self.restores
            .list(filter, listing, &self.config.account_id, now)
    }

    /// PutRestoreValidationResult.
    pub fn put_restore_validation_result(
        &mut self,
        id: &str,
        status: Option<&str>,
        message: Option<String>,
        now: Millis,
    ) -> Result<(), ApiError> {
        self.advance(now);
        let Some(status) = status else {
            return Err(ApiError::new(
                "MissingParameterValueException",
                "ValidationStatus is required",
            ));
        };
        let index = self.restores.find(id).ok_or_else(|| {
            ApiError::new(
                "ResourceNotFoundException",
                format!("Cannot find restore job with ID {id}"),
            )
        })?;
        self.restores.put_validation(index, status, message, now)
    }

    /// Every restore job, oldest first.
    pub fn restore_jobs(&mut self, now: Millis) -> Vec<RestoreJobRecord> {
        self.advance(now);
        self.restores.all(now)
    }

    /// Every instance restores have launched, oldest first (terminated ones included).
    pub fn restored_instances(&mut self, now: Millis) -> Vec<RestoredInstance> {
        self.advance(now);
        self.restores.instances(now)
    }

    /// The restored instances with tags, not terminated: what GetResources also lists.
    pub fn tagged_restored(&mut self, now: Millis) -> Vec<(String, BTreeMap<String, String>)> {
        self.advance(now);
        self.restores.tagged_alive(now)
    }

    /// Replaces the restore rules (first match wins; for restores started later).
    pub fn set_restore_rules(&mut self, rules: Vec<RestoreRule>) {
        self.restores.set_rules(rules);
    }

    /// Every job, oldest first.
    pub fn jobs(&mut self, now: Millis) -> Vec<JobRecord> {
        self.advance(now);
        self.jobs.all(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:backup";
    const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
    const T0: Millis = 1_800_000_000_000;
    const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
    const DR2: &str = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr";

    fn world() -> World {
        World::new(WorldConfig {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            execution_delay: 200,
            job_pending: 1_000,
            job_running: 3_000,
            fail_resources: vec!["i-0000000000000bad0".into()],
            state_machines: None,
            hooks: HookSettings {
                end_poll: std::time::Duration::from_secs(5),
                ..HookSettings::default()
            },
            copy_pending: 1_000,
            copy_running: 2_000,
            stack: StackParameters::default(),
            restore: RestoreSettings::default(),
        })
    }

    /// The input the daemon sends.
    fn input(resource: &str) -> Value {
        json!({ "ResourceArn": resource, "Target": "web", "ScheduledFor": "2026-11-29T10:00:00Z",
                "Trigger": "schedule", "StartWindowMinutes": 60, "CompleteWindowMinutes": 10080,
                "DeleteAfterDays": 35 })
    }

    fn start(w: &mut World, name: &str, input: &Value, at: Millis) -> String {
        w.start_execution(Some(SM), Some(name), Some(&input.to_string()), at)
            .unwrap()
            .execution_arn
    }

    /// The names of the states entered, in order.
    fn states(w: &mut World, arn: &str, now: Millis) -> Vec<String> {
        let (events, _) = w
            .execution_history(arn, usize::MAX, false, None, now)
            .unwrap();
        events
            .iter()
            .filter(|e| e["type"].as_str().unwrap().ends_with("StateEntered"))
            .map(|e| {
                e["stateEnteredEventDetails"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn start_is_idempotent_only_while_running_and_with_the_same_input() {
        let mut w = world();
        let text = input(EC2).to_string();
        let first = w
            .start_execution(Some(SM), Some("n1"), Some(&text), T0)
            .unwrap();
        assert!(!first.duplicate);
        let again = w
            .start_execution(Some(SM), Some("n1"), Some(&text), T0 + 100)
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.execution_arn, again.start_ms),
            (first.execution_arn, T0)
        );
        let other_input = w.start_execution(Some(SM), Some("n1"), Some("{}"), T0 + 100);
        assert_eq!(other_input.unwrap_err().code, "ExecutionAlreadyExists");
        // A plain backup closes as soon as its task has run.
        let closed = w.start_execution(Some(SM), Some("n1"), Some(&text), T0 + 200);
        assert_eq!(closed.unwrap_err().code, "ExecutionAlreadyExists");
    }

    #[test]
    fn a_plain_backup_is_two_transitions_ending_with_the_start_backup_job_response() {
        let mut w = world();
        let arn = start(&mut w, "n1", &input(EC2), T0);
        let running = w.describe_execution(&arn, T0 + 199).unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert!(w.jobs(T0 + 199).is_empty());
        let done = w.describe_execution(&arn, T0 + 250).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let output: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            output["BackupJobId"],
            json!(done.backup_job_id.clone().unwrap())
        );
        assert_eq!(output["IsParent"], json!(false));
        assert_eq!(done.stop_date, Some(to_datetime(T0 + 200)));
        assert_eq!(
            states(&mut w, &arn, T0 + 250),
            ["Validate", "StartBackupJob"]
        );
        assert_eq!(w.state_transitions(&arn, T0 + 250).unwrap(), 2);
        let jobs = w.jobs(T0 + 250);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].creation_date, to_datetime(T0 + 200));
        assert_eq!(jobs[0].idempotency_token.as_deref(), Some("n1"));
        assert_eq!(jobs[0].execution_name.as_deref(), Some("n1"));
        assert_eq!(jobs[0].backup_vault_name, "orchestrator");
        // The task's parameters carry the lifecycle and the recovery point tags.
        let (events, _) = w
            .execution_history(&arn, 100, false, None, T0 + 250)
            .unwrap();
        let scheduled = events
            .iter()
            .find(|e| e["type"] == "TaskScheduled")
            .unwrap();
        let p: Value = serde_json::from_str(
            scheduled["taskScheduledEventDetails"]["parameters"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p["Lifecycle"]["DeleteAfterDays"], 35);
        assert_eq!(p["RecoveryPointTags"]["orchestrator:target"], "web");
        assert_eq!(p["IdempotencyToken"], "n1");
    }

    #[test]
    fn refused_inputs_fail_at_validate_naming_the_member_and_start_nothing() {
        let mut w = world();
        let mut short = input(EC2);
        short["DeleteAfterDays"] = json!(1);
        let mut rds = input(EC2);
        rds["ResourceArn"] = json!("arn:aws:rds:us-east-1:123456789012:db:x");
        let mut vss = input(EC2);
        vss["BackupOptions"] = json!({"WindowsVSS": "yes"});
        for (name, i, says) in [
            ("short", short, "DeleteAfterDays"),
            ("rds", rds, "ResourceArn"),
            ("vss", vss, "BackupOptions"),
        ] {
            let arn = start(&mut w, name, &i, T0);
            let failed = w.describe_execution(&arn, T0 + 200).unwrap();
            assert_eq!(failed.status, ExecutionStatus::Failed, "{name}");
            assert_eq!(failed.error.as_deref(), Some("InputRefused"));
            let cause = failed.cause.unwrap();
            assert!(
                cause.starts_with("InputRefused: ") && cause.contains(says),
                "{cause}"
            );
            assert_eq!(failed.backup_job_id, None);
            assert_eq!(
                states(&mut w, &arn, T0 + 200),
                ["Validate", "Explain", "InputRefused"]
            );
        }
        assert!(w.jobs(T0 + 10_000).is_empty());
    }

    #[test]
    fn a_hand_started_execution_gets_the_stack_defaults_then_is_judged_again() {
        let mut w = world();
        let arn = start(&mut w, "by-hand", &json!({ "ResourceArn": EC2 }), T0);
        let done = w.describe_execution(&arn, T0 + 200).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        assert_eq!(
            states(&mut w, &arn, T0 + 200),
            [
                "Validate",
                "Explain",
                "ApplyDefaults",
                "Validate",
                "StartBackupJob"
            ]
        );
        let arn = start(
            &mut w,
            "by-hand-short",
            &json!({ "ResourceArn": EC2, "DeleteAfterDays": 2 }),
            T0,
        );
        let failed = w.describe_execution(&arn, T0 + 200).unwrap();
        assert!(failed.cause.unwrap().contains("DeleteAfterDays"));
        let arn = start(&mut w, "empty", &json!({}), T0);
        let failed = w.describe_execution(&arn, T0 + 200).unwrap();
        assert!(failed.cause.unwrap().contains("ResourceArn"));
    }

    #[test]
    fn copy_to_in_a_backup_input_is_ignored() {
        let mut w = world();
        let mut i = input(EC2);
        i["CopyTo"] = json!([{ "DestinationBackupVaultArn": DR,
                               "Lifecycle": { "DeleteAfterDays": 90 }, "IdempotencyToken": "c" }]);
        let arn = start(&mut w, "n1", &i, T0);
        let done = w.describe_execution(&arn, T0 + 60_000).unwrap();
        assert_eq!(
            done.stop_date,
            Some(to_datetime(T0 + 200)),
            "no wait for the job"
        );
        assert!(w.copy_jobs(T0 + 60_000).is_empty());
    }

    fn copy_input(job_id: &str) -> Value {
        json!({ "Action": "copy", "BackupJobId": job_id, "Target": "web", "ResourceArn": EC2,
            "CopyTo": [
                { "DestinationBackupVaultArn": DR, "Lifecycle": { "DeleteAfterDays": 90 },
                  "IdempotencyToken": "copy-a" },
                { "DestinationBackupVaultArn": DR2, "Lifecycle": { "DeleteAfterDays": 365 },
                  "IdempotencyToken": "copy-b" },
                { "DestinationBackupVaultArn": DR, "Lifecycle": { "DeleteAfterDays": 1 },
                  "IdempotencyToken": "copy-c" }]})
    }

    #[test]
    fn a_copy_execution_copies_a_completed_job_at_once_element_by_element() {
        let mut w = world();
        w.set_copy_rules(vec![CopyRule {
            destination: "eu-west-1".into(),
            refuse: true,
            ..CopyRule::default()
        }]);
        let backup = start(&mut w, "b1", &input(EC2), T0);
        let job = w
            .describe_execution(&backup, T0 + 200)
            .unwrap()
            .backup_job_id
            .unwrap();
        // Job created at +200, COMPLETED at +4,200.
        let early = start(&mut w, "copy-early", &copy_input(&job), T0 + 1_000);
        let refused = w.describe_execution(&early, T0 + 1_200).unwrap();
        assert_eq!(refused.error.as_deref(), Some("InputRefused"));
        assert!(refused.cause.unwrap().contains("is RUNNING"));
        let arn = start(
            &mut w,
            &format!("copy-{job}"),
            &copy_input(&job),
            T0 + 5_000,
        );
        let done = w.describe_execution(&arn, T0 + 5_200).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let output: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        let copies = w.copy_jobs(T0 + 5_200);
        assert_eq!(
            copies.len(),
            1,
            "one started, one denied, one refused by the machine"
        );
        let c = &copies[0];
        assert_eq!(
            output["Copies"][0],
            json!({"DestinationBackupVaultArn": DR, "CopyJobId": c.id})
        );
        assert_eq!(output["Copies"][1]["Error"], "Backup.AccessDeniedException");
        assert_eq!(output["Copies"][2]["Error"], "InputRefused");
        assert!(
            output["Copies"][2]["Cause"]
                .as_str()
                .unwrap()
                .contains("Lifecycle")
        );
        assert_eq!(
            (c.delete_after_days, c.idempotency_token.as_deref()),
            (Some(90), Some("copy-a"))
        );
        assert_eq!(
            c.source_recovery_point_arn,
            w.jobs(T0 + 5_200)[0].recovery_point_arn
        );
        assert_eq!(
            states(&mut w, &arn, T0 + 5_200),
            [
                "Validate",
                "DescribeCopySource",
                "CheckCopySource",
                "StartCopies",
                "CheckCopyDestination",
                "StartCopyJob",
                "CheckCopyDestination",
                "StartCopyJob",
                "CopyNotStarted",
                "CheckCopyDestination",
                "CopyRefused",
            ]
        );
        let missing = start(&mut w, "copy-none", &copy_input("AB-12"), T0 + 5_000);
        let failed = w.describe_execution(&missing, T0 + 5_200).unwrap();
        assert_eq!(failed.error.as_deref(), Some("CopySourceUnavailable"));
    }

    fn doc(action: &str) -> Value {
        json!({"Name": "orchestrator-systemd-unit", "Version": "$DEFAULT",
               "Parameters": {"action": [action], "unit": ["db"]}})
    }

    #[test]
    fn hooks_run_around_the_job_with_the_post_hook_at_its_start() {
        // Polls every 1 s; CREATED 2.5 s, RUNNING 3 s, commands 200 ms.
        let mut w = world();
        w.config.hooks.start_poll = std::time::Duration::from_secs(1);
        let mut hooked = input(EC2);
        hooked["PreDocument"] = doc("stop");
        hooked["PostDocument"] = doc("start");
        w.set_job_timings(vec![JobTiming {
            resource: "i-0123".into(),
            created_ms: 2_500,
            running_ms: 3_000,
        }]);
        let arn = start(&mut w, "h1", &hooked, T0);
        // Pre hook 200..400 ms, job requested at 400 ms, RUNNING from 2.9 s: polled at 3.4 s.
        assert_eq!(w.jobs(T0 + 399).len(), 0, "the job waits for the pre hook");
        let mid = w.describe_execution(&arn, T0 + 3_500).unwrap();
        assert_eq!(mid.status, ExecutionStatus::Running);
        let sent = w.ssm_commands(T0 + 3_500);
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].phase, sent[0].sent_at_ms), ("pre", T0 + 200));
        assert_eq!((sent[1].phase, sent[1].sent_at_ms), ("post", T0 + 3_400));
        assert_eq!(
            sent[1].parameters,
            json!({"action": ["start"], "unit": ["db"]})
        );
        let end = w.describe_execution(&arn, T0 + 3_600).unwrap();
        assert_eq!(
            end.status,
            ExecutionStatus::Succeeded,
            "before the job ends"
        );
        assert_eq!(w.jobs(T0 + 3_600)[0].state, JobState::Running);
        let output: Value = serde_json::from_str(end.output.as_deref().unwrap()).unwrap();
        assert_eq!(output["BackupJob"], json!({"State": "RUNNING"}));
        assert_eq!(output["AppConsistent"], json!("true"));
        assert_eq!(
            states(&mut w, &arn, T0 + 3_600),
            [
                "Validate",
                "SendPreHook",
                "PreHookWait",
                "GetPreHook",
                "PreHookDone",
                "StartBackupJobThenPost",
                "WaitForJob",
                "DescribeJob",
                "JobReady",
                "SendPostHook",
                "PostHookWait",
                "GetPostHook",
                "PostHookDone",
                "Done",
            ]
        );
        assert_eq!(w.state_transitions(&arn, T0 + 3_600).unwrap(), 14);

        // A document outside the prefix: refused at Validate, nothing sent, no job.
        let mut outside = input(EC2);
        outside["PreDocument"] = json!({"Name": "AWS-RunShellScript", "Version": "$DEFAULT", "Parameters": {"a": ["b"]}});
        let arn = start(&mut w, "h2", &outside, T0);
        let failed = w.describe_execution(&arn, T0 + 200).unwrap();
        assert_eq!(failed.error.as_deref(), Some("InputRefused"));
        assert!(failed.cause.unwrap().contains("HookDocumentPrefix"));
        assert_eq!(failed.backup_job_id, None);

        // A failing post hook is reported, with the backup in the cause.
        w.set_command_rules(vec![CommandRule {
            phase: Some("post".into()),
            status: Some("Failed".into()),
            ..CommandRule::default()
        }]);
        let arn = start(&mut w, "h3", &hooked, T0);
        let failed = w.describe_execution(&arn, T0 + 10_000).unwrap();
        assert_eq!(failed.error.as_deref(), Some("PostCommandFailed"));
        assert!(failed.cause.unwrap().contains("backup: {\"BackupJobId\""));
        assert!(failed.backup_job_id.is_some());
        assert_eq!(
            states(&mut w, &arn, T0 + 10_000).last().unwrap(),
            "PostCommandFailed"
        );
    }

    #[test]
    fn a_failed_pre_hook_with_skip_runs_the_post_hook_and_backs_nothing_up() {
        let mut w = world();
        w.set_command_rules(vec![CommandRule {
            phase: Some("pre".into()),
            status: Some("Failed".into()),
            ..CommandRule::default()
        }]);
        let mut hooked = input(EC2);
        hooked["PreDocument"] = doc("stop");
        hooked["PostDocument"] = doc("start");
        hooked["OnPreHookFailure"] = json!("skip");
        let arn = start(&mut w, "s1", &hooked, T0);
        let failed = w.describe_execution(&arn, T0 + 1_000).unwrap();
        assert_eq!(failed.error.as_deref(), Some("PreCommandFailed"));
        assert!(failed.cause.unwrap().contains("OnPreHookFailure = skip"));
        assert!(w.jobs(T0 + 1_000).is_empty());
        assert_eq!(
            states(&mut w, &arn, T0 + 1_000),
            [
                "Validate",
                "SendPreHook",
                "PreHookWait",
                "GetPreHook",
                "PreHookDone",
                "PreHookFailed",
                "SkipBackup",
                "SendPostNow",
                "SendPostHook",
                "PostHookWait",
                "GetPostHook",
                "PostHookDone",
                "BackupSkipped",
            ]
        );
    }

    #[test]
    fn executions_list_newest_first_across_pages() {
        let mut w = world();
        for i in 0..5 {
            start(&mut w, &format!("n{i}"), &input(EC2), T0 + i);
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
