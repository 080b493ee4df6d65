//! What a restore execution's report says (its output, or its failure's cause), and the
//! verdict of a test.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::aws::{ExecutionDetail, ExecutionStatus};

/// The validation step of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Validation {
    /// SUCCESSFUL, FAILED, TIMED_OUT or SKIPPED.
    pub status: Option<String>,
    /// What the document printed, or why it did not run.
    pub message: Option<String>,
}

/// The cleanup step of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cleanup {
    /// DELETED, FAILED, KEPT or NONE.
    pub status: Option<String>,
    /// Why the termination failed.
    pub error: Option<String>,
}

/// The restore machine's report (`RestoreReport` in the template).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// The restore job.
    pub restore_job_id: Option<String>,
    /// What was restored.
    pub recovery_point_arn: Option<String>,
    /// The instance AWS Backup created.
    pub created_resource_arn: Option<String>,
    /// The restore job's last status (NOT_STARTED before a job).
    pub restore_status: Option<String>,
    /// Its message.
    pub restore_status_message: Option<String>,
    /// When the restore was requested.
    pub restore_requested_at: Option<DateTime<Utc>>,
    /// When the instance ran and passed its checks.
    pub instance_running_at: Option<DateTime<Utc>>,
    /// passed, impaired, timed-out or skipped.
    pub status_checks: Option<String>,
    /// The validation.
    #[serde(default)]
    pub validation: Validation,
    /// Whether AWS took PutRestoreValidationResult.
    pub validation_reported: Option<bool>,
    /// The cleanup.
    #[serde(default)]
    pub cleanup: Cleanup,
}

impl Report {
    /// The execution's report: its output when it succeeded, else its cause when that is a
    /// report (a refusal's cause is plain text: no report).
    pub fn of(detail: &ExecutionDetail) -> Option<Report> {
        let text = match detail.status {
            ExecutionStatus::Succeeded => detail.output.as_deref(),
            _ => detail.cause.as_deref(),
        }?;
        serde_json::from_str(text).ok()
    }

    /// From the restore request to the instance running with its checks passed.
    pub fn restore_seconds(&self) -> Option<f64> {
        let (from, to) = (self.restore_requested_at?, self.instance_running_at?);
        Some((to - from).num_milliseconds() as f64 / 1000.0)
    }
}

/// How a restore test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Restored, checked, validated, within its maximum time.
    Passed,
    /// Restored and validated, but slower than `max_restore_minutes`.
    Slow,
    /// Anything else.
    Failed,
}

impl Outcome {
    /// The metric's and the log's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Slow => "slow",
            Outcome::Failed => "failed",
        }
    }
}

/// The verdict of an ended test execution.
pub fn outcome(status: &ExecutionStatus, report: Option<&Report>, max: Duration) -> Outcome {
    if *status != ExecutionStatus::Succeeded {
        return Outcome::Failed;
    }
    match report.and_then(Report::restore_seconds) {
        Some(s) if s > max.as_secs_f64() => Outcome::Slow,
        _ => Outcome::Passed,
    }
}
