//! The life of one backup, as a pure type: what the tracker has learnt, and which changes are
//! worth a log line. Each change is reported once; the tracker only feeds it observations.
//!
//! ```text
//! Started ──(job id: execution output or history)──▶ JobCreated ──▶ Running ──▶ terminal job state
//!    │                                                                             │ (hook variant:
//!    └──(execution FAILED / TIMED_OUT / ABORTED, no job)──▶ finished                ▼  execution end too)
//!                                                                               finished
//! ```

use chrono::{DateTime, Utc};

use crate::aws::{ExecutionDetail, ExecutionStatus, JobDetail, JobState};

/// What the tracker knows about one backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The target's name.
    pub target: String,
    /// The instance.
    pub resource_arn: String,
    /// The region its machine and job live in.
    pub region: String,
    /// The slot, for scheduled runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The execution, when known (recovered jobs may lack it).
    pub execution_arn: Option<String>,
    /// True when the machine runs pre/post commands and so outlives the job.
    pub hooks: bool,
    /// When the execution started (or the job was created, for recovered jobs).
    pub started_at: DateTime<Utc>,
    /// The backup job, once known.
    pub job_id: Option<String>,
    /// The execution's last status.
    pub execution_status: Option<ExecutionStatus>,
    /// The execution's error and cause, when it failed.
    pub execution_error: Option<(String, String)>,
    /// The job's last state.
    pub job_state: Option<JobState>,
    /// The job's last progress.
    pub percent_done: Option<f64>,
    /// The job's size, recovery point and message, as last seen.
    pub job: Option<JobDetail>,
    /// What it holds on its instance while in flight (rule and retention).
    pub hold: crate::in_flight::Hold,
    /// Its rule's copies (`copy_to`): once the job COMPLETED, the daemon starts the execution
    /// that copies it, and only then is the backup's end reported (so that after a restart, a
    /// backup whose copy execution exists is known to have been reported).
    pub copy_plan: Option<std::sync::Arc<crate::copies::CopyPlan>>,
    /// The copy execution has been started (or found started).
    copies_started: bool,
    /// The execution that copies it once started, or why none could be.
    pub copy_execution: Option<Result<String, String>>,
    /// For an execution found running at start (not started by this process): the input the
    /// slot asks for. An execution with another input is not ours ([`Backup::disown`]).
    pub expected_input: Option<std::sync::Arc<crate::execution::ExecutionInput>>,
    finished: bool,
}

/// A change worth one log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The execution created its backup job.
    JobCreated {
        /// The job.
        job_id: String,
    },
    /// The job moved to a new state.
    JobState {
        /// The new state.
        state: JobState,
        /// Progress at that moment.
        percent_done: Option<f64>,
    },
    /// The job's progress moved.
    Progress {
        /// Progress, 0-100.
        percent_done: f64,
    },
    /// The execution ended badly (the job, if any, is still followed).
    ExecutionFailed {
        /// FAILED, TIMED_OUT or ABORTED.
        status: ExecutionStatus,
        /// The error name.
        error: String,
        /// The cause.
        cause: String,
    },
    /// The backup is over; the one summary line.
    Finished(Summary),
}

/// The end of a backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The job's terminal state, or `EXECUTION_FAILED` / `EXECUTION_TIMED_OUT` /
    /// `EXECUTION_ABORTED` when no job was made.
    pub state: String,
    /// True only for COMPLETED with no execution error.
    pub success: bool,
    /// From the start of the execution to now.
    pub duration_seconds: f64,
    /// The backup's size.
    pub backup_size_bytes: Option<i64>,
    /// The recovery point.
    pub recovery_point_arn: Option<String>,
    /// What went wrong: the job's status message or the execution's error.
    pub error: Option<String>,
}

/// Reads `BackupJobId` from a StartBackupJob response or the machine's output.
pub fn job_id_from_output(output: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(output).ok()?;
    v.get("BackupJobId")?.as_str().map(str::to_string)
}

impl Backup {
    /// A backup whose execution has just started (or been found running).
    pub fn started(
        target: String,
        resource_arn: String,
        region: String,
        scheduled_for: Option<DateTime<Utc>>,
        execution_arn: Option<String>,
        hooks: bool,
        started_at: DateTime<Utc>,
    ) -> Self {
        Backup {
            target,
            resource_arn,
            region,
            scheduled_for,
            execution_arn,
            hooks,
            started_at,
            job_id: None,
            execution_status: None,
            execution_error: None,
            job_state: None,
            percent_done: None,
            job: None,
            hold: crate::in_flight::Hold::default(),
            copy_plan: None,
            copies_started: false,
            copy_execution: None,
            expected_input: None,
            finished: false,
        }
    }

    /// True once the summary has been reported.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// True while the execution has not told us its job yet.
    pub fn awaits_job(&self) -> bool {
        !self.finished && self.job_id.is_none()
    }

    /// True when the execution still has to be asked about (its end matters).
    pub fn needs_execution(&self) -> bool {
        !self.finished
            && self.execution_arn.is_some()
            && (self.job_id.is_none() || self.hooks)
            && !self.execution_status.as_ref().is_some_and(is_closed)
    }

    /// True when the job still has to be asked about.
    pub fn needs_job(&self) -> bool {
        !self.finished
            && self.job_id.is_some()
            && !self.job_state.as_ref().is_some_and(JobState::is_terminal)
    }

    /// True when the job COMPLETED and its copies are to be started before its end is reported.
    pub fn needs_copy_start(&self) -> bool {
        !self.finished
            && !self.copies_started
            && self.copy_plan.is_some()
            && self.job_id.is_some()
            && self.job_state == Some(JobState::Completed)
            && self.settled_execution()
    }

    /// The copy execution was started or found started (its ARN), or could not be (why), so
    /// the backup's end can be reported.
    pub fn on_copies_started(
        &mut self,
        execution: Result<String, String>,
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        if self.finished || self.copies_started {
            return Vec::new();
        }
        self.copies_started = true;
        self.copy_execution = Some(execution);
        self.maybe_finish(now).into_iter().collect()
    }

    /// True when the execution's input `found` backs up another instance or target than this
    /// slot: someone else started it under the slot's name. Only for executions found at start.
    pub fn foreign(&self, found: Option<&str>) -> bool {
        match (&self.expected_input, found) {
            (Some(ours), Some(found)) => !ours.same_instance(found),
            _ => false,
        }
    }

    /// Stops following without a summary: the execution is not this backup.
    pub fn disown(&mut self) {
        self.finished = true;
    }

    /// False while a hook execution still runs (its post command comes after the job).
    fn settled_execution(&self) -> bool {
        let exec_closed = self.execution_status.as_ref().is_some_and(is_closed);
        !(self.hooks && self.execution_arn.is_some() && !exec_closed)
    }

    /// Learns the job id (from output, history or a ListBackupJobs match).
    pub fn on_job_id(&mut self, job_id: String) -> Vec<Change> {
        if self.job_id.is_some() || self.finished {
            return Vec::new();
        }
        self.job_id = Some(job_id.clone());
        vec![Change::JobCreated { job_id }]
    }

    /// Learns the execution's status.
    pub fn on_execution(&mut self, d: &ExecutionDetail, now: DateTime<Utc>) -> Vec<Change> {
        if self.finished || self.execution_status.as_ref() == Some(&d.status) {
            return Vec::new();
        }
        self.execution_status = Some(d.status.clone());
        let mut changes = Vec::new();
        match &d.status {
            ExecutionStatus::Succeeded => {
                if let Some(id) = d.output.as_deref().and_then(job_id_from_output) {
                    changes.extend(self.on_job_id(id));
                } else if self.job_id.is_none() {
                    self.execution_error = Some((
                        "NoBackupJobId".into(),
                        "the execution succeeded but its output has no BackupJobId".into(),
                    ));
                }
            }
            ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {
                let error = d.error.clone().unwrap_or_default();
                let cause = d.cause.clone().unwrap_or_default();
                self.execution_error = Some((error.clone(), cause.clone()));
                changes.push(Change::ExecutionFailed {
                    status: d.status.clone(),
                    error,
                    cause,
                });
            }
            _ => {}
        }
        changes.extend(self.maybe_finish(now));
        changes
    }

    /// Learns the job's state.
    pub fn on_job(&mut self, j: &JobDetail, now: DateTime<Utc>) -> Vec<Change> {
        if self.finished || self.job_id.as_deref() != Some(j.job_id.as_str()) {
            return Vec::new();
        }
        let mut changes = Vec::new();
        if self.job_state.as_ref() != Some(&j.state) {
            self.job_state = Some(j.state.clone());
            self.percent_done = j.percent_done;
            changes.push(Change::JobState {
                state: j.state.clone(),
                percent_done: j.percent_done,
            });
        } else if let Some(p) = j.percent_done
            && self.percent_done != Some(p)
        {
            self.percent_done = Some(p);
            changes.push(Change::Progress { percent_done: p });
        }
        self.job = Some(j.clone());
        changes.extend(self.maybe_finish(now));
        changes
    }

    fn maybe_finish(&mut self, now: DateTime<Utc>) -> Option<Change> {
        let exec_closed = self.execution_status.as_ref().is_some_and(is_closed);
        let job_done = self.job_state.as_ref().is_some_and(JobState::is_terminal);
        let summary_state = if job_done {
            // The hook variant runs its post command after the job: wait for the execution.
            // A COMPLETED backup with copies waits for its copy execution to be started.
            if !self.settled_execution() || self.needs_copy_start() {
                return None;
            }
            self.job_state.as_ref().map(|s| s.as_str().to_string())
        } else if self.job_id.is_none() && exec_closed {
            match &self.execution_status {
                Some(ExecutionStatus::Succeeded) => Some("EXECUTION_SUCCEEDED_WITHOUT_JOB".into()),
                Some(s) => Some(format!("EXECUTION_{}", s.as_str())),
                None => None,
            }
        } else {
            None
        }?;
        self.finished = true;
        let job = self.job.as_ref();
        let error = self
            .execution_error
            .as_ref()
            .map(|(e, c)| format!("{e}: {c}"))
            .or_else(|| {
                job.and_then(|j| j.status_message.clone())
                    .filter(|_| summary_state != "COMPLETED")
            });
        Some(Change::Finished(Summary {
            success: summary_state == "COMPLETED" && self.execution_error.is_none(),
            state: summary_state,
            duration_seconds: (now - self.started_at).num_milliseconds() as f64 / 1000.0,
            backup_size_bytes: job.and_then(|j| j.backup_size_bytes),
            recovery_point_arn: job.and_then(|j| j.recovery_point_arn.clone()),
            error,
        }))
    }
}

fn is_closed(s: &ExecutionStatus) -> bool {
    !matches!(
        s,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()
    }

    fn backup(hooks: bool) -> Backup {
        Backup::started(
            "web".into(),
            "arn:aws:ec2:us-east-1:123456789012:instance/i-12345678".into(),
            "us-east-1".into(),
            Some(t0()),
            Some("arn:exec".into()),
            hooks,
            t0(),
        )
    }

    fn exec(
        status: ExecutionStatus,
        output: Option<&str>,
        error: Option<(&str, &str)>,
    ) -> ExecutionDetail {
        ExecutionDetail {
            execution_arn: "arn:exec".into(),
            name: "web-20261129T030000Z".into(),
            status,
            input: None,
            output: output.map(str::to_string),
            error: error.map(|e| e.0.to_string()),
            cause: error.map(|e| e.1.to_string()),
            start_date: t0(),
            stop_date: None,
        }
    }

    fn job(state: &str, pct: Option<f64>) -> JobDetail {
        JobDetail {
            job_id: "job-1".into(),
            resource_arn: None,
            state: JobState::parse(state),
            percent_done: pct,
            backup_size_bytes: Some(42),
            status_message: (state == "FAILED").then(|| "disk on fire".to_string()),
            recovery_point_arn: Some("arn:rp".into()),
            creation_date: Some(t0()),
            completion_date: None,
        }
    }

    fn later(s: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(s)
    }

    #[test]
    fn a_backup_that_completes_reports_each_change_once() {
        let mut b = backup(false);
        assert!(
            b.on_execution(&exec(ExecutionStatus::Running, None, None), later(1))
                .is_empty()
        );
        assert!(
            b.on_execution(&exec(ExecutionStatus::Running, None, None), later(2))
                .is_empty()
        );
        let c = b.on_execution(
            &exec(
                ExecutionStatus::Succeeded,
                Some(r#"{"BackupJobId":"job-1"}"#),
                None,
            ),
            later(3),
        );
        assert_eq!(
            c,
            vec![Change::JobCreated {
                job_id: "job-1".into()
            }]
        );
        assert!(!b.needs_execution());
        assert!(b.needs_job());
        let c = b.on_job(&job("CREATED", None), later(4));
        assert!(matches!(
            &c[..],
            [Change::JobState {
                state: JobState::Created,
                ..
            }]
        ));
        assert!(b.on_job(&job("CREATED", None), later(5)).is_empty());
        b.on_job(&job("RUNNING", Some(10.0)), later(6));
        assert_eq!(
            b.on_job(&job("RUNNING", Some(55.0)), later(7)),
            vec![Change::Progress { percent_done: 55.0 }]
        );
        assert!(b.on_job(&job("RUNNING", Some(55.0)), later(8)).is_empty());
        let c = b.on_job(&job("COMPLETED", Some(100.0)), later(10));
        let Some(Change::Finished(s)) = c.last() else {
            panic!("{c:?}")
        };
        assert_eq!(s.state, "COMPLETED");
        assert!(s.success);
        assert_eq!(s.duration_seconds, 10.0);
        assert_eq!(s.backup_size_bytes, Some(42));
        assert!(b.is_finished());
        assert!(
            b.on_job(&job("COMPLETED", Some(100.0)), later(11))
                .is_empty(),
            "finished once"
        );
    }

    /// A COMPLETED backup with copies reports its end once its copy execution is started (or
    /// could not be): after a restart, a backup whose copy execution exists was reported. A
    /// failed one has no copies to start.
    #[test]
    fn a_backup_with_copies_ends_once_its_copies_are_started() {
        let plan = std::sync::Arc::new(crate::copies::CopyPlan {
            rule: "daily".into(),
            destinations: Vec::new().into(),
            state_machine: crate::arn::StateMachineArn::parse(
                "arn:aws:states:us-east-1:123456789012:stateMachine:b",
            )
            .unwrap(),
        });
        let mut b = backup(false);
        b.copy_plan = Some(plan.clone());
        b.on_job_id("job-1".into());
        let changes = b.on_job(&job("COMPLETED", Some(100.0)), later(9));
        assert!(!changes.iter().any(|c| matches!(c, Change::Finished(_))));
        assert!(b.needs_copy_start() && !b.is_finished());
        let changes = b.on_copies_started(Ok("arn:copy".into()), later(10));
        assert!(matches!(&changes[..], [Change::Finished(s)] if s.success));
        assert!(b.is_finished() && !b.needs_copy_start());
        assert_eq!(b.on_copies_started(Ok("again".into()), later(11)), vec![]);

        let mut failed = backup(false);
        failed.copy_plan = Some(plan);
        failed.on_job_id("job-1".into());
        let changes = failed.on_job(&job("FAILED", None), later(9));
        assert!(changes.iter().any(|c| matches!(c, Change::Finished(_))));
        assert!(!failed.needs_copy_start());
    }

    #[test]
    fn a_failed_job_finishes_with_its_message() {
        let mut b = backup(false);
        b.on_job_id("job-1".into());
        let c = b.on_job(&job("FAILED", None), later(5));
        let Some(Change::Finished(s)) = c.last() else {
            panic!("{c:?}")
        };
        assert_eq!(s.state, "FAILED");
        assert!(!s.success);
        assert_eq!(s.error.as_deref(), Some("disk on fire"));
    }

    #[test]
    fn a_failed_execution_without_job_finishes_with_error_and_cause() {
        let mut b = backup(true);
        let c = b.on_execution(
            &exec(
                ExecutionStatus::Failed,
                None,
                Some(("PreCommandFailed", "exit 1")),
            ),
            later(2),
        );
        assert!(matches!(c[0], Change::ExecutionFailed { .. }));
        let Change::Finished(s) = &c[1] else {
            panic!("{c:?}")
        };
        assert_eq!(s.state, "EXECUTION_FAILED");
        assert_eq!(s.error.as_deref(), Some("PreCommandFailed: exit 1"));
    }

    #[test]
    fn the_hook_variant_waits_for_the_post_command() {
        let mut b = backup(true);
        b.on_execution(&exec(ExecutionStatus::Running, None, None), later(1));
        b.on_job_id("job-1".into());
        assert!(b.needs_execution(), "still running: its end matters");
        let c = b.on_job(&job("COMPLETED", Some(100.0)), later(5));
        assert!(!c.iter().any(|c| matches!(c, Change::Finished(_))), "{c:?}");
        let c = b.on_execution(
            &exec(
                ExecutionStatus::Failed,
                None,
                Some(("PostCommandFailed", "exit 3")),
            ),
            later(6),
        );
        let Some(Change::Finished(s)) = c.last() else {
            panic!("{c:?}")
        };
        assert_eq!(s.state, "COMPLETED");
        assert!(!s.success, "a failed post command is not a clean success");
        assert_eq!(s.error.as_deref(), Some("PostCommandFailed: exit 3"));
    }

    #[test]
    fn output_without_a_job_id_is_an_error() {
        let mut b = backup(false);
        let c = b.on_execution(
            &exec(ExecutionStatus::Succeeded, Some("{}"), None),
            later(1),
        );
        let Some(Change::Finished(s)) = c.last() else {
            panic!("{c:?}")
        };
        assert_eq!(s.state, "EXECUTION_SUCCEEDED_WITHOUT_JOB");
        assert!(!s.success);
    }

    #[test]
    fn job_ids_are_read_from_output() {
        assert_eq!(
            job_id_from_output(r#"{"BackupJobId":"abc","IsParent":false}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(job_id_from_output("not json"), None);
    }
}
