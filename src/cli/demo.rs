//! `orchestrator demo`: the daemon against an in-process local AWS endpoint with a demo
//! config (`--replicas N`: [`super::demo_replicas`]).

use std::sync::Arc;
use std::time::Duration;

use super::args::*;
use crate::app::{self, Options};
use crate::aws::backup::SdkBackupJobs;
use crate::aws::sfn::SdkStepFunctions;
use crate::aws::tagging::SdkTagSearch;
use crate::clock::SystemClock;
use crate::config::{self};
use aws_sandbox::{Sandbox, SandboxConfig};

/// The demo instances a tag selection finds: (instance id, tags).
pub const DEMO_TAGGED: &[(&str, &[(&str, &str)])] = &[
    (
        "i-0aaaaaaaaaaaaaaa1",
        &[("backup", "demo"), ("env", "prod")],
    ),
    (
        "i-0aaaaaaaaaaaaaaa2",
        &[("backup", "demo"), ("env", "prod")],
    ),
    // Tagged, but excluded.
    (
        "i-0aaaaaaaaaaaaaaa3",
        &[("backup", "demo"), ("backup-exclude", "true")],
    ),
];

/// The demo config: two targets every 5 seconds, one of them failing, one copied to another
/// region, and a tag selection, against the sandbox.
pub fn demo_config(endpoint: &str) -> String {
    format!(
        r#"# Demo: fires every 5 seconds against the in-process sandbox.
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-backup"
# Region and (in code) credentials are given: the demo asks no credential chain and no instance metadata.
region = "us-east-1"
endpoint_url = "{endpoint}"
poll_interval = "1s"
max_poll_interval = "2s"
selection_refresh = "10s"

[defaults]
concurrency = "allow"

[[backup]]
name = "web-1"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
schedule = "*/5 * * * * *"
# Disaster recovery: each completed backup is copied to a vault in another region.
copy_to = [{{ vault_arn = "arn:aws:backup:us-west-2:123456789012:backup-vault:orchestrator-dr", delete_after_days = 90 }}]

[[backup]]
name = "db-1"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210"
schedule = "*/10 * * * * *"
timezone = "Asia/Tokyo"

# Every instance tagged backup = "demo" (the sandbox holds three; one is excluded), each a
# target named fleet-<instance id>, looked up again every 10 seconds.
[[backup]]
name = "fleet"
select_tags = {{ backup = "demo" }}
exclude_tags = {{ backup-exclude = "true" }}
schedule = "*/15 * * * * *"
"#
    )
}

/// The demo's in-process endpoint: jobs of 1 s + 3 s, db-1's failing; None (said on stderr)
/// when it cannot listen.
pub(super) async fn demo_sandbox() -> Option<Sandbox> {
    let started = Sandbox::start(
        "127.0.0.1:0".parse().expect("literal address"),
        SandboxConfig {
            job_pending: Duration::from_secs(1),
            job_running: Duration::from_secs(3),
            fail_resources: vec!["i-0fedcba9876543210".into()],
            // The machine's job poll before it copies (300 s in AWS).
            hooks: aws_sandbox::HookSettings {
                end_poll: Duration::from_secs(1),
                ..aws_sandbox::HookSettings::default()
            },
            copy_pending: Duration::from_secs(1),
            copy_running: Duration::from_secs(2),
            ..SandboxConfig::default()
        },
    )
    .await;
    started
        .inspect_err(|e| eprintln!("demo: cannot start the local AWS endpoint: {e}"))
        .ok()
}

pub(super) async fn run(args: &RunArgs, seconds: Option<u64>) -> i32 {
    let mut args = args.clone();
    args.log_format = args.log_format.or(Some(Format::Pretty));
    init_logs(&args, None);
    let Some(sandbox) = demo_sandbox().await else {
        return EXIT_FAILURE;
    };
    sandbox.put_instances(
        DEMO_TAGGED
            .iter()
            .map(|(id, tags)| aws_sandbox::TaggedInstance {
                arn: format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}"),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect(),
    );
    tracing::info!(endpoint = %sandbox.endpoint_url(), "local AWS endpoint (sandbox) up; db-1's backups are set to fail; three instances are tagged backup=demo (one excluded)");
    let config = match config::parse(&demo_config(&sandbox.endpoint_url()), "<demo>") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo config: {e}");
            return EXIT_FAILURE;
        }
    };
    let signals = match crate::signals::listen() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return EXIT_FAILURE;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut signals = signals;
        let timer = async {
            match seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timer);
        loop {
            tokio::select! {
                s = signals.recv() => match s {
                    Some(s) => { let _ = tx.send(s); }
                    None => break,
                },
                () = &mut timer => {
                    let _ = tx.send(crate::signals::Signal::Shutdown);
                    break;
                }
            }
        }
    });
    let sdk = app::sdk_config(&config, true).await;
    let result = app::run(
        Options::default(),
        config,
        Arc::new(SdkStepFunctions::new(sdk.clone())),
        Arc::new(SdkBackupJobs::new(sdk.clone())),
        None::<Arc<crate::aws::dynamodb::SdkLeaseTable>>,
        Arc::new(SdkTagSearch::new(sdk)),
        Arc::new(SystemClock),
        rx,
    )
    .await;
    let stats = sandbox.stats();
    println!(
        "demo: {} executions started, {} StartExecution duplicates refused by name",
        stats.start_execution_accepted, stats.already_exists
    );
    sandbox.shutdown().await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            EXIT_FAILURE
        }
    }
}
