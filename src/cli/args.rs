//! The command line's clap structs (every subcommand and flag), its exit codes, and what
//! every command does first: load the config, set up the logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError};
use crate::model::Config;
use crate::telemetry::LogFormat;

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
    pub(super) command: Option<Command>,
    #[command(flatten)]
    pub(super) run: RunArgs,
}

#[derive(Debug, Args, Clone)]
pub(super) struct ConfigArg {
    /// The config file (or set ORCHESTRATOR_CONFIG_TOML to the TOML text itself).
    #[arg(long, short, env = "ORCHESTRATOR_CONFIG", global = true)]
    pub(super) config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub(super) struct RunArgs {
    #[command(flatten)]
    pub(super) config: ConfigArg,
    /// Log format; overrides the config's `log_format`.
    #[arg(long, value_enum, env = "ORCHESTRATOR_LOG_FORMAT", global = true)]
    pub(super) log_format: Option<Format>,
    /// Fire schedules and log what would start; make no AWS call.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Reload the config file when it changes (same validate-then-swap rule as SIGHUP).
    #[arg(long, env = "ORCHESTRATOR_WATCH")]
    pub(super) watch: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Format {
    Json,
    Pretty,
}

/// `orchestrator restore`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct RestoreArgs {
    /// The target (a `[[backup]]` name, or a selection's instance name).
    pub(super) target: String,
    /// Restore the newest recovery point at or before this time (RFC 3339; default now).
    #[arg(long, value_name = "TIME", conflicts_with = "recovery_point")]
    pub(super) at: Option<String>,
    /// Restore this recovery point (an AMI ARN) instead.
    #[arg(long, value_name = "ARN")]
    pub(super) recovery_point: Option<String>,
    /// Look in this backup vault (a copy in another region or account, for a DR restore)
    /// instead of every vault of the target's region.
    #[arg(long, value_name = "ARN")]
    pub(super) from_vault: Option<String>,
    /// The restore machine to use (default: restore_state_machine_arn; a DR restore in another
    /// region needs that region's).
    #[arg(long, value_name = "ARN")]
    pub(super) restore_state_machine: Option<String>,
    /// Subnet of the restored instance.
    #[arg(long, value_name = "ID")]
    pub(super) subnet_id: Option<String>,
    /// Security groups of the restored instance (comma-separated, 1 to 5).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub(super) security_group_ids: Option<Vec<String>>,
    /// Instance type of the restored instance.
    #[arg(long, value_name = "TYPE")]
    pub(super) instance_type: Option<String>,
    /// Keep the recovery point's instance profile (the stack must allow it).
    #[arg(long, conflicts_with = "no_instance_profile")]
    pub(super) keep_instance_profile: bool,
    /// No instance profile (the default unless the config keeps it).
    #[arg(long)]
    pub(super) no_instance_profile: bool,
    /// The longest the restore may take until the instance passes its status checks.
    #[arg(long, value_name = "MINUTES", default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub(super) max_restore_minutes: u32,
    /// Print what would be restored and stop.
    #[arg(long, conflicts_with = "yes")]
    pub(super) dry_run: bool,
    /// Restore (without it, the command only shows what it would restore).
    #[arg(long)]
    pub(super) yes: bool,
    /// JSON for scripts.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
    /// Restore a target's backup into a new instance: picks the newest COMPLETED recovery point
    /// at or before --at, shows what it will restore, and with --yes starts the restore machine
    /// and follows it. Exit 0 restored, 1 failed, 2 nothing to restore or AWS unreadable, 78
    /// config invalid.
    Restore(RestoreArgs),
    /// Run the daemon against an in-process local AWS endpoint with a demo config.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Run this many replicas (processes) with the `[ha]` lease; the leader is killed
        /// (`kill -9`) after 15 s (or half of --seconds) and a standby takes over.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        replicas: u8,
        /// Also print each backup's progress (`backup_job_progress`) as it moves.
        #[arg(long)]
        verbose: bool,
        /// Use a running `orchestrator sandbox` at this URL (started with
        /// `--fail-resource i-0fedcba9876543210`) instead of the in-process endpoint.
        #[arg(long, value_name = "URL", hide = true)]
        endpoint: Option<String>,
    },
    /// Serve the local AWS-compatible endpoint (Step Functions + AWS Backup) for tests and benchmarks.
    Sandbox(aws_sandbox::serve::ServeArgs),
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

pub(super) fn load(arg: &ConfigArg) -> Result<Config, i32> {
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

pub(super) fn init_logs(args: &RunArgs, config: Option<&Config>) {
    let format = match args.log_format {
        Some(Format::Json) => LogFormat::Json,
        Some(Format::Pretty) => LogFormat::Pretty,
        None => config.map(|c| c.log_format).unwrap_or_default(),
    };
    crate::telemetry::init(format);
}
