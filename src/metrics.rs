//! Prometheus metrics: what an on-call engineer needs to see that every backup happened.
//!
//! Series carry a `target` label; when a reload removes a target, its series disappear.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::aws::ApiError;
use crate::fasthash::FastMap;
use crate::lifecycle::{Backup, Change};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TargetLabel {
    // Shared with the config's target name: 100,000 targets keep one copy of each name.
    target: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TargetState {
    target: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TargetReason {
    target: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CopyLabels {
    target: String,
    destination: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CopyDestination {
    target: String,
    destination: String,
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

/// `next_fire_timestamp_seconds`: a gauge per target, in a map of our own. Applying a config
/// sets every target's at once (100,000 at start-up): a `Family` grows its map one series at a
/// time, a SipHash and a write lock each, which was a tenth of the start-up.
#[derive(Debug, Default)]
struct NextFires(std::sync::RwLock<FastMap<Arc<str>, f64>>);

impl Collector for NextFires {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let next = self.0.read().expect("metrics lock");
        let mut family = encoder.encode_descriptor(
            "next_fire_timestamp_seconds",
            "The target's next scheduled slot (Unix time)",
            None,
            MetricType::Gauge,
        )?;
        for (target, at) in next.iter() {
            let label = TargetLabel {
                target: target.clone(),
            };
            ConstGauge::new(*at).encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// All metrics of the daemon.
pub struct Metrics {
    registry: Registry,
    started: Family<TargetLabel, Counter>,
    start_failed: Family<TargetLabel, Counter>,
    finished: Family<TargetState, Counter>,
    skipped: Family<TargetReason, Counter>,
    merged: Family<TargetLabel, Counter>,
    input_mismatches: Family<TargetLabel, Counter>,
    last_success: Family<TargetLabel, Gauge<f64, AtomicU64>>,
    next_fire: Arc<NextFires>,
    in_flight: Gauge,
    api_errors: Family<ApiLabels, Counter>,
    reloads: Family<ResultLabel, Counter>,
    generation: Gauge,
    leader: Gauge,
    lease_claims: Family<ResultLabel, Counter>,
    takeovers: Counter,
    hook_downtime: Family<TargetLabel, Histogram, fn() -> Histogram>,
    copies_finished: Family<CopyLabels, Counter>,
    last_copy: Family<CopyDestination, Gauge<f64, AtomicU64>>,
    copies_in_flight: Gauge,
    copies_seen: Mutex<BTreeSet<CopyLabels>>,
    selected: Family<SelectionLabel, Gauge>,
    selection_refreshes: Family<SelectionResult, Counter>,
    selection_refresh_seconds: Family<SelectionLabel, Gauge<f64, AtomicU64>>,
    targets_seen: Mutex<crate::fasthash::FastSet<Arc<str>>>,
    aws_ok: std::sync::atomic::AtomicBool,
    finished_seen: Mutex<BTreeSet<TargetState>>,
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
            start_failed: Family::default(),
            finished: Family::default(),
            skipped: Family::default(),
            merged: Family::default(),
            input_mismatches: Family::default(),
            last_success: Family::default(),
            next_fire: Arc::default(),
            in_flight: Gauge::default(),
            api_errors: Family::default(),
            reloads: Family::default(),
            generation: Gauge::default(),
            leader: Gauge::default(),
            lease_claims: Family::default(),
            takeovers: Counter::default(),
            hook_downtime: Family::new_with_constructor(|| {
                Histogram::new(HOOK_DOWNTIME_BUCKETS.iter().copied())
            }),
            copies_finished: Family::default(),
            last_copy: Family::default(),
            copies_in_flight: Gauge::default(),
            copies_seen: Mutex::default(),
            selected: Family::default(),
            selection_refreshes: Family::default(),
            selection_refresh_seconds: Family::default(),
            targets_seen: Mutex::default(),
            aws_ok: std::sync::atomic::AtomicBool::new(true),
            finished_seen: Mutex::default(),
            skipped_seen: Mutex::default(),
            registry: Registry::default(),
        };
        m.register_backups(&mut registry);
        m.register_operations(&mut registry);
        Metrics { registry, ..m }
    }

    /// The families of backups: starts, ends, skips, last success, next fire, in flight.
    fn register_backups(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "executions_started",
            "Executions started (or found started) per target",
            m.started.clone(),
        );
        registry.register(
            "executions_failed",
            "Executions that could not be started or ended FAILED, TIMED_OUT or ABORTED, per target",
            m.start_failed.clone(),
        );
        registry.register(
            "backups_finished",
            "Backups that reached their end, per target and final state",
            m.finished.clone(),
        );
        registry.register(
            "slots_skipped",
            "Scheduled slots not started, per target and reason",
            m.skipped.clone(),
        );
        registry.register(
            "slots_merged",
            "Scheduled slots folded into an overlapping backup of the same instance, per target",
            m.merged.clone(),
        );
        registry.register(
            "execution_input_mismatches",
            "Execution names a slot was about to use, found taken by an execution with another input, per target",
            m.input_mismatches.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the target's last backup completed (Unix time)",
            m.last_success.clone(),
        );
        registry.register_collector(Box::new(m.next_fire.clone()));
        registry.register(
            "jobs_in_flight",
            "Backups being followed",
            m.in_flight.clone(),
        );
        registry.register(
            "aws_api_errors",
            "Failed AWS calls by operation and error code",
            m.api_errors.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the running config (1 at start, +1 per applied reload)",
            m.generation.clone(),
        );
    }

    /// The families of the daemon's own work: AWS calls, reloads, the lease, hooks, copies and
    /// tag selections.
    fn register_operations(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "leader",
            "1 while this replica holds the [ha] lease and fires, else 0",
            m.leader.clone(),
        );
        registry.register(
            "lease_claims",
            "Lease claims and renewals by result (won, held_by_other, or the error kind)",
            m.lease_claims.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Times this replica took the lease (standby to holder)",
            m.takeovers.clone(),
        );
        registry.register(
            "hook_downtime_seconds",
            "The application's downtime per hooked backup: pre hook start to post hook end",
            m.hook_downtime.clone(),
        );
        registry.register(
            "copies_finished",
            "DR copies that reached their end, per target, destination vault ARN and state \
             (FAILED also when no copy job could be started)",
            m.copies_finished.clone(),
        );
        registry.register(
            "last_copy_success_timestamp_seconds",
            "When the target's last copy to the destination vault completed (Unix time)",
            m.last_copy.clone(),
        );
        registry.register(
            "copies_in_flight",
            "DR copies being followed (waiting for their copy job or its end)",
            m.copies_in_flight.clone(),
        );
        registry.register(
            "selection_instances",
            "Instances a tag selection matched at its last good refresh",
            m.selected.clone(),
        );
        registry.register(
            "selection_refreshes",
            "Tag selection refreshes by result: changed, unchanged or failed",
            m.selection_refreshes.clone(),
        );
        registry.register(
            "selection_refresh_duration_seconds",
            "How long the selection's last good refresh took (every page of GetResources)",
            m.selection_refresh_seconds.clone(),
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
        self.seen_target(target);
        self.hook_downtime
            .get_or_create(&Self::t(target))
            .observe(seconds);
    }

    fn seen_target(&self, target: &str) {
        let mut seen = self.targets_seen.lock().expect("metrics lock");
        if !seen.contains(target) {
            seen.insert(target.into());
        }
    }

    fn t(target: &str) -> TargetLabel {
        TargetLabel {
            target: target.into(),
        }
    }

    /// An execution was started or found started.
    pub fn execution_started(&self, target: &str) {
        self.seen_target(target);
        self.started.get_or_create(&Self::t(target)).inc();
    }

    /// An execution could not be started, or ended badly.
    pub fn execution_failed(&self, target: &str) {
        self.seen_target(target);
        self.start_failed.get_or_create(&Self::t(target)).inc();
    }

    /// A slot was skipped.
    pub fn slot_skipped(&self, target: &str, reason: &str) {
        self.slots_skipped(target, reason, 1);
    }

    /// `n` slots were skipped for the same reason at once (one stall).
    pub fn slots_skipped(&self, target: &str, reason: &str, n: u64) {
        self.seen_target(target);
        let l = TargetReason {
            target: target.to_string(),
            reason: reason.to_string(),
        };
        self.skipped.get_or_create(&l).inc_by(n);
        self.skipped_seen.lock().expect("metrics lock").insert(l);
    }

    /// A slot was folded into an overlapping backup (the overlap rule); not a skip.
    pub fn slot_merged(&self, target: &str) {
        self.seen_target(target);
        self.merged.get_or_create(&Self::t(target)).inc();
    }

    /// A name about to be started was taken by an execution with another input.
    pub fn execution_input_mismatch(&self, target: &str) {
        self.seen_target(target);
        self.input_mismatches.get_or_create(&Self::t(target)).inc();
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
        let fires = fires.into_iter();
        let mut seen = self.targets_seen.lock().expect("metrics lock");
        let mut next = self.next_fire.0.write().expect("metrics lock");
        // Room for all of them at once (the maps already hold them on a reload).
        let n = fires.size_hint().0;
        let (more_seen, more_next) = (n.saturating_sub(seen.len()), n.saturating_sub(next.len()));
        seen.reserve(more_seen);
        next.reserve(more_next);
        for (target, at) in fires {
            if !seen.contains(&**target) {
                seen.insert(target.clone());
            }
            match next.get_mut(&**target) {
                Some(v) => *v = ts(at),
                None => {
                    next.insert(target.clone(), ts(at));
                }
            }
        }
    }

    /// Backups being followed.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
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

    /// A backup changed; counts its end.
    pub fn backup_change(&self, b: &Backup, c: &Change) {
        match c {
            Change::ExecutionFailed { .. } => self.execution_failed(&b.target),
            Change::Finished(s) => {
                self.seen_target(&b.target);
                let l = TargetState {
                    target: b.target.clone(),
                    state: s.state.clone(),
                };
                self.finished.get_or_create(&l).inc();
                self.finished_seen.lock().expect("metrics lock").insert(l);
                if s.success {
                    self.last_success
                        .get_or_create(&Self::t(&b.target))
                        .set(ts(Utc::now()));
                }
            }
            _ => {}
        }
    }

    /// A copy ended in `state` (`COMPLETED` sets the destination's last success time).
    pub fn copy_finished(&self, target: &str, destination: &str, state: &str) {
        self.seen_target(target);
        let l = CopyLabels {
            target: target.to_string(),
            destination: destination.to_string(),
            state: state.to_string(),
        };
        self.copies_finished.get_or_create(&l).inc();
        self.copies_seen.lock().expect("metrics lock").insert(l);
        if state == "COMPLETED" {
            self.last_copy
                .get_or_create(&CopyDestination {
                    target: target.to_string(),
                    destination: destination.to_string(),
                })
                .set(ts(Utc::now()));
        }
    }

    /// Copies being followed.
    pub fn set_copies_in_flight(&self, n: usize) {
        self.copies_in_flight
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Drops every series of a target that is not in `keep`.
    pub fn retain_targets<S: std::hash::BuildHasher>(&self, keep: &HashSet<&str, S>) {
        let mut seen = self.targets_seen.lock().expect("metrics lock");
        let gone: Vec<Arc<str>> = seen
            .iter()
            .filter(|t| !keep.contains(&***t))
            .cloned()
            .collect();
        for t in &gone {
            let l = Self::t(t);
            self.started.remove(&l);
            self.start_failed.remove(&l);
            self.merged.remove(&l);
            self.input_mismatches.remove(&l);
            self.last_success.remove(&l);
            self.next_fire.0.write().expect("metrics lock").remove(t);
            self.hook_downtime.remove(&l);
            seen.remove(t);
        }
        let gone_names: HashSet<&str> = gone.iter().map(|g| &**g).collect();
        let mut f = self.finished_seen.lock().expect("metrics lock");
        f.retain(|l| {
            let drop = gone_names.contains(l.target.as_str());
            if drop {
                self.finished.remove(l);
            }
            !drop
        });
        let mut c = self.copies_seen.lock().expect("metrics lock");
        c.retain(|l| {
            let drop = gone_names.contains(l.target.as_str());
            if drop {
                self.copies_finished.remove(l);
                self.last_copy.remove(&CopyDestination {
                    target: l.target.clone(),
                    destination: l.destination.clone(),
                });
            }
            !drop
        });
        let mut s = self.skipped_seen.lock().expect("metrics lock");
        s.retain(|l| {
            let drop = gone_names.contains(l.target.as_str());
            if drop {
                self.skipped.remove(l);
            }
            !drop
        });
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
mod tests {
    use super::*;

    #[test]
    fn removed_targets_lose_their_series() {
        let m = Metrics::new();
        m.execution_started("web");
        m.execution_started("db");
        m.slot_skipped("db", "previous_backup_running");
        m.set_next_fire(&"db".into(), Utc::now());
        let text = m.encode();
        assert!(
            text.contains("orchestrator_executions_started_total{target=\"db\"} 1"),
            "{text}"
        );
        m.retain_targets(&HashSet::from(["web"]));
        let text = m.encode();
        assert!(!text.contains("target=\"db\""), "{text}");
        assert!(
            text.contains("orchestrator_executions_started_total{target=\"web\"} 1"),
            "{text}"
        );
    }
}
