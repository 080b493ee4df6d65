//! Tag selections at run time: the loop that resolves each selection every `selection_refresh`
//! (backing off after failures), and [`Selected`], what the daemon keeps of the last good sets
//! and how a refresh or a reload turns into the config the scheduler runs.
//!
//! A refresh is applied like a reload: the new set is diffed against the last one; nothing
//! changed: nothing happens (no log line, no new config, no timer touched); else one
//! `selection_changed` line and a new effective config for the scheduler, which keeps the
//! timers of unchanged schedule groups. A failed refresh keeps the last good set.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::{ApiError, TagSearch};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::model::Selection;
use crate::selection::{self, Set, Streak};
use crate::telemetry::event;

/// Instance names a `selection_changed` line lists per kind of change (the counts are complete).
const LOGGED_NAMES: usize = 20;

/// What the loop resolves, and how often: the running config's selections.
#[derive(Debug, Clone, Default)]
pub struct Specs {
    /// The selections, in file order.
    pub selections: Vec<Arc<Selection>>,
    /// `selection_refresh`.
    pub interval: Duration,
}

impl Specs {
    /// The selections of `config`.
    pub fn of(config: &Config) -> Specs {
        Specs {
            selections: config.selections.clone(),
            interval: config.selection_refresh,
        }
    }
}

/// One refresh of one selection.
#[derive(Debug, Clone)]
pub struct Report {
    /// The selection as it was resolved (a reload may have changed it meanwhile).
    pub selection: Arc<Selection>,
    /// Its instance ids, or why not.
    pub result: Result<BTreeSet<String>, ApiError>,
    /// GetResources calls it made (pages), when it succeeded.
    pub calls: u32,
    /// How long it took.
    pub took: Duration,
}

/// Resolves one selection: GetResources over every page, then its exclusions.
pub async fn resolve<T: TagSearch>(
    tags: &T,
    s: &Selection,
) -> Result<(BTreeSet<String>, u32), ApiError> {
    let found = tags.find(&s.query()).await?;
    Ok((s.resolve(&found.resources), found.calls))
}

struct Entry {
    selection: Arc<Selection>,
    due: Instant,
    streak: Streak,
}

/// Resolves each selection now, then every `interval` (after a failure: sooner, backing off),
/// and reports each refresh to `out`; a changed selection (reload) is resolved at once. Logs a
/// failure once per streak (`selection_refresh_failed`) and its end.
pub async fn run<T: TagSearch>(
    tags: Arc<T>,
    mut specs: watch::Receiver<Specs>,
    out: mpsc::UnboundedSender<Report>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut entries: Vec<Entry> = Vec::new();
    let sync = |entries: &mut Vec<Entry>, specs: &Specs| {
        let mut next = Vec::with_capacity(specs.selections.len());
        for s in &specs.selections {
            let kept = entries
                .iter()
                .position(|e| e.selection.name == s.name && e.selection.same_search(s));
            next.push(match kept {
                Some(i) => {
                    let e = entries.swap_remove(i);
                    Entry {
                        selection: s.clone(),
                        ..e
                    }
                }
                None => Entry {
                    selection: s.clone(),
                    due: Instant::now(),
                    streak: Streak::default(),
                },
            });
        }
        *entries = next;
        specs.interval
    };
    let mut interval = sync(&mut entries, &specs.borrow_and_update());
    loop {
        let next_due = entries.iter().map(|e| e.due).min();
        tokio::select! {
            () = stop.cancelled() => return,
            changed = specs.changed() => {
                if changed.is_err() {
                    return;
                }
                interval = sync(&mut entries, &specs.borrow_and_update());
                continue;
            }
            () = async {
                match next_due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let now = Instant::now();
        for e in entries.iter_mut().filter(|e| e.due <= now) {
            let name = e.selection.name.clone();
            let started = Instant::now();
            let result = tokio::select! {
                () = stop.cancelled() => return,
                r = resolve(&*tags, &e.selection) => r,
            };
            let took = started.elapsed();
            match &result {
                Ok(_) => {
                    metrics.api_ok();
                    metrics.selection_refresh_took(&name, took);
                    let failures = e.streak.succeeded();
                    if failures > 0 {
                        info!(
                            event = event::SELECTION_REFRESH_RECOVERED,
                            selection = %name,
                            failures,
                            "selection refresh works again"
                        );
                    }
                    e.due = Instant::now() + interval;
                }
                Err(err) => {
                    metrics.api_error(err);
                    metrics.selection_refresh(&name, "failed");
                    let retry = e.streak.failed(interval);
                    if retry.log {
                        warn!(
                            event = event::SELECTION_REFRESH_FAILED,
                            selection = %name,
                            error = %err,
                            error_kind = err.kind.as_str(),
                            retry_in_seconds = retry.after.as_secs_f64(),
                            "selection refresh failed; its last resolved instances stay (logged once until it works again)"
                        );
                    }
                    e.due = Instant::now() + retry.after;
                }
            }
            let calls = result.as_ref().map_or(0, |(_, calls)| *calls);
            let report = Report {
                selection: e.selection.clone(),
                result: result.map(|(ids, _)| ids),
                calls,
                took,
            };
            if out.send(report).is_err() {
                return;
            }
        }
    }
}

/// The last good set of each selection, and the config they make.
#[derive(Debug, Default)]
pub struct Selected {
    sets: HashMap<String, (Arc<Selection>, Set)>,
}

impl Selected {
    /// Nothing resolved yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The config the scheduler runs for `base`: its explicit targets and the resolved sets.
    pub fn effective(&self, base: &Config) -> Config {
        if base.selections.is_empty() {
            return base.clone();
        }
        let sets: HashMap<String, Set> = self
            .sets
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        selection::effective(base, &sets)
    }

    /// Selections of `base` not resolved yet (what `/readyz` says is missing).
    pub fn pending(&self, base: &Config) -> Vec<String> {
        base.selections
            .iter()
            .filter(|s| !self.sets.contains_key(&s.name))
            .map(|s| s.name.clone())
            .collect()
    }

    /// A reload: keeps the sets of selections that search the same instances as before; a
    /// changed one is resolved again (the loop sees it changed) and meanwhile has none.
    pub fn reloaded(&mut self, base: &Config) {
        self.sets.retain(|name, (old, _)| {
            base.selections
                .iter()
                .any(|s| &s.name == name && s.same_search(old))
        });
    }

    /// Takes a refresh: true when a selection of `base` changed (then logged once, and the
    /// caller applies [`Selected::effective`]); false when nothing changed, the refresh failed,
    /// or it is of a selection `base` no longer has.
    pub fn take(&mut self, base: &Config, report: Report, metrics: &Metrics) -> bool {
        let Ok(ids) = &report.result else {
            return false;
        };
        let s = &report.selection;
        if !base
            .selections
            .iter()
            .any(|b| b.name == s.name && b.same_search(s))
        {
            return false;
        }
        let old = self.sets.get(&s.name).map(|(_, set)| &**set);
        let change = selection::diff(old, ids);
        let first = old.is_none();
        metrics.set_selected(&s.name, ids.len());
        if !first && change.is_empty() {
            metrics.selection_refresh(&s.name, "unchanged");
            return false;
        }
        metrics.selection_refresh(&s.name, "changed");
        let names = |ids: &[String]| -> Vec<String> {
            ids.iter()
                .take(LOGGED_NAMES)
                .map(|id| s.target_name(id))
                .collect()
        };
        info!(
            event = event::SELECTION_CHANGED,
            selection = %s.name,
            instances = ids.len(),
            added_count = change.added.len(),
            removed_count = change.removed.len(),
            added = ?names(&change.added),
            removed = ?names(&change.removed),
            first_resolution = first,
            calls = report.calls,
            took_ms = u64::try_from(report.took.as_millis()).unwrap_or(u64::MAX),
            "selection changed: added instances fire from their next slot, removed ones stop; backups in flight are still followed"
        );
        self.sets
            .insert(s.name.clone(), (s.clone(), Arc::new(ids.clone())));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorKind;
    use crate::aws::fake::FakeTagSearch;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:b";

    fn config(tags: &str) -> Config {
        crate::config::parse(
            &format!(
                "state_machine_arn = \"{SM}\"\nselection_refresh = \"10s\"\n\n[[backup]]\nname = \"web\"\nselect_tags = {tags}\nschedule = \"0 3 * * *\"\n"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn arn(n: u32) -> String {
        format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{n:017x}")
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_apply_changes_only_and_failures_keep_the_last_set() {
        let fake = Arc::new(FakeTagSearch::new());
        for n in 1..=3 {
            fake.put(&arn(n), &[("backup", "daily")]);
        }
        let base = config("{ backup = \"daily\" }");
        let metrics = Arc::new(Metrics::new());
        let (specs_tx, specs_rx) = watch::channel(Specs::of(&base));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            fake.clone(),
            specs_rx,
            tx,
            metrics.clone(),
            stop.clone(),
        ));
        let mut selected = Selected::new();
        assert_eq!(selected.pending(&base), vec!["web"]);
        // First resolution: a change from nothing.
        let r = rx.recv().await.unwrap();
        assert!(selected.take(&base, r, &metrics));
        assert_eq!(selected.effective(&base).rules.len(), 3);
        assert!(selected.pending(&base).is_empty());
        // Nothing changed at the next refresh: nothing to apply.
        let r = rx.recv().await.unwrap();
        assert!(!selected.take(&base, r, &metrics));
        // A 4th instance, one untagged.
        fake.put(&arn(4), &[("backup", "daily")]);
        fake.remove(&arn(1));
        let r = rx.recv().await.unwrap();
        assert!(selected.take(&base, r, &metrics));
        let names: Vec<String> = selected
            .effective(&base)
            .rules
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "web-i-00000000000000002",
                "web-i-00000000000000003",
                "web-i-00000000000000004"
            ]
        );
        // The API fails: reports fail, the set stays, retries back off (1 s, 2 s, ...).
        fake.fail(Some(ErrorKind::Throttled));
        let calls = fake.calls();
        let before = Instant::now();
        for _ in 0..3 {
            let r = rx.recv().await.unwrap();
            assert!(r.result.is_err());
            assert!(!selected.take(&base, r, &metrics));
        }
        assert_eq!(fake.calls(), calls + 3);
        // 10 s to the first failure, then 1 s and 2 s of backoff.
        assert_eq!(before.elapsed(), Duration::from_secs(13));
        assert_eq!(selected.effective(&base).rules.len(), 3);
        fake.fail(None);
        let r = rx.recv().await.unwrap();
        assert!(!selected.take(&base, r, &metrics), "recovered, unchanged");

        // A reload that changes the tags: the old set goes, the new search runs at once.
        let changed = config("{ backup = \"weekly\" }");
        selected.reloaded(&changed);
        assert_eq!(selected.pending(&changed), vec!["web"]);
        fake.put(&arn(9), &[("backup", "weekly")]);
        let at = Instant::now();
        specs_tx.send(Specs::of(&changed)).unwrap();
        let r = rx.recv().await.unwrap();
        assert_eq!(at.elapsed(), Duration::ZERO);
        assert!(selected.take(&changed, r, &metrics));
        assert_eq!(selected.effective(&changed).rules.len(), 1);
        // The same search again: the set is kept.
        selected.reloaded(&config("{ backup = \"weekly\" }"));
        assert!(selected.pending(&changed).is_empty());
        stop.cancel();
        task.await.unwrap();
    }
}
