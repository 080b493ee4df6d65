//! `orchestrator [--config FILE]`: the daemon.

use std::sync::Arc;

use super::args::*;
use crate::app::{self, Options};
use crate::aws::backup::SdkBackupJobs;
use crate::aws::sfn::SdkStepFunctions;
use crate::aws::tagging::SdkTagSearch;
use crate::clock::SystemClock;

pub(super) async fn run(args: &RunArgs) -> i32 {
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logs(args, Some(&config));
    let signals = match crate::signals::listen() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return EXIT_FAILURE;
        }
    };
    let sdk = app::sdk_config(&config, false).await;
    if !args.dry_run {
        app::check_credentials(&sdk).await;
    }
    let opts = Options {
        config_path: args.config.config.clone(),
        watch: args.watch,
        dry_run: args.dry_run,
    };
    let lease = config
        .ha
        .as_ref()
        .map(|ha| Arc::new(crate::aws::dynamodb::SdkLeaseTable::new(&sdk, &ha.table)));
    let result = app::run(
        opts,
        config,
        Arc::new(SdkStepFunctions::new(sdk.clone())),
        Arc::new(SdkBackupJobs::new(sdk.clone())),
        lease,
        Arc::new(SdkTagSearch::new(sdk)),
        Arc::new(SystemClock),
        signals,
    )
    .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "orchestrator failed");
            EXIT_FAILURE
        }
    }
}
