//! `orchestrator demo`: the daemon against an in-process local AWS endpoint with a demo
//! config (`--replicas N`: [`super::demo_replicas`]), its lines short and folded for a person,
//! and at the end a summary per target counted from the endpoint's records
//! ([`super::demo_summary`]) and the commands to try next.

use std::sync::Arc;
use std::time::Duration;

use super::args::*;
use super::demo_summary;
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
    // The restore test's seconds: 12 s after the start (when web-1 has backups), then every
    // 30 s.
    let first = (chrono::Utc::now().timestamp() + 12).rem_euclid(60);
    let restore_seconds = format!("{first},{}", (first + 30) % 60);
    format!(
        r#"# Demo: fires every 5 seconds against the in-process sandbox.
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-backup"
# Region and (in code) credentials are given: the demo asks no credential chain and no instance metadata.
region = "us-east-1"
endpoint_url = "{endpoint}"
poll_interval = "1s"
max_poll_interval = "2s"
selection_refresh = "10s"
# Restore tests run on the stack's restore machine; the sweeper looks for leftovers every 10 s.
restore_state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-restore"
restore_sweep_interval = "10s"

[defaults]
concurrency = "allow"

[[backup]]
name = "web-1"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
schedule = "*/5 * * * * *"
# Disaster recovery: each completed backup is copied to a vault in another region.
copy_to = [{{ vault_arn = "arn:aws:backup:us-west-2:123456789012:backup-vault:orchestrator-dr", delete_after_days = 90 }}]
# The application stops for the snapshot and starts again once the job has started.
pre_document = {{ name = "orchestrator-systemd-unit", parameters = {{ action = "stop", unit = "app" }} }}
post_document = {{ name = "orchestrator-systemd-unit", parameters = {{ action = "start", unit = "app" }} }}
# Proves the backups come back: restores the newest one into a private subnet, waits for the
# status checks, runs the validation document on the restored instance, then deletes it.
restore = {{ subnet_id = "subnet-0de0de0de0de0de00", security_group_ids = ["sg-0de0de0de0de0de00"] }}
restore_test = {{ schedule = "{restore_seconds} * * * * *", max_restore_minutes = 5, keep_minutes = 0, validate_document = {{ name = "orchestrator-validate", parameters = {{ command = "systemctl is-active app" }} }} }}

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

/// What the demo's endpoint simulates: jobs of 1 s + 3 s, db-1's failing, quick hooks and
/// copies (for `--endpoint`, start the endpoint with the same).
pub fn demo_sandbox_config() -> SandboxConfig {
    SandboxConfig {
        job_pending: Duration::from_secs(1),
        job_running: Duration::from_secs(3),
        fail_resources: vec!["i-0fedcba9876543210".into()],
        // The machine's job polls around the post hook and before it copies (10 s and 300 s
        // in AWS).
        hooks: aws_sandbox::HookSettings {
            start_poll: Duration::from_secs(1),
            end_poll: Duration::from_secs(1),
            ..aws_sandbox::HookSettings::default()
        },
        copy_pending: Duration::from_secs(1),
        copy_running: Duration::from_secs(2),
        // A restore of 4 s, an instance running 1 s later with its checks ok 2 s after, and
        // the restore machine's polls every second (60 s and 15 s in AWS).
        restore: aws_sandbox::RestoreSettings {
            job_poll: Duration::from_secs(1),
            instance_poll: Duration::from_secs(1),
            ..aws_sandbox::RestoreSettings::default()
        },
        ..SandboxConfig::default()
    }
}

/// The instances the demo's tag selection finds, as the endpoint holds them.
pub fn demo_instances() -> Vec<aws_sandbox::TaggedInstance> {
    DEMO_TAGGED
        .iter()
        .map(|(id, tags)| aws_sandbox::TaggedInstance {
            arn: format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}"),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect()
}

/// The demo's in-process endpoint ([`demo_sandbox_config`], [`demo_instances`]); None (said on
/// stderr) when it cannot listen.
pub(super) async fn demo_sandbox() -> Option<Sandbox> {
    let started = Sandbox::start(
        "127.0.0.1:0".parse().expect("literal address"),
        demo_sandbox_config(),
    )
    .await;
    let sandbox = started
        .inspect_err(|e| eprintln!("demo: cannot start the local AWS endpoint: {e}"))
        .ok()?;
    sandbox.put_instances(demo_instances());
    Some(sandbox)
}

/// A free port on 127.0.0.1 for the daemon's metrics (read once, just before it stops).
fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// How the demo runs.
#[derive(Debug, Clone, Default)]
pub(super) struct DemoOptions {
    /// Stop after this long (None: at Ctrl-C).
    pub seconds: Option<u64>,
    /// Also every `backup_job_progress` line.
    pub verbose: bool,
    /// A running `orchestrator sandbox` (set up as [`demo_sandbox_config`] and
    /// [`demo_instances`]) instead of the in-process one.
    pub endpoint: Option<String>,
}

pub(super) async fn run(args: &RunArgs, opts: DemoOptions) -> i32 {
    let format = match args.log_format {
        Some(Format::Json) => crate::telemetry::LogFormat::Json,
        _ => crate::telemetry::LogFormat::Pretty,
    };
    crate::telemetry::init_with(format, opts.verbose);
    let own = match &opts.endpoint {
        Some(_) => None,
        None => match demo_sandbox().await {
            Some(s) => Some(s),
            None => return EXIT_FAILURE,
        },
    };
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| own.as_ref().map(Sandbox::endpoint_url))
        .unwrap_or_default();
    tracing::info!(endpoint = %endpoint, "local AWS endpoint (sandbox) up; db-1's backups fail; 3 instances tagged backup=demo (1 excluded)");
    let port = free_port();
    let text = match port {
        Some(p) => format!("listen = \"127.0.0.1:{p}\"\n{}", demo_config(&endpoint)),
        None => demo_config(&endpoint),
    };
    let config = match config::parse(&text, "<demo>") {
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
    // The daemon's merged and skipped slots, scraped just before it is told to stop.
    let (scraped_tx, scraped_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(forward_signals(signals, opts.seconds, port, tx, scraped_tx));
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
    let scrape = scraped_rx.await.unwrap_or_default();
    print_summary(&endpoint, &scrape).await;
    if let Some(sandbox) = own {
        sandbox.shutdown().await;
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Hands signals to the daemon, and a shutdown after `seconds`; before the shutdown, the
/// daemon's `/metrics` on `port` goes to `scraped`.
async fn forward_signals(
    mut signals: tokio::sync::mpsc::UnboundedReceiver<crate::signals::Signal>,
    seconds: Option<u64>,
    port: Option<u16>,
    tx: tokio::sync::mpsc::UnboundedSender<crate::signals::Signal>,
    scraped: tokio::sync::oneshot::Sender<String>,
) {
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
                Some(crate::signals::Signal::Shutdown) => break,
                Some(s) => { let _ = tx.send(s); }
                None => return,
            },
            () = &mut timer => break,
        }
    }
    let text = match port {
        Some(p) => demo_summary::text(&format!("127.0.0.1:{p}"), "/metrics")
            .await
            .unwrap_or_default(),
        None => String::new(),
    };
    let _ = scraped.send(text);
    let _ = tx.send(crate::signals::Signal::Shutdown);
}

/// The closing lines: the endpoint's totals, the table per target, what to try next.
pub(super) async fn print_summary(endpoint: &str, scrape: &str) {
    println!(
        "demo: stopped; waiting for the backups and copies still running to end (10 s at most)"
    );
    let records = demo_summary::Records::read(endpoint, Duration::from_secs(10)).await;
    let stats = demo_summary::get(endpoint, "/_sandbox/stats").await;
    println!(
        "demo: {} executions started, {} StartExecution duplicates refused by name",
        stats["start_execution_accepted"].as_u64().unwrap_or(0),
        stats["already_exists"].as_u64().unwrap_or(0)
    );
    print!(
        "{}",
        demo_summary::render(&demo_summary::rows(&records, scrape))
    );
}
