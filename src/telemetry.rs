//! Structured logs: one JSON object a line (or pretty for a terminal), and the stable field and
//! event names operators alert on (listed in README.md).

mod pretty;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

pub use pretty::{WIDTH, fit, short};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line (journald, CloudWatch).
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Field names; part of the interface.
pub mod field {
    /// What happened (one of [`super::event`]).
    pub const EVENT: &str = "event";
    /// The target's name.
    pub const TARGET: &str = "target";
    /// The instance ARN.
    pub const RESOURCE_ARN: &str = "resource_arn";
    /// The slot, RFC 3339 UTC.
    pub const SCHEDULED_FOR: &str = "scheduled_for";
    /// The execution ARN.
    pub const EXECUTION_ARN: &str = "execution_arn";
    /// The backup job id.
    pub const BACKUP_JOB_ID: &str = "backup_job_id";
    /// An execution status or job state.
    pub const STATE: &str = "state";
    /// What went wrong.
    pub const ERROR: &str = "error";
}

/// Event names (the `event` field); part of the interface.
pub mod event {
    /// A config was loaded at start.
    pub const CONFIG_LOADED: &str = "config_loaded";
    /// A reload was applied.
    pub const CONFIG_RELOADED: &str = "config_reloaded";
    /// A reload was refused; the old config keeps running.
    pub const CONFIG_RELOAD_FAILED: &str = "config_reload_failed";
    /// `--watch`: the config file cannot be read (once until it can); the old config keeps running.
    pub const CONFIG_FILE_UNREADABLE: &str = "config_file_unreadable";
    /// Start-up is over: timers registered, restart recovery done, reloads and `--watch` live.
    pub const READY: &str = "ready";
    /// A config key the default stack refuses (raw commands, a pinned document version, a
    /// retention out of its bounds): said once at start, per key.
    pub const STACK_REFUSES: &str = "stack_refuses";
    /// A slot fired.
    pub const SLOT_FIRED: &str = "slot_fired";
    /// A slot was not started, with a reason.
    pub const SLOT_SKIPPED: &str = "slot_skipped";
    /// A slot was folded into an overlapping backup of the same instance (the overlap rule).
    pub const SLOT_MERGED: &str = "slot_merged";
    /// A slot waits for a shorter-retention backup of its instance to end.
    pub const SLOT_WAITING: &str = "slot_waiting";
    /// Dry run: what would have started.
    pub const DRY_RUN_START: &str = "dry_run_start";
    /// StartExecution succeeded.
    pub const EXECUTION_STARTED: &str = "execution_started";
    /// The slot's execution existed already (a retry, a restart or another replica started it).
    pub const EXECUTION_ALREADY_STARTED: &str = "execution_already_started";
    /// StartExecution failed and will be retried.
    pub const EXECUTION_START_RETRY: &str = "execution_start_retry";
    /// StartExecution failed for good.
    pub const EXECUTION_START_FAILED: &str = "execution_start_failed";
    /// The execution ended FAILED, TIMED_OUT or ABORTED.
    pub const EXECUTION_FAILED: &str = "execution_failed";
    /// A name about to be started was taken by an execution with another input.
    pub const EXECUTION_INPUT_MISMATCH: &str = "execution_input_mismatch";
    /// The backup job exists.
    pub const BACKUP_JOB_CREATED: &str = "backup_job_created";
    /// The job changed state.
    pub const BACKUP_JOB_STATE: &str = "backup_job_state";
    /// The job's progress moved.
    pub const BACKUP_JOB_PROGRESS: &str = "backup_job_progress";
    /// A pre or post hook ended (one line per phase, read from the execution's history).
    pub const HOOK_FINISHED: &str = "hook_finished";
    /// One summary line at each backup's end.
    pub const BACKUP_FINISHED: &str = "backup_finished";
    /// A copy job of a completed backup was created (issue 12).
    pub const COPY_JOB_CREATED: &str = "copy_job_created";
    /// The daemon started the execution that copies a COMPLETED backup.
    pub const COPY_EXECUTION_STARTED: &str = "copy_execution_started";
    /// A copy ended: COMPLETED, FAILED, PARTIAL, or never started (ERROR unless COMPLETED).
    pub const COPY_FINISHED: &str = "copy_finished";
    /// Start-up found targets with no execution in the lookback: new, nothing caught up.
    pub const FIRST_START: &str = "first_start";
    /// Restart recovery picked up a backup in flight.
    pub const TRACKING_RESUMED: &str = "tracking_resumed";
    /// A tracking call failed (it is retried at the next poll).
    pub const AWS_CALL_FAILED: &str = "aws_call_failed";
    /// No AWS credentials could be found at start (one short line saying what to set).
    pub const AWS_CREDENTIALS_MISSING: &str = "aws_credentials_missing";
    /// SIGTERM/SIGINT received.
    pub const SHUTDOWN: &str = "shutdown";
    /// `[ha]`: config valid, waiting for the lease (no AWS call but the lease's).
    pub const STANDBY: &str = "standby";
    /// `[ha]`: this replica took the lease (`since_previous_leader_ms`: how long the fleet may
    /// have gone without a firing leader).
    pub const LEADERSHIP_ACQUIRED: &str = "leadership_acquired";
    /// `[ha]`: this replica stopped holding the lease (`reason`).
    pub const LEADERSHIP_LOST: &str = "leadership_lost";
    /// A tag selection's refresh changed its instances (counts and the first names).
    pub const SELECTION_CHANGED: &str = "selection_changed";
    /// A tag selection's refresh failed (once per failure streak); the last set stays.
    pub const SELECTION_REFRESH_FAILED: &str = "selection_refresh_failed";
    /// A tag selection's refresh works again after a failure streak.
    pub const SELECTION_REFRESH_RECOVERED: &str = "selection_refresh_recovered";
    /// The last successes of targets not seen before were read from AWS Backup (the seed of
    /// the last-success gauges, at start and after a reload or refresh that adds targets).
    pub const COVERAGE_SEEDED: &str = "coverage_seeded";
    /// The seed's AWS Backup reads failed; retried with backoff.
    pub const COVERAGE_SEED_FAILED: &str = "coverage_seed_failed";
}

/// The filter without `RUST_LOG`. The SDK's credential chain and instance-metadata client warn
/// at every call that finds no credentials, each a long error report; the daemon says it once
/// at start (`aws_credentials_missing`), and a failed call's own line carries the details.
pub const DEFAULT_FILTER: &str = "info,tokio_cron_scheduler=warn,aws_config::meta::credentials::chain=error,aws_config::imds=error";

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    init_with(format, true);
}

/// True when standard output is a terminal and `NO_COLOR` is unset or empty: colour then, and
/// never into a pipe or a file.
pub fn colour_on_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// [`init`]; `verbose`: `pretty` also writes each `backup_job_progress` (the demo folds them).
pub fn init_with(format: LogFormat, verbose: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        // `with_target(false)`: our `target` field (the backup target) must not be shadowed by
        // tracing's module path.
        LogFormat::Json => builder
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(colour_on_stdout())
            .event_format(pretty::Pretty {
                ansi: colour_on_stdout(),
                verbose,
            })
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Log capture for unit tests: JSON lines into memory, for the current thread only.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    /// The captured lines; clone it to read while the guard lives.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// Every line so far, parsed.
        pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().expect("capture lock").clone();
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        }

        /// Lines with `event == name`.
        pub(crate) fn named(&self, name: &str) -> Vec<serde_json::Value> {
            self.lines()
                .into_iter()
                .filter(|v| v["event"] == name)
                .collect()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Captures this thread's logs (DEBUG and up) until the guard drops.
    pub(crate) fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(captured.clone())
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }
}
