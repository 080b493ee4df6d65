//! `orchestrator restore`: bring a target's backup back as a new instance, on demand.
//!
//! Picks the recovery point (the newest COMPLETED one at or before `--at`, or the one named),
//! shows it with the placement after overrides, and with `--yes` starts the restore machine
//! under a name made from the request (`restore-{target}-{hash}`: the same command twice starts
//! one restore) and follows it to its end.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::args::*;
use super::out::outln;
use crate::app;
use crate::arn::StateMachineArn;
use crate::aws::backup::SdkBackupJobs;
use crate::aws::sfn::SdkStepFunctions;
use crate::aws::tagging::SdkTagSearch;
use crate::aws::{ErrorKind, RecoveryPoints, StartRequest, StepFunctions};
use crate::model::{Pick, RestorePlacement};
use crate::pacing::TokenBucket;
use crate::restore::{self, RecoveryPoint, Resolved, RestoreInput};
use crate::restore_tests::{Followed, Parts, follow};

/// What the command will restore.
struct Plan {
    target: String,
    resource_arn: String,
    machine: StateMachineArn,
    point: RecoveryPoint,
    place: Resolved,
    input: RestoreInput,
    name: String,
}

pub(super) async fn run(args: &RunArgs, r: &RestoreArgs) -> i32 {
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = match super::check::resolved(&config).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(rule) = config.run_now_rule(&r.target).cloned() else {
        eprintln!("{}: no target named `{}`", config.source, r.target);
        return EXIT_CONFIG;
    };
    let machine = match r
        .restore_state_machine
        .as_deref()
        .map(StateMachineArn::parse)
        .or_else(|| config.restore.state_machine.clone().map(Ok))
    {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            eprintln!("restore: --restore-state-machine: {e}");
            return EXIT_USAGE;
        }
        None => {
            eprintln!(
                "{}: restore_state_machine_arn: missing (the stack's RestoreStateMachineArn output)",
                config.source
            );
            return EXIT_CONFIG;
        }
    };
    let at = match r.at.as_deref().map(DateTime::parse_from_rfc3339) {
        None => Utc::now(),
        Some(Ok(t)) => t.with_timezone(&Utc),
        Some(Err(e)) => {
            eprintln!("restore: --at: {e} (expected RFC 3339, like 2026-11-29T03:00:00Z)");
            return EXIT_USAGE;
        }
    };
    let sdk = app::sdk_config(&config, false).await;
    if !app::check_credentials(&sdk).await {
        eprintln!("restore: no AWS credentials found");
        return EXIT_USAGE;
    }
    let backup = Arc::new(SdkBackupJobs::new(sdk.clone()));
    let sfn = Arc::new(SdkStepFunctions::new(sdk.clone()));
    let placement = overrides(r).over(&rule.settings().restores.placement);
    let plan = match plan(
        &*backup,
        r,
        &rule.name,
        &rule.resource_arn.to_string(),
        machine,
        &placement,
        at,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("restore: {e}");
            return EXIT_USAGE;
        }
    };
    show(&plan, r.json, !r.yes);
    if !r.yes {
        if !r.dry_run {
            eprintln!(
                "restore: nothing started; add --yes to restore (or --dry-run to only show this)"
            );
            return EXIT_USAGE;
        }
        return 0;
    }
    let parts = Parts {
        sfn,
        backup,
        tags: Arc::new(SdkTagSearch::new(sdk)),
        clock: Arc::new(crate::clock::SystemClock),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        describes: Arc::new(TokenBucket::new(config.pacing.describe_rate, 5)),
        starts: Arc::new(TokenBucket::new(config.pacing.start_rate, 1)),
        poll_interval: config.poll_interval.min(std::time::Duration::from_secs(5)),
        max_poll_interval: config
            .max_poll_interval
            .min(std::time::Duration::from_secs(30)),
    };
    execute(&parts, &plan, r.json).await
}

/// The command line's placement flags.
fn overrides(r: &RestoreArgs) -> RestorePlacement {
    RestorePlacement {
        instance_type: r.instance_type.clone(),
        subnet_id: r.subnet_id.clone(),
        security_group_ids: r.security_group_ids.clone(),
        keep_instance_profile: if r.keep_instance_profile {
            Some(true)
        } else if r.no_instance_profile {
            Some(false)
        } else {
            None
        },
    }
}

/// The recovery point, its metadata after overrides, the input and the name.
async fn plan<B: RecoveryPoints>(
    backup: &B,
    r: &RestoreArgs,
    target: &str,
    resource_arn: &str,
    machine: StateMachineArn,
    placement: &RestorePlacement,
    at: DateTime<Utc>,
) -> Result<Plan, String> {
    let vault = r.from_vault.as_deref().map(vault_of).transpose()?;
    let region = vault
        .as_ref()
        .map_or(machine.region.clone(), |(region, _)| region.clone());
    if region != machine.region {
        return Err(format!(
            "the recovery points are in {region}, the restore machine in {}: pass \
             --restore-state-machine with the restore machine of {region} (its stack's \
             RestoreStateMachineArn)",
            machine.region
        ));
    }
    let points = backup
        .recovery_points(
            &region,
            resource_arn,
            vault.as_ref().map(|(_, n)| n.as_str()),
        )
        .await
        .map_err(|e| format!("cannot list the recovery points of {resource_arn}: {e}"))?;
    let point = match &r.recovery_point {
        Some(arn) => points
            .iter()
            .find(|p| &p.arn == arn)
            .ok_or_else(|| format!("{arn} is not a recovery point of {resource_arn} here"))?,
        None => restore::pick(&points, at, None, Pick::Latest, "").ok_or_else(|| {
            format!(
                "no COMPLETED recovery point of {resource_arn} at or before {} ({} found)",
                restore::utc(at),
                points.len()
            )
        })?,
    }
    .clone();
    let meta = backup
        .restore_metadata(&region, &point.vault_name, &point.arn)
        .await
        .map_err(|e| format!("cannot read the restore metadata of {}: {e}", point.arn))?;
    let place = restore::resolve(placement, &meta)?;
    let input = restore::restore_input(
        target,
        resource_arn,
        &point,
        &place,
        u64::from(r.max_restore_minutes) * 60,
        point.created,
    );
    let name = restore::restore_name(target, &input.to_json());
    Ok(Plan {
        target: target.to_string(),
        resource_arn: resource_arn.to_string(),
        machine,
        point,
        place,
        input,
        name,
    })
}

/// `arn:aws:backup:REGION:ACCOUNT:backup-vault:NAME` into its region and name.
fn vault_of(arn: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "backup", region, _, "backup-vault", name] if !name.is_empty() => {
            Ok((region.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "--from-vault {arn}: expected a backup vault ARN (arn:aws:backup:REGION:ACCOUNT:backup-vault:NAME)"
        )),
    }
}

fn show(p: &Plan, as_json: bool, only: bool) {
    let age = Utc::now() - p.point.created;
    if as_json {
        if only {
            outln!("{}", plan_json(p));
        }
        return;
    }
    let groups = p.place.security_group_ids.join(",");
    outln!("restore of {} ({})", p.target, p.resource_arn);
    outln!("  recovery point  {}", p.point.arn);
    outln!("  vault           {}", p.point.vault_name);
    outln!(
        "  taken           {} ({} h {} min ago)",
        restore::utc(p.point.created),
        age.num_hours(),
        age.num_minutes() % 60
    );
    outln!("  instance type   {}", p.place.instance_type);
    outln!("  subnet          {}", p.place.subnet_id);
    outln!("  security groups {groups}");
    outln!(
        "  instance profile {}",
        if p.place.keep_instance_profile {
            "the original's"
        } else {
            "none"
        }
    );
    outln!("  execution       {}", p.machine.execution_arn(&p.name));
}

fn plan_json(p: &Plan) -> serde_json::Value {
    json!({
        "target": p.target,
        "resource_arn": p.resource_arn,
        "recovery_point_arn": p.point.arn,
        "vault": p.point.vault_name,
        "recovery_point_created": restore::utc(p.point.created),
        "recovery_point_age_seconds": (Utc::now() - p.point.created).num_seconds(),
        "metadata": p.place,
        "execution_arn": p.machine.execution_arn(&p.name),
        "input": p.input,
    })
}

/// Starts the restore (or finds the same request's) and follows it; 0 when it succeeded.
async fn execute<S: StepFunctions, B, T>(parts: &Parts<S, B, T>, p: &Plan, as_json: bool) -> i32 {
    let req = StartRequest {
        state_machine: p.machine.clone(),
        name: p.name.clone(),
        input: p.input.to_json(),
    };
    let execution_arn = p.machine.execution_arn(&p.name);
    let again = match parts.sfn.start_execution(&req).await {
        Ok(_) => false,
        // The same name is the same request: that restore is reported, not started again.
        Err(e) if e.kind == ErrorKind::AlreadyExists => true,
        Err(e) => {
            eprintln!("restore: cannot start the restore machine: {e}");
            return EXIT_FAILURE;
        }
    };
    if !as_json {
        if again {
            outln!("this restore was started before: following it, not starting another");
        } else {
            outln!(
                "restore started; following it (the restore job and the instance's status checks)"
            );
        }
    }
    let f = Followed {
        target: p.target.as_str().into(),
        kind: "restore",
        execution_arn: execution_arn.clone(),
        max: std::time::Duration::from_secs(p.input.max_restore_seconds),
        point_created: Some(p.point.created),
        resumed: false,
    };
    let Some(end) = follow(parts, f, &CancellationToken::new()).await else {
        return EXIT_FAILURE;
    };
    let report = end.report.clone().unwrap_or_default();
    let ok = end.detail.status == crate::aws::ExecutionStatus::Succeeded;
    let result = json!({
        "target": p.target,
        "execution_arn": execution_arn,
        "already_started": again,
        "status": end.detail.status.as_str(),
        "recovery_point_arn": p.point.arn,
        "restore_job_id": report.restore_job_id,
        "restore_status": report.restore_status,
        "created_resource_arn": report.created_resource_arn,
        "restore_seconds": report.restore_seconds(),
        "status_checks": report.status_checks,
        "error": end.detail.error,
        "cause": if end.report.is_some() { None } else { end.detail.cause.clone() },
    });
    if as_json {
        outln!("{result}");
    } else if ok {
        outln!(
            "restored: {} in {:.0} s (restore job {})",
            report.created_resource_arn.as_deref().unwrap_or("?"),
            report.restore_seconds().unwrap_or(0.0),
            report.restore_job_id.as_deref().unwrap_or("?")
        );
    } else {
        outln!(
            "restore failed: {} {} (restore job {}: {} {})",
            end.detail.error.as_deref().unwrap_or(""),
            if end.report.is_some() {
                ""
            } else {
                end.detail.cause.as_deref().unwrap_or("")
            },
            report.restore_job_id.as_deref().unwrap_or("none"),
            report.restore_status.as_deref().unwrap_or(""),
            report.restore_status_message.as_deref().unwrap_or("")
        );
    }
    if ok { 0 } else { EXIT_FAILURE }
}
