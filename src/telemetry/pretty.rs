//! The `pretty` log format: one short line per event for a person at a terminal, at most
//! [`WIDTH`] columns: `HH:MM:SS LEVEL target event field=value …`, ARNs shortened to their last
//! part (the JSON format keeps every field whole). Colour (the level) only when asked for:
//! [`super::init_with`] asks only when standard output is a terminal and `NO_COLOR` is unset.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The widest a line gets, in characters (a 100-column terminal).
pub const WIDTH: usize = 100;

/// Fields a line leaves out: the target's name says which instance, and the slot is in the
/// execution's name.
const LEFT_OUT: &[&str] = &["resource_arn", "scheduled_for", "table", "kind"];

/// Shorter names of long fields (a restore's line fits in [`WIDTH`] with its verdicts).
const ALIASES: &[(&str, &str)] = &[
    ("restore_seconds", "took"),
    ("validation_status", "validation"),
    ("cleanup_status", "cleanup"),
    ("status_checks", "checks"),
];

/// The formatter.
#[derive(Debug, Clone, Copy)]
pub struct Pretty {
    /// Colour the level.
    pub ansi: bool,
    /// Also the per-poll `backup_job_progress` lines (folded away by default: the state
    /// changes tell the story).
    pub verbose: bool,
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    event: Option<String>,
    target: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, name: &'static str, value: String) {
        match name {
            "message" => self.message = Some(value),
            "event" => self.event = Some(value),
            "target" => self.target = Some(value),
            n if LEFT_OUT.contains(&n) => {}
            // An empty value says nothing to a person.
            _ if value.is_empty() => {}
            n => {
                let n = ALIASES.iter().find(|(k, _)| *k == n).map_or(n, |(_, a)| a);
                self.rest.push((n, short(&value)));
            }
        }
    }
}

/// An ARN's last part (`…:execution:machine:web-1-2026…` → `web-1-2026…`, `…instance/i-0ab` →
/// `i-0ab`); anything else as it is.
pub fn short(value: &str) -> String {
    if !value.starts_with("arn:") {
        return value.to_string();
    }
    value
        .rsplit([':', '/'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(value)
        .to_string()
}

/// A value as a line shows it: an execution name without its target's name in front
/// (`web-1-20261201T120005Z` → `20261201T120005Z`), a job id's first 8 characters.
fn compact(value: &str, target: Option<&str>) -> String {
    if let Some(rest) = target
        .and_then(|t| value.strip_prefix(t))
        .and_then(|r| r.strip_prefix('-'))
        .filter(|r| !r.is_empty())
    {
        return rest.to_string();
    }
    let uuid = value.len() == 36 && value.bytes().filter(|b| *b == b'-').count() == 4;
    if uuid {
        return format!("{}…", &value[..8]);
    }
    value.to_string()
}

/// Cuts `line` to [`WIDTH`] characters, ending a cut one with `…`.
pub fn fit(line: &str) -> String {
    if line.chars().count() <= WIDTH {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(WIDTH - 1).collect();
    cut.push('…');
    cut
}

impl Pretty {
    /// The line for an event with `fields` at `level`, or `None` when folded away.
    fn line(&self, level: Level, f: &Fields) -> Option<String> {
        if !self.verbose && f.event.as_deref() == Some(super::event::BACKUP_JOB_PROGRESS) {
            return None;
        }
        let mut line = format!(
            "{} {:<5} ",
            chrono::Local::now().format("%H:%M:%S"),
            level.as_str()
        );
        if let Some(t) = &f.target {
            let _ = write!(line, "{t} ");
        }
        match (&f.event, &f.message) {
            (Some(e), _) => line.push_str(e),
            (None, Some(m)) => line.push_str(m),
            (None, None) => {}
        }
        for (k, v) in &f.rest {
            let v = compact(v, f.target.as_deref());
            let v = if v.contains(' ') && !v.starts_with(['[', '"']) {
                format!("{v:?}")
            } else {
                v.clone()
            };
            let _ = write!(line, " {k}={v}");
        }
        Some(fit(&line))
    }
}

impl<S, N> FormatEvent<S, N> for Pretty
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = *event.metadata().level();
        let Some(line) = self.line(level, &f) else {
            return Ok(());
        };
        if self.ansi {
            // The level stands at a fixed place: colour it alone, so the width stays.
            let colour = match level {
                Level::ERROR => "31",
                Level::WARN => "33",
                Level::INFO => "32",
                _ => "2",
            };
            let (time, rest) = line.split_at(9);
            let (lvl, rest) = rest.split_at(5.min(rest.len()));
            writeln!(writer, "{time}\x1b[{colour}m{lvl}\x1b[0m{rest}")
        } else {
            writeln!(writer, "{line}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_cut_to_their_last_part_and_lines_to_the_width() {
        assert_eq!(
            short(
                "arn:aws:states:us-east-1:123456789012:execution:orchestrator-backup:web-1-20261201T120005Z"
            ),
            "web-1-20261201T120005Z"
        );
        assert_eq!(short("arn:aws:ec2:us-east-1::image/ami-0abc"), "ami-0abc");
        assert_eq!(short("COMPLETED"), "COMPLETED");
        let long = "x".repeat(300);
        assert_eq!(fit(&long).chars().count(), WIDTH);
        assert!(fit(&long).ends_with('…'));
    }

    #[test]
    fn progress_is_folded_unless_verbose() {
        let f = Fields {
            event: Some("backup_job_progress".into()),
            target: Some("web-1".into()),
            ..Fields::default()
        };
        let quiet = Pretty {
            ansi: false,
            verbose: false,
        };
        assert_eq!(quiet.line(Level::INFO, &f), None);
        let line = Pretty {
            verbose: true,
            ..quiet
        }
        .line(Level::INFO, &f)
        .unwrap();
        assert!(line.ends_with("INFO  web-1 backup_job_progress"), "{line}");
    }
}
