//! The tracker's log lines: one per change worth telling, with stable field names (README:
//! "Log events"), and the warning of a call that failed and is retried.

use tracing::{error, info, warn};

use crate::aws::ApiError;
use crate::copies::{Copy, CopyChange};
use crate::lifecycle::{Backup, Change};
use crate::telemetry::event;

/// Logs a failed call about backup `b` (retried at the next poll).
pub(super) fn log_api_error(b: &Backup, e: &ApiError) {
    warn!(
        event = event::AWS_CALL_FAILED,
        target = %b.target,
        operation = e.operation,
        error_kind = e.kind.as_str(),
        request_id = e.request_id.as_deref().unwrap_or(""),
        error = %e,
        "tracking call failed; retried at the next poll"
    );
}

/// Logs a failed call about copy `c` (retried at the next poll).
pub(super) fn log_copy_api_error(c: &Copy, e: &ApiError) {
    warn!(
        event = event::AWS_CALL_FAILED,
        target = %c.target,
        destination_vault = %c.destination_vault,
        operation = e.operation,
        error_kind = e.kind.as_str(),
        request_id = e.request_id.as_deref().unwrap_or(""),
        error = %e,
        "copy tracking call failed; retried at the next poll"
    );
}

/// The log line of one copy change; field names are stable (README: "Log events").
pub fn log_copy_change(c: &Copy, change: &CopyChange) {
    let id = c.copy_job_id.as_deref().unwrap_or("");
    let exec = c.execution_arn.as_deref().unwrap_or("");
    match change {
        CopyChange::Created => info!(
            event = event::COPY_JOB_CREATED,
            target = %c.target,
            rule = %c.rule,
            destination_vault = %c.destination_vault,
            copy_job_id = id,
            execution_arn = exec,
            source_recovery_point_arn = c.source_recovery_point_arn.as_deref().unwrap_or(""),
            "copy job created"
        ),
        CopyChange::Finished(s) => {
            // A failed copy is its own ERROR line; the backup's own line stays as it was.
            macro_rules! finished {
                ($level:ident) => {
                    $level!(
                        event = event::COPY_FINISHED,
                        target = %c.target,
                        rule = %c.rule,
                        destination_vault = %c.destination_vault,
                        copy_job_id = id,
                        execution_arn = exec,
                        state = %s.state,
                        success = s.success,
                        duration_seconds = s.duration_seconds,
                        destination_recovery_point_arn =
                            s.destination_recovery_point_arn.as_deref().unwrap_or(""),
                        error = s.error.as_deref().unwrap_or(""),
                        "copy finished"
                    )
                };
            }
            if s.success {
                finished!(info);
            } else {
                finished!(error);
            }
        }
    }
}

fn scheduled(b: &Backup) -> String {
    b.scheduled_for.map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The log line of one change; field names are stable (README: "Log events").
pub fn log_change(b: &Backup, c: &Change) {
    let exec = b.execution_arn.as_deref().unwrap_or("");
    let job = b.job_id.as_deref().unwrap_or("");
    match c {
        Change::JobCreated { job_id } => info!(
            event = event::BACKUP_JOB_CREATED,
            target = %b.target,
            resource_arn = %b.resource_arn,
            scheduled_for = %scheduled(b),
            execution_arn = exec,
            backup_job_id = %job_id,
            "backup job created"
        ),
        Change::JobState {
            state,
            percent_done,
        } => info!(
            event = event::BACKUP_JOB_STATE,
            target = %b.target,
            resource_arn = %b.resource_arn,
            scheduled_for = %scheduled(b),
            execution_arn = exec,
            backup_job_id = job,
            state = state.as_str(),
            percent_done = percent_done.unwrap_or(0.0),
            "backup job state changed"
        ),
        Change::Progress { percent_done } => info!(
            event = event::BACKUP_JOB_PROGRESS,
            target = %b.target,
            backup_job_id = job,
            execution_arn = exec,
            percent_done = *percent_done,
            "backup job progress"
        ),
        Change::ExecutionFailed {
            status,
            error,
            cause,
        } => error!(
            event = event::EXECUTION_FAILED,
            target = %b.target,
            resource_arn = %b.resource_arn,
            scheduled_for = %scheduled(b),
            execution_arn = exec,
            backup_job_id = job,
            state = status.as_str(),
            error = %error,
            cause = %cause,
            "execution failed"
        ),
        Change::Finished(s) => {
            // One field list, two levels: a failed backup is an ERROR line operators alert on.
            macro_rules! finished {
                ($level:ident) => {
                    $level!(
                        event = event::BACKUP_FINISHED,
                        target = %b.target,
                        resource_arn = %b.resource_arn,
                        scheduled_for = %scheduled(b),
                        execution_arn = exec,
                        backup_job_id = job,
                        state = %s.state,
                        success = s.success,
                        duration_seconds = s.duration_seconds,
                        backup_size_bytes = s.backup_size_bytes.unwrap_or(0),
                        recovery_point_arn = s.recovery_point_arn.as_deref().unwrap_or(""),
                        error = s.error.as_deref().unwrap_or(""),
                        "backup finished"
                    )
                };
            }
            if s.success {
                finished!(info);
            } else {
                finished!(error);
            }
        }
    }
}
