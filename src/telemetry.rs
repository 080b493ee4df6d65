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
pub mod event;

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
