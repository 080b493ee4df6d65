//! The command line: run (default), `check`, `next`, `status`, `run-now`, `demo`, `sandbox`, `healthcheck`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{self, Options};
use crate::aws::backup::SdkBackupJobs;
use crate::aws::sfn::SdkStepFunctions;
use crate::aws::tagging::SdkTagSearch;
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, ConfigError, LogFormat};
use crate::execution::Trigger;
use crate::launcher::{Fire, Launcher, Outcome};
use crate::metrics::Metrics;
use crate::pacing::TokenBucket;
use crate::tracker::{Tracker, TrackerSettings};
use crate::when::From as When;
use aws_sandbox::{Sandbox, SandboxConfig};

/// Exit code for an invalid config (sysexits EX_CONFIG); systemd's RestartPreventExitStatus.
pub const EXIT_CONFIG: i32 = 78;
/// Exit code for a failed run-now or a runtime error; `status`: a target is overdue.
pub const EXIT_FAILURE: i32 = 1;
/// `status`: AWS could not be read (after retries); also clap's code for a bad argument.
pub const EXIT_USAGE: i32 = 2;

/// Scheduled AWS Backup jobs through AWS Step Functions.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args, Clone)]
struct ConfigArg {
    /// The config file (or set ORCHESTRATOR_CONFIG_TOML to the TOML text itself).
    #[arg(long, short, env = "ORCHESTRATOR_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Log format; overrides the config's `log_format`.
    #[arg(long, value_enum, env = "ORCHESTRATOR_LOG_FORMAT", global = true)]
    log_format: Option<Format>,
    /// Fire schedules and log what would start; make no AWS call.
    #[arg(long)]
    dry_run: bool,
    /// Reload the config file when it changes (same validate-then-swap rule as SIGHUP).
    #[arg(long, env = "ORCHESTRATOR_WATCH")]
    watch: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config, print a summary; exit 0, or 78 with every error.
    Check {
        /// Also resolve each tag selection now (GetResources) and list what it matches.
        #[arg(long)]
        resolve: bool,
    },
    /// Print the next fire times of each target, in its zone and in UTC.
    Next {
        /// How many per target.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Slots at or after this moment: RFC 3339 (2026-03-08T01:30:00-05:00), or a local
        /// date-time read in each target's zone (2026-03-08T01:30, 2026-03-08).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Only this target.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// Resolve tag selections now (GetResources) and show their instances' slots.
        #[arg(long)]
        resolve: bool,
    },
    /// For every target: the last successful backup, the last attempt, the next slot, read from
    /// AWS Backup; overdue targets first. Exit 0 all covered, 1 any overdue, 2 AWS unreadable,
    /// 78 config invalid.
    Status {
        /// JSON for scripts instead of the table.
        #[arg(long)]
        json: bool,
        /// Added to each target's longest gap between slots (and its jitter): the start window
        /// and the job's run time.
        #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = config::parse_duration)]
        margin: Duration,
    },
    /// Start a backup now for the named targets and follow each to its end (a tag selection's
    /// name: every instance it matches now).
    RunNow {
        /// Target names.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Run the daemon against an in-process local AWS endpoint with a demo config.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Run this many replicas (processes) with the `[ha]` lease; the leader is killed
        /// (`kill -9`) after 15 s (or half of --seconds) and a standby takes over.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        replicas: u8,
    },
    /// Serve the local AWS-compatible endpoint (Step Functions + AWS Backup) for tests and benchmarks.
    Sandbox(aws_sandbox::ServeArgs),
    /// GET /healthz on the daemon's listener; exit 0 if healthy (for container health checks).
    Healthcheck {
        /// The daemon's `listen` address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        addr: SocketAddr,
    },
    /// Write the man pages and shell completions (for packaging; see src/dist.rs).
    #[command(hide = true)]
    Generate {
        /// Directory to write `man/` and `completions/` into.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn load(arg: &ConfigArg) -> Result<Config, i32> {
    config::load_from(arg.config.as_deref()).map_err(|e| {
        match &e {
            ConfigError::Invalid(diags) => {
                eprintln!("config invalid: {} error(s)", diags.len());
                for d in diags {
                    eprintln!("  {d}");
                }
            }
            ConfigError::Read { .. } => eprintln!("{e}"),
        }
        EXIT_CONFIG
    })
}

fn init_logs(args: &RunArgs, config: Option<&Config>) {
    let format = match args.log_format {
        Some(Format::Json) => LogFormat::Json,
        Some(Format::Pretty) => LogFormat::Pretty,
        None => config.map(|c| c.log_format).unwrap_or_default(),
    };
    crate::telemetry::init(format);
}

/// Runs the command line; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let args = cli.run.clone();
    match cli.command {
        None => run_daemon(&args).await,
        Some(Command::Check { resolve }) => match load(&args.config) {
            Ok(c) if resolve => match resolved(&c).await {
                Ok(effective) => {
                    print_summary(&c);
                    print_selected(&c, &effective);
                    0
                }
                Err(code) => code,
            },
            Ok(c) => {
                print_summary(&c);
                0
            }
            Err(code) => code,
        },
        Some(Command::Next {
            count,
            from,
            target,
            resolve,
        }) => match load(&args.config) {
            Ok(c) if resolve => match resolved(&c).await {
                Ok(effective) => next(&effective, count, from.as_deref(), target.as_deref()),
                Err(code) => code,
            },
            Ok(c) => next(&c, count, from.as_deref(), target.as_deref()),
            Err(code) => code,
        },
        Some(Command::Status { json, margin }) => status(&args, json, margin).await,
        Some(Command::RunNow { targets }) => run_now(&args, &targets).await,
        Some(Command::Demo {
            seconds,
            replicas: 1,
        }) => demo(&args, seconds).await,
        Some(Command::Demo { seconds, replicas }) => {
            crate::demo::replicas(usize::from(replicas), seconds).await
        }
        Some(Command::Sandbox(serve)) => {
            init_logs(&args, None);
            aws_sandbox::serve_until_interrupted(&serve).await
        }
        Some(Command::Healthcheck { addr }) => {
            if crate::http::probe(addr).await {
                0
            } else {
                EXIT_FAILURE
            }
        }
        Some(Command::Generate { out_dir }) => match crate::dist::generate(&out_dir) {
            Ok(files) => {
                files.iter().for_each(|f| println!("{}", f.display()));
                0
            }
            Err(e) => {
                eprintln!("generate: {}: {e}", out_dir.display());
                EXIT_FAILURE
            }
        },
    }
}

async fn run_daemon(args: &RunArgs) -> i32 {
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

fn print_summary(c: &Config) {
    println!("{}: valid", c.source);
    println!(
        "  {} target(s), {} enabled, {} schedule group(s), {} state machine(s)",
        c.targets.len(),
        c.enabled_targets().count(),
        c.groups().len(),
        c.state_machines().len()
    );
    let now = Utc::now();
    for t in c.targets.iter().take(50) {
        let next = t
            .schedule
            .next_after(now)
            .map_or_else(|| "never".to_string(), |n| n.to_rfc3339());
        let rule = t
            .rule
            .as_deref()
            .map_or(String::new(), |r| format!(" rule {r}"));
        println!(
            "  {:<24} {:<28} {:<16} {} d next {}{}",
            format!("{}{rule}", t.name),
            t.schedule.expression(),
            t.schedule.timezone().name(),
            t.delete_after_days,
            next,
            if t.enabled { "" } else { " (disabled)" }
        );
    }
    if c.targets.len() > 50 {
        println!("  … and {} more", c.targets.len() - 50);
    }
    for s in &c.selections {
        println!(
            "  {:<24} selects ec2:instance in {} ({}) tagged {}{}; {} rule(s); refreshed every {:?}",
            s.name,
            s.region,
            s.account,
            tags_text(&s.select),
            if s.exclude.is_empty() {
                String::new()
            } else {
                format!(", except tagged (any of) {}", tags_text(&s.exclude))
            },
            s.templates.len(),
            c.selection_refresh
        );
    }
    if !c.instances.is_empty() {
        println!(
            "  {} instance(s) with several rules: overlapping slots become one backup (the longest retention)",
            c.instances.len()
        );
    }
}

fn tags_text(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `check --resolve`: what each selection matches now.
fn print_selected(base: &Config, effective: &Config) {
    for s in &base.selections {
        let names = s.instance_names(effective);
        println!("  selection {}: {} instance(s) now", s.name, names.len());
        for n in names.iter().take(50) {
            println!("    {n}");
        }
        if names.len() > 50 {
            println!("    … and {} more", names.len() - 50);
        }
    }
}

/// Resolves every tag selection of `c` once (GetResources) into the config the daemon would run
/// now; a failure is printed and exits 1.
async fn resolved(c: &Config) -> Result<Config, i32> {
    if c.selections.is_empty() {
        return Ok(c.clone());
    }
    let sdk = app::sdk_config(c, false).await;
    if !app::check_credentials(&sdk).await {
        eprintln!(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
        );
        return Err(EXIT_FAILURE);
    }
    let tags = SdkTagSearch::new(sdk);
    let mut sets = std::collections::HashMap::new();
    for s in &c.selections {
        match crate::refresh::resolve(&tags, s).await {
            Ok((ids, _)) => {
                sets.insert(s.name.clone(), Arc::new(ids));
            }
            Err(e) => {
                eprintln!("selection {}: cannot resolve: {e}", s.name);
                return Err(EXIT_FAILURE);
            }
        }
    }
    Ok(crate::selection::effective(c, &sets))
}

/// `next`: checks `--from` and `--target`, then prints.
fn next(c: &Config, count: usize, from: Option<&str>, target: Option<&str>) -> i32 {
    let from = match from.map(When::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("--from: {e}");
            return EXIT_USAGE;
        }
    };
    let selection = |name: &str| c.selections.iter().find(|s| s.name == name);
    if let Some(name) = target
        && c.target(name).is_none()
        && selection(name).is_none()
    {
        eprintln!("{}: no target named `{name}`", c.source);
        return EXIT_CONFIG;
    }
    // A resolved config holds the selections' instances as targets; unresolved, say so.
    let resolved = c
        .selections
        .iter()
        .any(|s| c.targets.iter().any(|t| s.owns(&t.name)));
    if !resolved {
        for s in c
            .selections
            .iter()
            .filter(|s| target.is_none_or(|n| n == s.name))
        {
            println!(
                "{} (tag selection: {}): run `next --resolve` to list its instances' slots",
                s.name,
                tags_text(&s.select)
            );
        }
    }
    match target.and_then(selection) {
        // A selection's name: its instances.
        Some(s) => print_next_where(c, count, from, |t| s.owns(&t.name)),
        None => print_next(c, count, from, target),
    }
    0
}

fn print_next(c: &Config, count: usize, from: Option<When>, only: Option<&str>) {
    print_next_where(c, count, from, |t| only.is_none_or(|n| n == &*t.name));
}

fn print_next_where(
    c: &Config,
    count: usize,
    from: Option<When>,
    keep: impl Fn(&config::Target) -> bool,
) {
    let now = Utc::now();
    for t in c.enabled_targets().filter(|t| keep(t)) {
        // A target alone on its instance prints as it always did; rules show their retention
        // and what each slot starts or is merged into.
        let plain = t.rule.is_none() && c.instances.rules_of(t).is_none();
        if plain {
            println!(
                "{} ({} in {})",
                t.name,
                t.schedule.expression(),
                t.schedule.timezone().name()
            );
        } else {
            println!(
                "{}{} ({} in {}, {} d)",
                t.name,
                t.rule
                    .as_deref()
                    .map_or(String::new(), |r| format!(" rule {r}")),
                t.schedule.expression(),
                t.schedule.timezone().name(),
                t.delete_after_days
            );
        }
        // `--from`: slots at or after that moment (iter_after is strictly after).
        let after = from.map_or(now, |f| {
            f.resolve(t.schedule.timezone()) - chrono::Duration::nanoseconds(1)
        });
        for slot in t.schedule.iter_after(after).take(count) {
            let decision = c.instances.decide(t, slot);
            let (name, into, _) = decision.covering();
            let note = if plain {
                String::new()
            } else if decision.is_merged() {
                format!(
                    "  merged into {name} (rule {}, {} d)",
                    into.rule_name(),
                    into.delete_after_days
                )
            } else {
                format!("  {name}")
            };
            println!(
                "  {}  {}{note}",
                slot.with_timezone(&t.schedule.timezone()).to_rfc3339(),
                slot.to_rfc3339()
            );
        }
    }
}

/// `status`: reads AWS Backup, prints the table or JSON; the exit code says whether all are covered.
async fn status(args: &RunArgs, json: bool, margin: Duration) -> i32 {
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
    let backup = SdkBackupJobs::new(sdk);
    let bucket = TokenBucket::new(config.pacing.backup_read_rate, 1);
    let now = Utc::now();
    let enabled: Vec<Arc<config::Target>> = config.enabled_targets().cloned().collect();
    let reading = match crate::status::read::read(&backup, &enabled, now, &bucket).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("status: cannot read AWS Backup jobs: {e}");
            return EXIT_USAGE;
        }
    };
    let report = crate::status::report(&config.targets, &reading.jobs, now, margin, reading.calls);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("status: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        // Red only for a person: not into a pipe or file, and never with NO_COLOR set.
        let colour = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        print!("{}", crate::status::render_table(&report, colour));
    }
    if report.overdue > 0 { EXIT_FAILURE } else { 0 }
}

async fn run_now(args: &RunArgs, names: &[String]) -> i32 {
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // A terminal by default: progress for a person.
    let mut args = args.clone();
    args.log_format = args.log_format.or(Some(Format::Pretty));
    init_logs(&args, Some(&config));
    // Selections' instances are targets once resolved (`web`: each of them).
    let config = match resolved(&config).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut targets = Vec::new();
    for n in names {
        if let Some(t) = config.run_now_target(n) {
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
            if let Some(t) = config.run_now_target(i) {
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
    targets: Vec<Arc<config::Target>>,
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
    let launcher = Launcher::new(
        sfn,
        clock.clone(),
        handle.clone(),
        Arc::new(TokenBucket::new(
            config.pacing.start_rate,
            config.pacing.start_burst,
        )),
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
pub(crate) async fn demo_sandbox() -> Option<Sandbox> {
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

async fn demo(args: &RunArgs, seconds: Option<u64>) -> i32 {
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
