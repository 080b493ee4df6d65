//! Reloads (SIGHUP, `--watch`), as the standby and the holder both apply them: the file watch,
//! validate-then-swap, the generation, the `config_reloaded` / `config_reload_failed` lines and
//! their metrics, and the diff a reload logs.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::config::{self, ConfigError};
use crate::config_watch::{self, Action, Look, Watch};
use crate::metrics::Metrics;
use crate::model::{Config, ContentHash, content_hash};
use crate::refresh::Selected;
use crate::telemetry::event;

use super::systemd::notify;

/// Target names a `config_reloaded` line lists per kind of change (the counts are complete).
const LOGGED_NAMES: usize = 20;

/// Names of the enabled targets a reload adds, removes and changes (linear: 100,000 targets).
/// A target is changed when any of its rules is: the rules of a target are consecutive in a
/// config, compared in order.
fn diff_targets<'a>(
    old: &'a Config,
    new: &'a Config,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    use crate::fasthash::FastMap;
    use crate::model::{Rule, RuleSettings};
    type Run<'r, 'a> = (&'a str, &'r [&'a Rule]);
    /// Each target's enabled rules, one run per target, in config order.
    fn runs<'r, 'a>(rules: &'r [&'a Rule]) -> Vec<Run<'r, 'a>> {
        rules
            .chunk_by(|a, b| a.name == b.name)
            .map(|run| (&*run[0].name, run))
            .collect()
    }
    let enabled = |c: &'a Config| -> Vec<&'a Rule> { c.enabled_rules().map(|t| &**t).collect() };
    let (old_rules, new_rules) = (enabled(old), enabled(new));
    let (before, after) = (runs(&old_rules), runs(&new_rules));
    // Two loads never share `Settings`, but a fleet has few distinct ones: compare each pair once.
    let mut settings_equal: FastMap<(*const RuleSettings, *const RuleSettings), bool> =
        FastMap::default();
    let mut same = |a: &[&Rule], b: &[&Rule]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.name == y.name
                    && x.resource_arn == y.resource_arn
                    && *settings_equal
                        .entry((Arc::as_ptr(&x.settings), Arc::as_ptr(&y.settings)))
                        .or_insert_with(|| x.settings == y.settings)
            })
    };
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    if before.len() == after.len() && before.iter().zip(&after).all(|(b, a)| b.0 == a.0) {
        // The usual reload: the same targets in the same order.
        for (b, a) in before.iter().zip(&after) {
            if !same(b.1, a.1) {
                changed.push(a.0);
            }
        }
    } else {
        fn index<'r, 'a>(runs: &[Run<'r, 'a>]) -> FastMap<&'a str, &'r [&'a Rule]> {
            let mut m = FastMap::with_capacity_and_hasher(runs.len(), Default::default());
            m.extend(runs.iter().copied());
            m
        }
        let (old_index, new_index) = (index(&before), index(&after));
        for (name, rules) in &after {
            match old_index.get(name) {
                None => added.push(*name),
                Some(was) if !same(was, rules) => changed.push(*name),
                Some(_) => {}
            }
        }
        removed.extend(
            before
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| !new_index.contains_key(name)),
        );
    }
    for v in [&mut added, &mut removed, &mut changed] {
        v.sort_unstable();
    }
    (added, removed, changed)
}

pub(super) fn log_config_errors(e: &ConfigError) {
    match e {
        ConfigError::Invalid(diags) => {
            for d in diags {
                error!(
                    event = event::CONFIG_RELOAD_FAILED,
                    file = %d.file,
                    line = d.line,
                    column = d.column,
                    field = %d.field,
                    error = %d.message,
                    "config rejected; the running config stays"
                );
            }
        }
        other => error!(
            event = event::CONFIG_RELOAD_FAILED,
            error = %other,
            "config rejected; the running config stays"
        ),
    }
}

/// Parses `bytes` (a watched change) or reads the source afresh (SIGHUP); with the content
/// hash of a file that was read, so that a refused content is refused once.
async fn reload(
    path: Option<&std::path::Path>,
    bytes: Option<Vec<u8>>,
) -> (Result<Config, ConfigError>, Option<ContentHash>) {
    let Some(path) = path else {
        return (config::load_from(None), None);
    };
    let file = path.display().to_string();
    let bytes = match bytes {
        Some(b) => b,
        None => match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(source) => return (Err(ConfigError::Read { file, source }), None),
        },
    };
    let hash = content_hash(&bytes);
    (config::from_bytes(bytes, &file), Some(hash))
}

/// Reloads as the standby and the holder both apply them.
pub(super) struct Reloads {
    watched: Watch,
    /// The file `--watch` looks at.
    pub(super) watched_path: Option<PathBuf>,
    /// The file SIGHUP reads (None: [`config::CONFIG_TOML_ENV`]).
    config_path: Option<PathBuf>,
    pub(super) generation: u64,
    tick: tokio::time::Interval,
}

impl Reloads {
    /// Reloads of `config`, read from `config_path`; `watch`: also when the file changes.
    pub(super) fn new(config_path: Option<PathBuf>, watch: bool, config: &Config) -> Self {
        Reloads {
            watched: Watch::new(config.content_hash),
            watched_path: config_path.clone().filter(|_| watch),
            config_path,
            generation: 1,
            tick: tokio::time::interval(config_watch::INTERVAL),
        }
    }
    /// The next `--watch` look that found a new content to load; never, without `--watch`.
    pub(super) async fn changed_file(&mut self) -> Vec<u8> {
        let Some(path) = self.watched_path.clone() else {
            return std::future::pending().await;
        };
        loop {
            self.tick.tick().await;
            let read = tokio::fs::read(&path).await;
            let look = match &read {
                Ok(bytes) => Look::Read(content_hash(bytes)),
                Err(e) => Look::Unreadable(e.kind()),
            };
            match (self.watched.observe(look), read) {
                (Action::Load, Ok(bytes)) => {
                    info!(file = %path.display(), "config file changed");
                    return bytes;
                }
                (Action::Settle, _) => {
                    // Look again soon: a writer may still be at work.
                    self.tick.reset_after(config_watch::SETTLE);
                }
                (Action::ReportUnreadable(_), Err(e)) => warn!(
                    event = event::CONFIG_FILE_UNREADABLE,
                    file = %path.display(),
                    error = %e,
                    "config file cannot be read; the running config stays"
                ),
                (Action::ReportBack, _) => {
                    info!(file = %path.display(), "config file readable again, unchanged");
                }
                _ => {}
            }
        }
    }

    /// Parses `changed` (a watched change) or reads the source afresh (SIGHUP: None), logs the
    /// outcome against `old` (the effective config: explicit targets and resolved selections),
    /// and returns the new config as loaded and as effective, when it is valid. Selections that
    /// search as before keep their sets in `selected`; changed ones are resolved again at once.
    pub(super) async fn apply(
        &mut self,
        old: &Config,
        changed: Option<Vec<u8>>,
        metrics: &Metrics,
        selected: &mut Selected,
    ) -> Option<(Config, Config)> {
        notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now()
                .unwrap_or(sd_notify::NotifyState::Status("reloading")),
        ]);
        let (loaded, hash) = reload(self.config_path.as_deref(), changed).await;
        let applied = match loaded {
            Ok(loaded) => {
                self.generation += 1;
                let generation = self.generation;
                selected.reloaded(&loaded);
                let new = selected.effective(&loaded);
                let (added, removed, changed) = diff_targets(old, &new);
                info!(
                    event = event::CONFIG_RELOADED,
                    source = %new.source,
                    generation,
                    targets = new.rules.len(),
                    added_count = added.len(),
                    removed_count = removed.len(),
                    changed_count = changed.len(),
                    added = ?&added[..added.len().min(LOGGED_NAMES)],
                    removed = ?&removed[..removed.len().min(LOGGED_NAMES)],
                    changed = ?&changed[..changed.len().min(LOGGED_NAMES)],
                    "config reloaded; backups in flight are still followed"
                );
                metrics.reload("applied");
                metrics.set_generation(generation);
                self.watched.applied(loaded.content_hash);
                Some((loaded, new))
            }
            Err(e) => {
                if let Some(h) = hash {
                    // Refused once: `--watch` neither retries nor re-reports this content.
                    self.watched.refused(h);
                }
                metrics.reload("rejected");
                log_config_errors(&e);
                None
            }
        };
        notify(&[sd_notify::NotifyState::Ready]);
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn config(targets: &[(&str, &str)]) -> Config {
        let mut text = String::from(
            "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n",
        );
        for (i, (name, schedule)) in targets.iter().enumerate() {
            text.push_str(&format!(
                "[[backup]]\nname = \"{name}\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}\"\nschedule = \"{schedule}\"\n"
            ));
        }
        config::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn reload_diff_names_added_removed_and_changed_targets() {
        let old = config(&[("a", "0 3 * * *"), ("b", "0 3 * * *"), ("c", "0 3 * * *")]);
        let new = config(&[("a", "0 3 * * *"), ("b", "0 4 * * *"), ("d", "0 3 * * *")]);
        let (added, removed, changed) = diff_targets(&old, &new);
        assert_eq!(added, vec!["d"]);
        assert_eq!(removed, vec!["c"]);
        // `d` takes `c`'s place (and instance id); `b` changed its schedule.
        assert_eq!(changed, vec!["b"]);

        // The same targets in the same order (the usual reload): only `b` changed.
        let again = config(&[("a", "0 3 * * *"), ("b", "0 5 * * *"), ("c", "0 3 * * *")]);
        assert_eq!(diff_targets(&old, &again), (vec![], vec![], vec!["b"]));
        assert_eq!(diff_targets(&old, &old), (vec![], vec![], vec![]));
    }

    #[test]
    fn a_change_to_any_rule_of_a_target_is_a_change() {
        let text = |monthly: u32| {
            format!(
                "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n[[backup]]\nname = \"db\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-00000001\"\n[[backup.rule]]\nname = \"daily\"\nschedule = \"0 3 * * *\"\n[[backup.rule]]\nname = \"monthly\"\nschedule = \"0 3 1 * *\"\ndelete_after_days = {monthly}\n[[backup.rule]]\nname = \"yearly\"\nschedule = \"0 3 1 1 *\"\n[[backup]]\nname = \"web\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-00000002\"\nschedule = \"0 4 * * *\"\n"
            )
        };
        let old = config::parse(&text(365), "t.toml").unwrap();
        let new = config::parse(&text(400), "t.toml").unwrap();
        // The middle rule changed: the target is changed, whichever rule comes last.
        assert_eq!(diff_targets(&old, &new), (vec![], vec![], vec!["db"]));
        // Without `web`: removed, and `db` still changed.
        let fewer = text(400);
        let fewer = &fewer[..fewer.find("[[backup]]\nname = \"web\"").unwrap()];
        let fewer = config::parse(fewer, "t.toml").unwrap();
        assert_eq!(
            diff_targets(&old, &fewer),
            (vec![], vec!["web"], vec!["db"])
        );
    }
}
