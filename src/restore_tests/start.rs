//! One slot of one target's restore test: exactly once by name, then followed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::follow::Followed;
use super::parts::{Parts, Planned};
use crate::aws::{ApiError, ErrorKind, RecoveryPoints, StartRequest, StepFunctions, TagSearch};
use crate::restore;
use crate::telemetry::event;

/// Where started tests go to be followed ([`super::watch`]).
pub(super) type Watch = tokio::sync::mpsc::UnboundedSender<Followed>;

/// How often a failing call is tried before the slot is reported failed.
const ATTEMPTS: u32 = 5;

/// Starts `p`'s test of `slot` unless its execution exists (then follows it if it runs), and
/// follows it to its end.
pub(super) async fn start<S: StepFunctions, B: RecoveryPoints, T: TagSearch>(
    parts: &Parts<S, B, T>,
    p: &Planned,
    slot: DateTime<Utc>,
    late: bool,
    watch: &Watch,
    stop: &CancellationToken,
) {
    let name = restore::test_name(&p.target, slot);
    let arn = p.machine.execution_arn(&name);
    let followed = Followed {
        target: p.target.clone(),
        kind: "test",
        execution_arn: arn.clone(),
        max: p.test.max_restore(),
        point_created: None,
        resumed: false,
    };
    // Exactly once: an execution of this name is this slot's test.
    match retried(parts, stop, || async {
        parts.describes.acquire().await;
        parts.sfn.describe_execution(&arn).await
    })
    .await
    {
        Some(Ok(d)) => {
            if d.status == crate::aws::ExecutionStatus::Running {
                info!(event = event::RESTORE_TEST_RESUMED, target = %p.target, execution_arn = %arn,
                    "restore test already running: following it");
                let _ = watch.send(Followed {
                    resumed: true,
                    ..followed
                });
            }
            return;
        }
        // Never started, and too old to start late: the next slot tests.
        Some(Err(e)) if e.kind == ErrorKind::NotFound && too_late(parts, slot) => {
            info!(event = event::RESTORE_TEST_SKIPPED, target = %p.target,
                slot = %restore::utc(slot), reason = "missed by more than an hour while no replica ran",
                "restore test of a missed slot skipped");
            return;
        }
        Some(Err(e)) if e.kind == ErrorKind::NotFound => {}
        Some(Err(e)) => return not_started(parts, p, slot, &e.to_string()),
        None => return,
    }
    let (point, input) = match prepare(parts, p, slot, &name, stop).await {
        Some(Ok(prepared)) => prepared,
        // A slot from before this start, with nothing to restore yet (a new target, say):
        // not a failure of this daemon's tests.
        Some(Err(NotReady::NoPoint(reason))) if late => {
            info!(event = event::RESTORE_TEST_SKIPPED, target = %p.target,
                slot = %restore::utc(slot), reason, "restore test of a missed slot skipped");
            return;
        }
        Some(Err(NotReady::NoPoint(reason) | NotReady::Failed(reason))) => {
            return not_started(parts, p, slot, &reason);
        }
        None => return,
    };
    let req = StartRequest {
        state_machine: p.machine.clone(),
        name: name.clone(),
        input: input.to_json(),
    };
    let started = retried(parts, stop, || async {
        parts.starts.acquire().await;
        parts.sfn.start_execution(&req).await
    })
    .await;
    // Past this match the execution is ours (started now, or by our earlier attempt).
    match started {
        Some(Ok(_)) => {}
        // Taken between our look and our start: ours when it has our input (a start whose
        // answer was lost and was tried again), else someone else's.
        Some(Err(e)) if e.kind == ErrorKind::AlreadyExists => {
            match taken_by_us(parts, p, &arn, &req.input, stop).await {
                Some(Ok(())) => {}
                Some(Err(reason)) => return not_started(parts, p, slot, &reason),
                None => return,
            }
        }
        Some(Err(e)) => return not_started(parts, p, slot, &e.to_string()),
        None => return,
    }
    let age = (slot - point.created).num_seconds();
    info!(
        event = event::RESTORE_TEST_STARTED,
        target = %p.target,
        recovery_point_age_seconds = age,
        recovery_point_arn = %point.arn,
        slot = %restore::utc(slot),
        execution_name = %name,
        execution_arn = %arn,
        "restore test started"
    );
    let _ = watch.send(Followed {
        point_created: Some(point.created),
        resumed: false,
        ..followed
    });
}

/// After `AlreadyExists` on a start: `Ok` when the execution under `arn` has our `input` (our
/// own earlier attempt, whose answer was lost), else why not (a mismatch is reported); `None`:
/// stopped meanwhile.
async fn taken_by_us<S: StepFunctions, B, T>(
    parts: &Parts<S, B, T>,
    p: &Planned,
    arn: &str,
    input: &str,
    stop: &CancellationToken,
) -> Option<Result<(), String>> {
    let found = retried(parts, stop, || async {
        parts.describes.acquire().await;
        parts.sfn.describe_execution(arn).await
    })
    .await?;
    Some(match found {
        Ok(d) if d.input.as_deref() == Some(input) => Ok(()),
        Ok(d) => {
            error!(
                event = event::EXECUTION_INPUT_MISMATCH,
                target = %p.target,
                execution_arn = %arn,
                found_input = d.input.as_deref().unwrap_or(""),
                "the restore test's name is taken by an execution with another input (not started by the orchestrator)"
            );
            parts.metrics.execution_input_mismatch(&p.target);
            Err("its execution name is taken with another input".to_string())
        }
        Err(e) => Err(e.to_string()),
    })
}

/// A slot more than [`super::CATCH_UP`] old is not started late.
fn too_late<S, B, T>(parts: &Parts<S, B, T>, slot: DateTime<Utc>) -> bool {
    (parts.clock.now() - slot).to_std().unwrap_or_default() > super::CATCH_UP
}

/// Why a slot's test cannot start.
enum NotReady {
    /// No recovery point to restore.
    NoPoint(String),
    /// An AWS call or the placement failed.
    Failed(String),
}

/// The recovery point the slot restores and the machine's input; `Err`: why it cannot start;
/// `None`: stopped meanwhile.
async fn prepare<S: StepFunctions, B: RecoveryPoints, T: TagSearch>(
    parts: &Parts<S, B, T>,
    p: &Planned,
    slot: DateTime<Utc>,
    name: &str,
    stop: &CancellationToken,
) -> Option<Result<(crate::aws::RecoveryPoint, restore::RestoreInput), NotReady>> {
    let region = p.machine.region.clone();
    let points = match retried(parts, stop, || {
        parts.backup.recovery_points(&region, &p.resource_arn, None)
    })
    .await
    {
        Some(Ok(points)) => points,
        Some(Err(e)) => return Some(Err(NotReady::Failed(e.to_string()))),
        None => return None,
    };
    let Some(point) = restore::pick(&points, slot, Some(p.test.within_days), p.test.pick, name)
    else {
        let reason = format!(
            "no COMPLETED recovery point of {} within {} days before the slot",
            p.resource_arn, p.test.within_days
        );
        return Some(Err(NotReady::NoPoint(reason)));
    };
    let point = point.clone();
    // The recovery point's own metadata only for what the config leaves open.
    let placement = &p.test.placement;
    let complete = placement.instance_type.is_some()
        && placement.subnet_id.is_some()
        && placement.security_group_ids.is_some();
    let meta = if complete {
        std::collections::BTreeMap::new()
    } else {
        match retried(parts, stop, || {
            parts
                .backup
                .restore_metadata(&region, &point.vault_name, &point.arn)
        })
        .await
        {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Some(Err(NotReady::Failed(e.to_string()))),
            None => return None,
        }
    };
    let place = match restore::resolve(&p.test.placement, &meta) {
        Ok(place) => place,
        Err(e) => return Some(Err(NotReady::Failed(e))),
    };
    let input = restore::test_input(&p.target, &p.resource_arn, &point, &place, &p.test, slot);
    Some(Ok((point, input)))
}

/// A slot that could not start: logged and counted as a failed test.
fn not_started<S, B, T>(parts: &Parts<S, B, T>, p: &Planned, slot: DateTime<Utc>, reason: &str) {
    error!(
        event = event::RESTORE_TEST_NOT_STARTED,
        target = %p.target,
        slot = %restore::utc(slot),
        reason,
        "restore test not started"
    );
    parts.metrics.restore_test_not_started(&p.target);
}

/// `call` until it answers or fails for good: throttling and transient faults are tried
/// again with a growing wait, [`ATTEMPTS`] times. `None`: stopped meanwhile.
async fn retried<S, B, T, R, F>(
    parts: &Parts<S, B, T>,
    stop: &CancellationToken,
    call: impl Fn() -> F,
) -> Option<Result<R, ApiError>>
where
    F: Future<Output = Result<R, ApiError>>,
{
    let mut wait = parts.poll_interval.max(Duration::from_millis(200));
    for attempt in 1..=ATTEMPTS {
        match call().await {
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                warn!(event = event::RESTORE_API_RETRY, error = %e, attempt, "restore call failed; trying again");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(parts.max_poll_interval.max(wait));
            }
            other => return Some(other),
        }
    }
    unreachable!("the last attempt returns")
}
