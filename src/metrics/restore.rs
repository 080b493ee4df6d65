//! The restore-test metrics of plan §3 (issue 26), registered now so that the alert rules and
//! the dashboard find every name; the restore feature calls the methods below.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Declared, Metrics, TargetLabel, ts};

/// Results a restore test ends with (`restore_tests_total{result}`).
pub const RESULTS: [&str; 3] = ["passed", "failed", "slow"];

/// Buckets of `restore_duration_seconds`: a small instance restores in minutes, a large one in
/// hours.
const RESTORE_BUCKETS: &[f64] = &[
    60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 10800.0,
    14400.0, 21600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetResult {
    target: Arc<str>,
    result: String,
}

type FloatGauges = Family<TargetLabel, Gauge<f64, AtomicU64>>;

/// The restore families.
#[derive(Debug)]
pub(super) struct Restore {
    tests: Family<TargetResult, Counter>,
    duration: Family<TargetLabel, Histogram, fn() -> Histogram>,
    last_success: FloatGauges,
    expected_interval: FloatGauges,
    max_duration: FloatGauges,
    last_duration: FloatGauges,
    alive: Gauge,
    expired: Gauge,
}

impl Default for Restore {
    fn default() -> Self {
        Restore {
            tests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(RESTORE_BUCKETS.iter().copied())
            }),
            last_success: Family::default(),
            expected_interval: Family::default(),
            max_duration: Family::default(),
            last_duration: Family::default(),
            alive: Gauge::default(),
            expired: Gauge::default(),
        }
    }
}

impl Restore {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "restore_tests",
            "Restore tests that ended, per target and result (passed, failed, slow)",
            Declared(self.tests.clone()),
        );
        registry.register(
            "restore_duration_seconds",
            "How long each restore test's restore took, per target",
            Declared(self.duration.clone()),
        );
        registry.register(
            "last_restore_test_success_timestamp_seconds",
            "When the target last passed a restore test (Unix time; seeded, 0 = never)",
            Declared(self.last_success.clone()),
        );
        registry.register(
            "restore_test_expected_interval_seconds",
            "The longest gap between the target's restore test slots (plus jitter)",
            Declared(self.expected_interval.clone()),
        );
        registry.register(
            "restore_max_duration_seconds",
            "The target's max_restore_minutes, in seconds",
            Declared(self.max_duration.clone()),
        );
        registry.register(
            "last_restore_duration_seconds",
            "How long the target's last restore test's restore took",
            Declared(self.last_duration.clone()),
        );
        registry.register(
            "restored_resources_alive",
            "Restored resources (tagged) not deleted yet, as the sweeper last saw them",
            self.alive.clone(),
        );
        registry.register(
            "restored_resources_expired",
            "Restored resources past their expiry plus the grace, as the sweeper last saw them",
            self.expired.clone(),
        );
    }

    /// Drops the target's series (a reload removed it).
    pub(super) fn remove(&self, target: &Arc<str>) {
        let l = TargetLabel {
            target: target.clone(),
        };
        for result in RESULTS {
            self.tests.remove(&TargetResult {
                target: target.clone(),
                result: result.to_string(),
            });
        }
        self.duration.remove(&l);
        self.last_success.remove(&l);
        self.expected_interval.remove(&l);
        self.max_duration.remove(&l);
        self.last_duration.remove(&l);
    }
}

fn label(target: &str) -> TargetLabel {
    TargetLabel {
        target: target.into(),
    }
}

impl Metrics {
    /// A restore test of `target` ended with `result` (`passed`, `failed` or `slow`) after
    /// `duration_seconds` of restore, against its maximum `max_seconds`. `passed` also moves
    /// the last-success gauge to now.
    pub fn restore_test_finished(
        &self,
        target: &str,
        result: &str,
        duration_seconds: f64,
        max_seconds: f64,
    ) {
        self.targets.seen(target);
        let r = &self.restore;
        r.tests
            .get_or_create(&TargetResult {
                target: target.into(),
                result: result.to_string(),
            })
            .inc();
        let l = label(target);
        r.duration.get_or_create(&l).observe(duration_seconds);
        r.last_duration.get_or_create(&l).set(duration_seconds);
        r.max_duration.get_or_create(&l).set(max_seconds);
        if result == "passed" {
            self.raise_restore_success(&l, ts(Utc::now()));
        }
    }

    /// A restore test of `target` that could not start (no recovery point, an API error): a
    /// failed test, with no restore time to observe.
    pub fn restore_test_not_started(&self, target: &str) {
        self.targets.seen(target);
        self.restore
            .tests
            .get_or_create(&TargetResult {
                target: target.into(),
                result: "failed".to_string(),
            })
            .inc();
    }

    /// The target's last passed restore test as read at start (`None`: never, exported as 0);
    /// the gauge never goes back.
    pub fn set_last_restore_test_success(&self, target: &str, at: Option<DateTime<Utc>>) {
        self.targets.seen(target);
        self.raise_restore_success(&label(target), at.map_or(0.0, ts));
    }

    fn raise_restore_success(&self, l: &TargetLabel, at: f64) {
        // Made at 0 (never) if missing.
        let g = self.restore.last_success.get_or_create(l);
        if at > g.get() {
            g.set(at);
        }
    }

    /// The longest gap between the target's restore test slots (plus jitter), seconds.
    pub fn set_restore_test_expected_interval(&self, target: &str, seconds: f64) {
        self.targets.seen(target);
        self.restore
            .expected_interval
            .get_or_create(&label(target))
            .set(seconds);
    }

    /// The target's `max_restore_minutes` in seconds (also set by each finished test).
    pub fn set_restore_max_duration(&self, target: &str, seconds: f64) {
        self.targets.seen(target);
        self.restore
            .max_duration
            .get_or_create(&label(target))
            .set(seconds);
    }

    /// What the sweeper last saw: restored resources alive, and how many of them are past
    /// their expiry plus the grace.
    pub fn set_restored_resources(&self, alive: usize, expired: usize) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.restore.alive.set(n(alive));
        self.restore.expired.set(n(expired));
    }
}
