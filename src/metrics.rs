//! Prometheus metrics: what an on-call engineer needs to see that every backup happened, and
//! what the alert rules of `deploy/prometheus/alerts.yaml` read (their names are fixed there).
//!
//! Series carry a `target` label; when a reload removes a target, its series disappear. The
//! series the rules judge a target by (expected interval, last success, failure counters at 0)
//! are kept in [`targets`]'s table, set for every enabled target by [`crate::coverage`] on the
//! replica that works: a standby exports none of them. Every family writes its `# TYPE` line
//! even before its first series, so a scrape names everything the daemon can export.

mod restore;
mod targets;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::aws::ApiError;
use crate::lifecycle::{Backup, Change};

pub use targets::Cover;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TargetLabel {
    // Shared with the config's target name: 100,000 targets keep one copy of each name.
    target: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TargetReason {
    target: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    operation: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SelectionLabel {
    selection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SelectionResult {
    selection: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Buckets of `hook_downtime_seconds`: seconds (a document's own run) to hours (a job that
/// waited long in CREATED, or `post_hook_when = "completed"`).
const HOOK_DOWNTIME_BUCKETS: &[f64] = &[
    5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// A family that writes its descriptor (`# HELP`, `# TYPE`) even with no series: the library
/// leaves an empty family out, so a failure counter would be unknown to a scrape (and to
/// `check_promql.py --metrics`) until the first failure.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
    fn is_empty(&self) -> bool {
        false
    }
}

impl<M: TypedMetric> TypedMetric for Declared<M> {
    const TYPE: MetricType = M::TYPE;
}

/// `ha_lease_seconds`: only with `[ha]` (its presence tells an `[ha]` replica from one without).
#[derive(Debug, Default)]
struct HaLease(Mutex<Option<f64>>);

impl Collector for HaLease {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(v) = *self.0.lock().expect("metrics lock") {
            let m = encoder.encode_descriptor(
                "ha_lease_seconds",
                "[ha]: the lease duration (only on a replica with [ha])",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(v).encode(m)?;
        }
        Ok(())
    }
}

/// All metrics of the daemon.
pub struct Metrics {
    registry: Registry,
    started: Family<TargetLabel, Counter>,
    skipped: Family<TargetReason, Counter>,
    merged: Family<TargetLabel, Counter>,
    targets: Arc<targets::Targets>,
    in_flight: Gauge,
    api_errors: Family<ApiLabels, Counter>,
    reloads: Family<ResultLabel, Counter>,
    generation: Gauge,
    ready: Gauge,
    leader: Gauge,
    ha_lease: Arc<HaLease>,
    lease_claims: Family<ResultLabel, Counter>,
    takeovers: Counter,
    hook_downtime: Family<TargetLabel, Histogram, fn() -> Histogram>,
    copies_in_flight: Gauge,
    selected: Family<SelectionLabel, Gauge>,
    selection_refreshes: Family<SelectionResult, Counter>,
    selection_refresh_seconds: Family<SelectionLabel, Gauge<f64, AtomicU64>>,
    restore: restore::Restore,
    aws_ok: std::sync::atomic::AtomicBool,
    skipped_seen: Mutex<BTreeSet<TargetReason>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orchestrator");
        let m = Metrics {
            started: Family::default(),
            skipped: Family::default(),
            merged: Family::default(),
            targets: Arc::default(),
            in_flight: Gauge::default(),
            api_errors: Family::default(),
            reloads: Family::default(),
            generation: Gauge::default(),
            ready: Gauge::default(),
            leader: Gauge::default(),
            ha_lease: Arc::default(),
            lease_claims: Family::default(),
            takeovers: Counter::default(),
            hook_downtime: Family::new_with_constructor(|| {
                Histogram::new(HOOK_DOWNTIME_BUCKETS.iter().copied())
            }),
            copies_in_flight: Gauge::default(),
            selected: Family::default(),
            selection_refreshes: Family::default(),
            selection_refresh_seconds: Family::default(),
            restore: restore::Restore::default(),
            aws_ok: std::sync::atomic::AtomicBool::new(true),
            skipped_seen: Mutex::default(),
            registry: Registry::default(),
        };
        m.register_backups(&mut registry);
        m.register_operations(&mut registry);
        m.restore.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// The families of backups: starts, ends, skips, the per-target table, in flight.
    fn register_backups(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "executions_started",
            "Executions started (or found started) per target",
            Declared(m.started.clone()),
        );
        registry.register(
            "slots_skipped",
            "Scheduled slots not started, per target and reason",
            Declared(m.skipped.clone()),
        );
        registry.register(
            "slots_merged",
            "Scheduled slots folded into an overlapping backup of the same instance, per target",
            Declared(m.merged.clone()),
        );
        registry.register_collector(Box::new(m.targets.clone()));
        registry.register(
            "jobs_in_flight",
            "Backups being followed",
            m.in_flight.clone(),
        );
        registry.register(
            "aws_api_errors",
            "Failed AWS calls by operation and error code",
            Declared(m.api_errors.clone()),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            Declared(m.reloads.clone()),
        );
        registry.register(
            "config_generation",
            "Generation of the running config (1 at start, +1 per applied reload)",
            m.generation.clone(),
        );
        registry.register(
            "ready",
            "1 when /readyz answers ready (start-up over, tag selections resolved, the last AWS \
             call succeeded), else 0",
            m.ready.clone(),
        );
    }

    /// The families of the daemon's own work: the lease, hooks, copies and tag selections.
    fn register_operations(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "leader",
            "1 while this replica holds the [ha] lease and fires, else 0",
            m.leader.clone(),
        );
        registry.register_collector(Box::new(m.ha_lease.clone()));
        registry.register(
            "lease_claims",
            "Lease claims and renewals by result (won, held_by_other, or the error kind)",
            Declared(m.lease_claims.clone()),
        );
        registry.register(
            "lease_takeovers",
            "Times this replica took the lease (standby to holder)",
            m.takeovers.clone(),
        );
        registry.register(
            "hook_downtime_seconds",
            "The application's downtime per hooked backup: pre hook start to post hook end",
            Declared(m.hook_downtime.clone()),
        );
        registry.register(
            "copies_in_flight",
            "DR copies being followed (waiting for their copy job or its end)",
            m.copies_in_flight.clone(),
        );
        registry.register(
            "selection_instances",
            "Instances a tag selection matched at its last good refresh",
            Declared(m.selected.clone()),
        );
        registry.register(
            "selection_refreshes",
            "Tag selection refreshes by result: changed, unchanged or failed",
            Declared(m.selection_refreshes.clone()),
        );
        registry.register(
            "selection_refresh_duration_seconds",
            "How long the selection's last good refresh took (every page of GetResources)",
            Declared(m.selection_refresh_seconds.clone()),
        );
    }

    /// How long `selection`'s last good refresh took.
    pub fn selection_refresh_took(&self, selection: &str, took: std::time::Duration) {
        self.selection_refresh_seconds
            .get_or_create(&SelectionLabel {
                selection: selection.to_string(),
            })
            .set(took.as_secs_f64());
    }

    /// Instances `selection` matched at its last good refresh.
    pub fn set_selected(&self, selection: &str, n: usize) {
        self.selected
            .get_or_create(&SelectionLabel {
                selection: selection.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A refresh of `selection`: `changed`, `unchanged` or `failed`.
    pub fn selection_refresh(&self, selection: &str, result: &str) {
        self.selection_refreshes
            .get_or_create(&SelectionResult {
                selection: selection.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// A hooked backup's downtime (pre hook start to post hook end).
    pub fn hook_downtime(&self, target: &str, seconds: f64) {
        self.targets.seen(target);
        self.hook_downtime
            .get_or_create(&Self::t(target))
            .observe(seconds);
    }

    fn t(target: &str) -> TargetLabel {
        TargetLabel {
            target: target.into(),
        }
    }

    /// An execution was started or found started.
    pub fn execution_started(&self, target: &str) {
        self.targets.seen(target);
        self.started.get_or_create(&Self::t(target)).inc();
    }

    /// An execution could not be started, or ended badly.
    pub fn execution_failed(&self, target: &str) {
        self.targets.execution_failed(target);
    }

    /// A slot's execution name was already taken with another input; the slot was started under
    /// its second name (`…-2`).
    pub fn execution_input_mismatch(&self, target: &str) {
        self.targets.input_mismatch(target);
    }

    /// A slot was skipped.
    pub fn slot_skipped(&self, target: &str, reason: &str) {
        self.slots_skipped(target, reason, 1);
    }

    /// `n` slots were skipped for the same reason at once (one stall).
    pub fn slots_skipped(&self, target: &str, reason: &str, n: u64) {
        self.targets.seen(target);
        let l = TargetReason {
            target: target.to_string(),
            reason: reason.to_string(),
        };
        self.skipped.get_or_create(&l).inc_by(n);
        self.skipped_seen.lock().expect("metrics lock").insert(l);
    }

    /// A slot was folded into an overlapping backup (the overlap rule); not a skip.
    pub fn slot_merged(&self, target: &str) {
        self.targets.seen(target);
        self.merged.get_or_create(&Self::t(target)).inc();
    }

    /// The target's next slot.
    pub fn set_next_fire(&self, target: &Arc<str>, at: DateTime<Utc>) {
        self.set_next_fires([(target, at)]);
    }

    /// Sets the next-fire gauge of many targets (a schedule group: 100,000 at once) under one
    /// lock.
    pub fn set_next_fires<'a>(
        &self,
        fires: impl IntoIterator<Item = (&'a Arc<str>, DateTime<Utc>)>,
    ) {
        self.targets
            .set_next_fires(fires.into_iter().map(|(t, at)| (t.clone(), ts(at))));
    }

    /// The running config's enabled targets on the replica that works ([`crate::coverage`]):
    /// their expected intervals, their last-success gauges (0 until seeded) and their failure
    /// counters at 0. Targets not listed are no longer judged.
    pub fn cover(&self, covered: &[Cover]) {
        self.targets.cover(covered);
    }

    /// A success read from AWS Backup (the newest COMPLETED job's creation): the gauge never
    /// goes back.
    pub fn seed_last_success(&self, target: &str, created: DateTime<Utc>) {
        self.targets.raise_last_success(target, ts(created));
    }

    /// A completed copy read from AWS Backup: the gauge never goes back.
    pub fn seed_last_copy(&self, target: &str, destination: &str, completed: DateTime<Utc>) {
        self.targets
            .raise_last_copy(target, destination, ts(completed));
    }

    /// Backups being followed.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether `/readyz` answers ready (set where it is judged, at each probe and scrape).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// `[ha]`: the lease duration (the gauge exists only with `[ha]`).
    pub fn set_ha_lease(&self, duration: std::time::Duration) {
        *self.ha_lease.0.lock().expect("metrics lock") = Some(duration.as_secs_f64());
    }

    /// An AWS call succeeded (for `/readyz`).
    pub fn api_ok(&self) {
        self.aws_ok
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// True unless the last AWS call failed.
    pub fn aws_ok(&self) -> bool {
        self.aws_ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A failed AWS call.
    pub fn api_error(&self, e: &ApiError) {
        self.aws_ok
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let l = ApiLabels {
            operation: e.operation.to_string(),
            code: e
                .code
                .clone()
                .unwrap_or_else(|| e.kind.as_str().to_string()),
        };
        self.api_errors.get_or_create(&l).inc();
    }

    /// A reload's result: `applied` or `rejected`.
    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// The running config's generation.
    pub fn set_generation(&self, g: u64) {
        self.generation.set(i64::try_from(g).unwrap_or(i64::MAX));
    }

    /// A backup changed; counts its end. A success sets the last-success gauge to the job's
    /// creation (the backup's point in time, what `status` judges), never back.
    pub fn backup_change(&self, b: &Backup, c: &Change) {
        match c {
            Change::ExecutionFailed { .. } => self.execution_failed(&b.target),
            Change::Finished(s) => {
                self.targets.finished(&b.target, &s.state);
                if s.success {
                    let created = b
                        .job
                        .as_ref()
                        .and_then(|j| j.creation_date)
                        .unwrap_or_else(Utc::now);
                    self.targets.raise_last_success(&b.target, ts(created));
                }
            }
            _ => {}
        }
    }

    /// A copy ended in `state` (`COMPLETED` sets the destination's last success time).
    pub fn copy_finished(&self, target: &str, destination: &str, state: &str) {
        self.targets.copy_finished(target, destination, state);
        if state == "COMPLETED" {
            self.targets
                .raise_last_copy(target, destination, ts(Utc::now()));
        }
    }

    /// Copies being followed.
    pub fn set_copies_in_flight(&self, n: usize) {
        self.copies_in_flight
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Drops every series of a target that is not in `keep`.
    pub fn retain_targets<S: std::hash::BuildHasher>(&self, keep: &HashSet<&str, S>) {
        let gone = self.targets.retain(|t| keep.contains(t));
        if gone.is_empty() {
            return;
        }
        for t in &gone {
            let l = TargetLabel { target: t.clone() };
            self.started.remove(&l);
            self.merged.remove(&l);
            self.hook_downtime.remove(&l);
            self.restore.remove(t);
        }
        let gone_names: HashSet<&str> = gone.iter().map(|g| &**g).collect();
        let mut s = self.skipped_seen.lock().expect("metrics lock");
        s.retain(|l| {
            let drop = gone_names.contains(l.target.as_str());
            if drop {
                self.skipped.remove(l);
            }
            !drop
        });
    }

    /// The targets that have a row (for tests of [`Metrics::retain_targets`]).
    #[cfg(test)]
    fn target_names(&self) -> Vec<Arc<str>> {
        self.targets.names()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl crate::lease::LeaseObserver for Metrics {
    fn claimed(&self, result: &'static str, leader: bool) {
        self.lease_claims
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
        self.leader.set(i64::from(leader));
    }

    fn changed(&self, event: &crate::lease::Event) {
        match event {
            crate::lease::Event::Acquired { .. } => {
                self.takeovers.inc();
                self.leader.set(1);
            }
            crate::lease::Event::Lost(_) => {
                self.leader.set(0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
