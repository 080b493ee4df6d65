//! The per-target series the alert rules read, in one table of our own: a row per target holds
//! its next fire, expected interval, last success, failure counters and copies, and one
//! [`Collector`] writes every family from it.
//!
//! Why not a `Family` per metric: the rules need series that exist before their first event (a
//! last success of 0 for "never", failure counters at 0 so that `increase()` sees the first
//! failure), for every enabled target at once. A `Family` creates a series per label set with a
//! hash and a write lock each, and keeps its own copy of the labels: 100,000 targets × five
//! families was tens of MiB and a tenth of the start-up. Here a covered target costs one row of
//! a few words; what only some targets ever have (finished states, copies) is boxed on demand.

use std::sync::Arc;
use std::sync::RwLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::fasthash::FastMap;

/// The state whose counter exists at 0 for every covered target (and destination).
pub(super) const FAILED: &str = "FAILED";

/// A gauge value that may be absent (NaN: no series), in one word.
#[derive(Debug, Clone, Copy)]
struct Maybe(f64);

impl Default for Maybe {
    fn default() -> Self {
        Maybe(f64::NAN)
    }
}

impl Maybe {
    fn get(self) -> Option<f64> {
        (!self.0.is_nan()).then_some(self.0)
    }
    fn set(&mut self, v: Option<f64>) {
        self.0 = v.unwrap_or(f64::NAN);
    }
    /// The larger of the two; an absent value takes `v`.
    fn raise(&mut self, v: f64) {
        if self.0.is_nan() || v > self.0 {
            self.0 = v;
        }
    }
}

/// Counts by state (a handful per target at most).
type ByState = Vec<(Box<str>, u64)>;

fn count(states: &mut ByState, state: &str) {
    match states.iter_mut().find(|(s, _)| &**s == state) {
        Some((_, n)) => *n += 1,
        None => states.push((state.into(), 1)),
    }
}

/// One copy destination of a target.
#[derive(Debug)]
pub(super) struct CopyRow {
    destination: Arc<str>,
    /// A `copy_to` destination of the target in the running config, on the working replica.
    covered: bool,
    last_success: Maybe,
    finished: ByState,
}

/// What only some targets have: events, counters, copies.
#[derive(Debug, Default)]
struct Extra {
    executions_failed: u64,
    input_mismatches: u64,
    finished: ByState,
    copies: Vec<CopyRow>,
}

/// One target.
#[derive(Debug, Default)]
pub(super) struct Row {
    /// An enabled target of the running config on the replica that works: its failure
    /// counters and last success exist from the start (0 until something happens).
    covered: bool,
    next_fire: Maybe,
    expected_interval: Maybe,
    last_success: Maybe,
    extra: Option<Box<Extra>>,
}

impl Row {
    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn copy(&mut self, destination: &str) -> &mut CopyRow {
        let copies = &mut self.extra().copies;
        let i = match copies.iter().position(|c| &*c.destination == destination) {
            Some(i) => i,
            None => {
                copies.push(CopyRow {
                    destination: destination.into(),
                    covered: false,
                    last_success: Maybe::default(),
                    finished: Vec::new(),
                });
                copies.len() - 1
            }
        };
        &mut copies[i]
    }
}

/// What [`Targets::cover`] sets for one enabled target.
#[derive(Debug, Clone)]
pub struct Cover {
    /// The target.
    pub target: Arc<str>,
    /// Its longest gap between slots + jitter, seconds; `None`: not judged (one-off).
    pub expected_interval: Option<f64>,
    /// Its `copy_to` vault ARNs.
    pub destinations: Vec<Arc<str>>,
}

/// The table, shared by [`super::Metrics`] and the registry.
#[derive(Debug, Default)]
pub(super) struct Targets(RwLock<FastMap<Arc<str>, Row>>);

impl Targets {
    /// Runs `f` on `target`'s row, made if missing.
    pub(super) fn with<R>(&self, target: &str, f: impl FnOnce(&mut Row) -> R) -> R {
        let mut rows = self.0.write().expect("metrics lock");
        if let Some(row) = rows.get_mut(target) {
            return f(row);
        }
        f(rows.entry(target.into()).or_default())
    }

    /// Makes `target`'s row if missing (read lock only when it exists: the common case).
    pub(super) fn seen(&self, target: &str) {
        if !self.0.read().expect("metrics lock").contains_key(target) {
            self.with(target, |_| ());
        }
    }

    /// Sets many next fires under one lock (a config's 100,000 at once).
    pub(super) fn set_next_fires(&self, fires: impl Iterator<Item = (Arc<str>, f64)>) {
        let mut rows = self.0.write().expect("metrics lock");
        let n = fires.size_hint().0;
        let more = n.saturating_sub(rows.len());
        rows.reserve(more);
        for (target, at) in fires {
            match rows.get_mut(&*target) {
                Some(row) => row.next_fire = Maybe(at),
                None => {
                    rows.insert(
                        target,
                        Row {
                            next_fire: Maybe(at),
                            ..Row::default()
                        },
                    );
                }
            }
        }
    }

    /// The running config's enabled targets, from now on the only covered ones: each gets its
    /// expected interval, a last success (0 until seeded or seen) and its failure counters at
    /// 0, and so does each of its destinations. Targets no longer covered lose their expected
    /// interval (what they counted stays while they are in the config).
    pub(super) fn cover(&self, covered: &[Cover]) {
        let mut rows = self.0.write().expect("metrics lock");
        for row in rows.values_mut() {
            row.covered = false;
            row.expected_interval = Maybe::default();
            if let Some(extra) = row.extra.as_mut() {
                extra.copies.iter_mut().for_each(|c| c.covered = false);
            }
        }
        let more = covered.len().saturating_sub(rows.len());
        rows.reserve(more);
        for c in covered {
            let row = match rows.get_mut(&*c.target) {
                Some(row) => row,
                None => rows.entry(c.target.clone()).or_default(),
            };
            row.covered = true;
            row.expected_interval.set(c.expected_interval);
            row.last_success.raise(0.0);
            for d in &c.destinations {
                let copy = row.copy(d);
                copy.covered = true;
                copy.last_success.raise(0.0);
            }
        }
    }

    /// The target's last success is at least `at` (seconds; a seed or a backup seen ending).
    pub(super) fn raise_last_success(&self, target: &str, at: f64) {
        self.with(target, |row| row.last_success.raise(at));
    }

    /// The copy's last success to `destination` is at least `at`.
    pub(super) fn raise_last_copy(&self, target: &str, destination: &str, at: f64) {
        self.with(target, |row| row.copy(destination).last_success.raise(at));
    }

    /// One more failed execution.
    pub(super) fn execution_failed(&self, target: &str) {
        self.with(target, |row| row.extra().executions_failed += 1);
    }

    /// One more input mismatch.
    pub(super) fn input_mismatch(&self, target: &str) {
        self.with(target, |row| row.extra().input_mismatches += 1);
    }

    /// One more backup ended in `state`.
    pub(super) fn finished(&self, target: &str, state: &str) {
        self.with(target, |row| count(&mut row.extra().finished, state));
    }

    /// One more copy to `destination` ended in `state`.
    pub(super) fn copy_finished(&self, target: &str, destination: &str, state: &str) {
        self.with(target, |row| {
            count(&mut row.copy(destination).finished, state);
        });
    }

    /// Drops every row `keep` does not name.
    pub(super) fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        let mut rows = self.0.write().expect("metrics lock");
        let gone: Vec<Arc<str>> = rows.keys().filter(|t| !keep(t)).cloned().collect();
        for t in &gone {
            rows.remove(t);
        }
        gone
    }

    /// The rows' target names (what `retain` may drop).
    #[cfg(test)]
    pub(super) fn names(&self) -> Vec<Arc<str>> {
        self.0
            .read()
            .expect("metrics lock")
            .keys()
            .cloned()
            .collect()
    }
}

/// Writes one family: its descriptor (always, so a scrape names it before its first series),
/// then one sample per row that `sample` gives.
fn family<'r>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl Iterator<Item = (&'r Arc<str>, &'r Row)>,
    mut sample: impl FnMut(
        &mut prometheus_client::encoding::MetricEncoder,
        &str,
        &Row,
    ) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (target, row) in rows {
        sample(&mut metric, target, row)?;
    }
    Ok(())
}

fn gauge(
    m: &mut prometheus_client::encoding::MetricEncoder,
    labels: &[(&str, &str)],
    v: f64,
) -> std::fmt::Result {
    ConstGauge::new(v).encode(m.encode_family(&labels)?)
}

fn counter(
    m: &mut prometheus_client::encoding::MetricEncoder,
    labels: &[(&str, &str)],
    v: u64,
) -> std::fmt::Result {
    ConstCounter::new(v).encode(m.encode_family(&labels)?)
}

/// A state's counts, with FAILED at 0 when `covered` and none failed yet.
fn states(
    m: &mut prometheus_client::encoding::MetricEncoder,
    labels: &[(&str, &str)],
    finished: &[(Box<str>, u64)],
    covered: bool,
) -> std::fmt::Result {
    let mut with = |state: &str, n: u64| {
        let mut l = labels.to_vec();
        l.push(("state", state));
        counter(m, &l, n)
    };
    for (state, n) in finished {
        with(state, *n)?;
    }
    if covered && !finished.iter().any(|(s, _)| &**s == FAILED) {
        with(FAILED, 0)?;
    }
    Ok(())
}

type Rows = FastMap<Arc<str>, Row>;

impl Collector for Targets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let rows = self.0.read().expect("metrics lock");
        encode_gauges(&rows, &mut encoder)?;
        encode_counters(&rows, &mut encoder)
    }
}

/// The per-target gauges: next fire, expected interval, last success.
fn encode_gauges(rows: &Rows, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let g = MetricType::Gauge;
    {
        family(
            encoder,
            "next_fire_timestamp_seconds",
            "The target's next scheduled slot (Unix time)",
            g,
            rows.iter(),
            |m, t, r| {
                r.next_fire
                    .get()
                    .map_or(Ok(()), |v| gauge(m, &[("target", t)], v))
            },
        )?;
        family(
            encoder,
            "backup_expected_interval_seconds",
            "The longest gap between the target's slots plus its jitter (what `orchestrator \
             status` judges by, without the margin); enabled recurring targets only",
            g,
            rows.iter(),
            |m, t, r| {
                r.expected_interval
                    .get()
                    .map_or(Ok(()), |v| gauge(m, &[("target", t)], v))
            },
        )?;
        family(
            encoder,
            "last_success_timestamp_seconds",
            "When the target's newest COMPLETED backup was created (Unix time; seeded from AWS \
             Backup at start, 0 = none in its listing window)",
            g,
            rows.iter(),
            |m, t, r| {
                r.last_success
                    .get()
                    .map_or(Ok(()), |v| gauge(m, &[("target", t)], v))
            },
        )?;
        Ok(())
    }
}

/// The per-target counters (at 0 for covered targets) and the copies' series.
fn encode_counters(rows: &Rows, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let g = MetricType::Gauge;
    let c = MetricType::Counter;
    {
        family(
            encoder,
            "executions_failed",
            "Executions that could not be started or ended FAILED, TIMED_OUT or ABORTED, per \
             target (0 from the start for every enabled target)",
            c,
            rows.iter(),
            |m, t, r| {
                let n = r.extra.as_ref().map_or(0, |e| e.executions_failed);
                if r.covered || n > 0 {
                    counter(m, &[("target", t)], n)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "execution_input_mismatches",
            "Slots whose execution name was already taken with another input (started under \
             their second name), per target",
            c,
            rows.iter(),
            |m, t, r| {
                let n = r.extra.as_ref().map_or(0, |e| e.input_mismatches);
                if r.covered || n > 0 {
                    counter(m, &[("target", t)], n)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "backups_finished",
            "Backups that reached their end, per target and final state (FAILED at 0 from the \
             start for every enabled target)",
            c,
            rows.iter(),
            |m, t, r| {
                let finished = r.extra.as_ref().map_or(&[][..], |e| &e.finished[..]);
                states(m, &[("target", t)], finished, r.covered)
            },
        )?;
        family(
            encoder,
            "copies_finished",
            "DR copies that reached their end, per target, destination vault ARN and state \
             (FAILED also when no copy job could be started; at 0 from the start)",
            c,
            rows.iter(),
            |m, t, r| {
                for copy in r.extra.iter().flat_map(|e| &e.copies) {
                    let labels = [("target", t), ("destination", &*copy.destination)];
                    states(m, &labels, &copy.finished, r.covered && copy.covered)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "last_copy_success_timestamp_seconds",
            "When the target's last copy to the destination vault completed (Unix time; seeded \
             from AWS Backup at start, 0 = none in its listing window)",
            g,
            rows.iter(),
            |m, t, r| {
                for copy in r.extra.iter().flat_map(|e| &e.copies) {
                    if let Some(v) = copy.last_success.get() {
                        gauge(m, &[("target", t), ("destination", &*copy.destination)], v)?;
                    }
                }
                Ok(())
            },
        )?;
        Ok(())
    }
}
