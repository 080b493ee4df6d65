//! One restore execution followed to its end: the restore job's start and the end each logged
//! once, the test counted in the metrics.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::parts::Parts;
use crate::aws::{ExecutionDetail, ExecutionStatus, StepFunctions};
use crate::restore::{Outcome, Report, outcome};
use crate::telemetry::event;

/// The state machine integration whose TaskSucceeded holds the restore job's id.
const START_RESTORE_JOB: &str = "startRestoreJob";

/// What is followed.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The target.
    pub target: Arc<str>,
    /// `test`, `restore` or `sweep` (then `target` is the swept instance).
    pub kind: &'static str,
    /// The execution.
    pub execution_arn: String,
    /// `max_restore_minutes`.
    pub max: Duration,
    /// When the restored recovery point was made, if known.
    pub point_created: Option<DateTime<Utc>>,
    /// Found running at a (re)start: its job's line is not logged again (the run that started
    /// it logged it; the job id is in `restore_finished` either way).
    pub resumed: bool,
}

/// How it ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The execution as it ended.
    pub detail: ExecutionDetail,
    /// Its report, if it has one.
    pub report: Option<Report>,
    /// The verdict.
    pub outcome: Outcome,
}

/// Follows `f` until its execution ends (then logs `restore_finished` and, for tests, counts
/// it), or until `stop` (None: a restart follows it again).
pub async fn follow<S: StepFunctions, B, T>(
    parts: &Parts<S, B, T>,
    f: Followed,
    stop: &CancellationToken,
) -> Option<Ended> {
    let mut wait = parts.poll_interval;
    let mut job_logged = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(parts.max_poll_interval);
        parts.describes.acquire().await;
        let detail = match parts.sfn.describe_execution(&f.execution_arn).await {
            Ok(d) => d,
            Err(e) => {
                warn!(event = event::RESTORE_API_RETRY, target = %f.target, error = %e,
                    "cannot read the restore execution; trying again");
                continue;
            }
        };
        if !job_logged {
            job_logged = log_job(parts, &f).await;
        }
        if detail.status == ExecutionStatus::Running {
            continue;
        }
        return Some(ended(parts, &f, detail));
    }
}

/// The end of `f`'s execution (`detail` not RUNNING): logged and counted.
pub(super) fn ended<S, B, T>(
    parts: &Parts<S, B, T>,
    f: &Followed,
    detail: ExecutionDetail,
) -> Ended {
    let report = Report::of(&detail);
    let verdict = outcome(&detail.status, report.as_ref(), f.max);
    if f.kind == "sweep" {
        log_swept(f, &detail);
    } else {
        log_end(parts, f, &detail, report.as_ref(), verdict);
    }
    Ended {
        detail,
        report,
        outcome: verdict,
    }
}

/// A sweep's end (`target` holds the swept instance).
fn log_swept(f: &Followed, d: &ExecutionDetail) {
    let cleanup = d
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
        .and_then(|v| v["Cleanup"]["Status"].as_str().map(str::to_string));
    info!(
        event = event::RESTORE_SWEPT,
        resource_arn = %f.target,
        execution_status = d.status.as_str(),
        cleanup_status = cleanup.as_deref().unwrap_or(""),
        error = d.error.as_deref().unwrap_or(""),
        execution_arn = %f.execution_arn,
        "sweep ended"
    );
}

/// Logs `restore_job_created` once the history shows the job; true once logged.
pub(super) async fn log_job<S: StepFunctions, B, T>(parts: &Parts<S, B, T>, f: &Followed) -> bool {
    let mut token = None;
    loop {
        parts.describes.acquire().await;
        let Ok(page) = parts
            .sfn
            .execution_history(&f.execution_arn, token.take())
            .await
        else {
            return false;
        };
        let job = page.items.iter().find_map(|e| {
            (e.kind == "TaskSucceeded" && e.resource.as_deref() == Some(START_RESTORE_JOB))
                .then_some(e.output.as_deref())
                .flatten()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                .and_then(|v| v["RestoreJobId"].as_str().map(str::to_string))
        });
        if let Some(job) = job {
            info!(
                event = event::RESTORE_JOB_CREATED,
                target = %f.target,
                kind = f.kind,
                execution_arn = %f.execution_arn,
                restore_job_id = %job,
                "restore job created"
            );
            return true;
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => return false,
        }
    }
}

fn log_end<S, B, T>(
    parts: &Parts<S, B, T>,
    f: &Followed,
    d: &ExecutionDetail,
    report: Option<&Report>,
    verdict: Outcome,
) {
    let r = report.cloned().unwrap_or_default();
    let seconds = r.restore_seconds();
    let age = match (f.point_created, r.restore_requested_at) {
        (Some(made), Some(asked)) => Some((asked - made).num_seconds()),
        _ => None,
    };
    // Passed: INFO; slow: WARN; failed: ERROR (as `backup_finished` is for a failed backup).
    macro_rules! finished {
        ($level:expr, $msg:literal) => {
            tracing::event!(
                $level,
                event = event::RESTORE_FINISHED,
                target = %f.target,
                kind = f.kind,
                result = verdict.as_str(),
                restore_seconds = seconds,
                validation_status = r.validation.status.as_deref().unwrap_or(""),
                cleanup_status = r.cleanup.status.as_deref().unwrap_or(""),
                status_checks = r.status_checks.as_deref().unwrap_or(""),
                max_restore_seconds = f.max.as_secs(),
                recovery_point_age_seconds = age,
                execution_status = d.status.as_str(),
                error = d.error.as_deref().unwrap_or(""),
                validation_message = r.validation.message.as_deref().unwrap_or(""),
                validation_reported = r.validation_reported,
                cleanup_error = r.cleanup.error.as_deref().unwrap_or(""),
                restore_status = r.restore_status.as_deref().unwrap_or(""),
                restore_status_message = r.restore_status_message.as_deref().unwrap_or(""),
                created_resource_arn = r.created_resource_arn.as_deref().unwrap_or(""),
                recovery_point_arn = r.recovery_point_arn.as_deref().unwrap_or(""),
                restore_job_id = r.restore_job_id.as_deref().unwrap_or(""),
                execution_arn = %f.execution_arn,
                cause = if report.is_some() { "" } else { d.cause.as_deref().unwrap_or("") },
                $msg
            )
        };
    }
    match verdict {
        Outcome::Passed => finished!(tracing::Level::INFO, "restore finished"),
        Outcome::Slow => finished!(tracing::Level::WARN, "restore slower than its maximum"),
        Outcome::Failed => finished!(tracing::Level::ERROR, "restore failed"),
    }
    if f.kind == "test" {
        parts.metrics.restore_test_finished(
            &f.target,
            verdict.as_str(),
            seconds.unwrap_or(0.0),
            f.max.as_secs_f64(),
        );
    }
}
