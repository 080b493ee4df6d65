//! `orchestrator status`: coverage read from AWS Backup; overdue targets first.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::args::*;
use super::out::{out, outln};
use crate::app::{self};
use crate::aws::backup::SdkBackupJobs;
use crate::pacing::TokenBucket;

/// `status`: reads AWS Backup, prints the table or JSON; the exit code says whether all are covered.
pub(super) async fn run(args: &RunArgs, json: bool, margin: Duration) -> i32 {
    use std::io::IsTerminal;
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // No log subscriber: the report is the output (the SDK's own warnings stay silent).
    let sdk = app::sdk_config(&config, false).await;
    if !app::check_credentials(&sdk).await {
        eprintln!(
            "status: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
        );
        return EXIT_USAGE;
    }
    let backup = SdkBackupJobs::new(sdk.clone());
    let bucket = TokenBucket::new(config.pacing.backup_read_rate, 1);
    let now = Utc::now();
    let enabled: Vec<Arc<crate::model::Rule>> = config.enabled_rules().cloned().collect();
    let reading = match crate::status::read::read(&backup, &enabled, now, &bucket).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("status: cannot read AWS Backup jobs: {e}");
            return EXIT_USAGE;
        }
    };
    // Restore tests: the restore machine's executions (only when a target has a test).
    let tested: Vec<&str> = enabled
        .iter()
        .filter(|r| r.settings().restores.test.is_some())
        .map(|r| &*r.name)
        .collect();
    let (restores, restore_calls) = match &config.restore.state_machine {
        Some(machine) if !tested.is_empty() => {
            let sfn = crate::aws::sfn::SdkStepFunctions::new(sdk.clone());
            let describes = TokenBucket::new(config.pacing.describe_rate, 1);
            match crate::status::restores::read(&sfn, machine, &tested, now, &describes).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("status: cannot read the restore tests' executions: {e}");
                    return EXIT_USAGE;
                }
            }
        }
        _ => Default::default(),
    };
    let report = crate::status::report(
        &config.rules,
        &reading.jobs,
        &restores,
        now,
        margin,
        reading.calls + restore_calls,
    );
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                eprintln!("status: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        // Red only for a person: not into a pipe or file, and never with NO_COLOR set.
        let colour = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        out!("{}", crate::status::render_table(&report, colour));
    }
    if report.overdue > 0 { EXIT_FAILURE } else { 0 }
}
