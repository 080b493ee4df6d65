//! `orchestrator run-now`: start a backup now for the named targets and follow each to its end.

use std::sync::Arc;
use std::time::Duration;

use super::args::*;
use crate::app::{self};
use crate::aws::backup::SdkBackupJobs;
use crate::aws::sfn::SdkStepFunctions;
use crate::clock::{Clock, SystemClock};
use crate::execution::Trigger;
use crate::launcher::{Fire, Launcher, Outcome};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::pacing::TokenBucket;
use crate::tracker::{Tracker, TrackerSettings};

pub(super) async fn run(args: &RunArgs, names: &[String]) -> i32 {
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // A terminal by default: progress for a person.
    let mut args = args.clone();
    args.log_format = args.log_format.or(Some(Format::Pretty));
    init_logs(&args, Some(&config));
    // Selections' instances are targets once resolved (`web`: each of them).
    let config = match super::check::resolved(&config).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut targets = Vec::new();
    for n in names {
        if let Some(t) = config.run_now_rule(n) {
            targets.push(t.clone());
            continue;
        }
        let Some(s) = config.selections.iter().find(|s| &s.name == n) else {
            eprintln!("{}: no target named `{n}`", config.source);
            return EXIT_CONFIG;
        };
        let instances = s.instance_names(&config);
        if instances.is_empty() {
            eprintln!("selection {n}: no instance matches its tags now");
            return EXIT_FAILURE;
        }
        for i in instances {
            if let Some(t) = config.run_now_rule(i) {
                targets.push(t.clone());
            }
        }
    }
    let sdk = app::sdk_config(&config, false).await;
    app::check_credentials(&sdk).await;
    let sfn = Arc::new(SdkStepFunctions::new(sdk.clone()));
    let backup = Arc::new(SdkBackupJobs::new(sdk));
    run_now_with(&config, targets, sfn, backup).await
}

/// Starts each target now, follows all to their end; 0 only if every backup completed.
pub async fn run_now_with<S, B>(
    config: &Config,
    targets: Vec<Arc<crate::model::Rule>>,
    sfn: Arc<S>,
    backup: Arc<B>,
) -> i32
where
    S: crate::aws::StepFunctions,
    B: crate::aws::BackupJobs,
{
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let (mut tracker, handle) = Tracker::new(
        sfn.clone(),
        backup,
        clock.clone(),
        TrackerSettings {
            poll_interval: config.poll_interval.min(Duration::from_secs(5)),
            max_poll_interval: config.max_poll_interval.min(Duration::from_secs(30)),
            describe_rate: config.pacing.describe_rate,
            backup_read_rate: config.pacing.backup_read_rate,
        },
        metrics.clone(),
    );
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::unbounded_channel();
    tracker.report_finished_to(finished_tx);
    let starts = Arc::new(TokenBucket::new(
        config.pacing.start_rate,
        config.pacing.start_burst,
    ));
    tracker.share_start_pacing(starts.clone());
    let launcher = Launcher::new(
        sfn,
        clock.clone(),
        handle.clone(),
        starts,
        metrics,
        false,
        tokio_util::sync::CancellationToken::new(),
    );
    let mut started = 0;
    let mut failed_to_start = 0;
    for t in targets {
        let fire = Fire {
            target: t,
            slot: clock.now(),
            trigger: Trigger::Manual,
        };
        match launcher.start(&fire, rand::random()).await {
            Outcome::Started(_) | Outcome::AlreadyStarted(_) => started += 1,
            _ => failed_to_start += 1,
        }
    }
    drop(launcher);
    drop(handle);
    // The tracker ends when every handle is gone and nothing is left to follow.
    tracker
        .run(tokio_util::sync::CancellationToken::new())
        .await;
    let mut completed = 0;
    while let Ok((_, summary)) = finished_rx.try_recv() {
        if summary.success {
            completed += 1;
        }
    }
    if failed_to_start == 0 && completed == started {
        0
    } else {
        EXIT_FAILURE
    }
}
