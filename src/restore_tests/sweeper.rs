//! The sweeper: restored instances past their expiry (tag `orchestrator:restore-expires`) plus
//! the grace are terminated by the restore machine's sweep. It may delete only an instance that
//! carries both restore-test tags, whose expiry has passed, and whose image is a recovery point
//! of the stack's vault (the machine checks each); never a recovery point's AMI or snapshots.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::follow::Followed;
use super::parts::Parts;
use crate::arn::StateMachineArn;
use crate::aws::{
    ErrorKind, ExecutionStatus, RecoveryPoints, StartRequest, StepFunctions, TagQuery, TagSearch,
};
use crate::model::RestoreGlobals;
use crate::restore::{self, TAG_EXPIRES, TAG_TEST};
use crate::telemetry::event;

/// Sweeps of one leftover before the sweeper gives up on it (and says so at each look).
const SWEEP_ATTEMPTS: u32 = 5;

/// One look: counts what is alive and expired, and starts a sweep of each expired one.
pub(super) async fn sweep<S: StepFunctions, B: RecoveryPoints, T: TagSearch>(
    parts: Arc<Parts<S, B, T>>,
    machine: StateMachineArn,
    globals: RestoreGlobals,
    watch: super::start::Watch,
) {
    let query = TagQuery {
        region: machine.region.clone(),
        resource_types: vec!["ec2:instance".to_string()],
        tag_filters: vec![(TAG_TEST.to_string(), Vec::new())],
    };
    let found = match parts.tags.find(&query).await {
        Ok(f) => f,
        Err(e) => {
            warn!(event = event::RESTORE_SWEEP, error = %e, "cannot list restored instances; the next sweep tries again");
            return;
        }
    };
    let now = parts.clock.now();
    let grace = chrono::Duration::from_std(globals.sweep_grace).unwrap_or_default();
    let expired: Vec<(String, DateTime<Utc>)> = found
        .resources
        .iter()
        .filter_map(|r| {
            let expires = r
                .tags
                .iter()
                .find(|(k, _)| k == TAG_EXPIRES)?
                .1
                .parse()
                .ok()?;
            (expires + grace < now).then(|| (r.arn.clone(), expires))
        })
        .collect();
    parts
        .metrics
        .set_restored_resources(found.resources.len(), expired.len());
    // Every look is in the metrics; a line only when there is something to sweep.
    if expired.is_empty() {
        tracing::debug!(
            event = event::RESTORE_SWEEP,
            alive = found.resources.len(),
            calls = found.calls,
            "restored instances looked at"
        );
    } else {
        info!(
            event = event::RESTORE_SWEEP,
            alive = found.resources.len(),
            expired = expired.len(),
            calls = found.calls,
            "restored instances looked at: some are past their expiry"
        );
    }
    for (arn, expires) in expired {
        let Some(name) = sweep_to_start(&parts, &machine, &arn, expires).await else {
            continue;
        };
        let execution_arn = machine.execution_arn(&name);
        info!(
            event = event::RESTORE_SWEEP_STARTED,
            resource_arn = %arn,
            expires_at = %restore::utc(expires),
            execution_arn = %execution_arn,
            "sweeping an expired restored instance"
        );
        let _ = watch.send(Followed {
            target: Arc::from(arn.as_str()),
            kind: "sweep",
            execution_arn,
            max: std::time::Duration::ZERO,
            point_created: None,
            resumed: false,
        });
    }
}

/// Starts the sweep of `arn` under its first name not taken by a failed sweep (at most
/// [`SWEEP_ATTEMPTS`]); `None` when one runs or succeeded already, or the start failed (the
/// next look tries again).
async fn sweep_to_start<S: StepFunctions, B, T>(
    parts: &Parts<S, B, T>,
    machine: &StateMachineArn,
    arn: &str,
    expires: DateTime<Utc>,
) -> Option<String> {
    let id = arn.rsplit('/').next().unwrap_or(arn);
    for attempt in 1..=SWEEP_ATTEMPTS {
        let name = restore::sweep_name(id, expires, attempt);
        let req = StartRequest {
            state_machine: machine.clone(),
            name: name.clone(),
            input: serde_json::json!({ "Action": "sweep", "ResourceArn": arn }).to_string(),
        };
        parts.starts.acquire().await;
        match parts.sfn.start_execution(&req).await {
            Ok(_) => return Some(name),
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                parts.describes.acquire().await;
                let d = parts
                    .sfn
                    .describe_execution(&machine.execution_arn(&name))
                    .await
                    .ok()?;
                if matches!(
                    d.status,
                    ExecutionStatus::Running | ExecutionStatus::Succeeded
                ) {
                    return None;
                }
            }
            Err(e) => {
                warn!(event = event::RESTORE_SWEEP, resource_arn = %arn, error = %e,
                    "cannot start the sweep; the next look tries again");
                return None;
            }
        }
    }
    warn!(event = event::RESTORE_SWEEP, resource_arn = %arn, attempts = SWEEP_ATTEMPTS,
        "every sweep of this instance failed: terminate it by hand (it carries orchestrator:restore-test)");
    None
}
