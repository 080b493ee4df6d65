//! Scheduled restore tests and the sweeper of their leftovers: the running part of restores,
//! on the replica that works (the `[ha]` holder, or every replica without `[ha]`).
//!
//! Each target with a `restore_test` gets one execution of the restore machine per slot, named
//! `test-{target}-{slot}` ([`crate::restore::test_name`]): a slot already started (before a
//! restart, or by another replica) is followed, never started again. [`start`] picks the
//! recovery point and starts the test; [`watcher`] follows every test and sweep in flight
//! together (one listing of the machine's running executions a round) and logs each step once
//! ([`follow`]: the lines, and one execution followed alone, as `orchestrator restore` does);
//! [`sweeper`] finds restored instances past their expiry and has the machine terminate them. The pure parts (names, input, picking, the report) are [`crate::restore`].

mod follow;
mod parts;
mod start;
mod sweeper;
mod watcher;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::aws::{RecoveryPoints, StepFunctions, TagSearch};
use crate::metrics::Metrics;
use crate::model::Config;

pub use follow::{Followed, follow};
pub use parts::{Parts, Planned};

/// How far back a slot missed while no replica ran is still started (a restart within the
/// hour runs it late; an older one waits for the next slot). A slot whose test may still be
/// running (up to its expiry) is looked at further back, to follow it to its end.
pub const CATCH_UP: Duration = Duration::from_secs(3600);

/// The enabled restore tests of `config`, one per target (selections' instances included once
/// resolved).
pub fn planned(config: &Config) -> Vec<Planned> {
    let Some(machine) = &config.restore.state_machine else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    config
        .enabled_rules()
        .filter_map(|rule| {
            let test = rule.settings().restores.test.clone()?;
            (test.enabled && seen.insert(rule.name.clone())).then(|| Planned {
                target: rule.name.clone(),
                resource_arn: rule.resource_arn.to_string(),
                test,
                machine: machine.clone(),
            })
        })
        .collect()
}

/// Runs the restore tests of each config `configs` sends, and the sweeper, until `stop`.
pub async fn run<S: StepFunctions, B: RecoveryPoints, T: TagSearch>(
    parts: Arc<Parts<S, B, T>>,
    mut configs: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    let (watch, watched) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watcher::run(parts.clone(), watched, stop.clone()));
    let mut handled: HashMap<Arc<str>, DateTime<Utc>> = HashMap::new();
    let mut next_sweep = tokio::time::Instant::now();
    // The tests of the config last seen: planned (and their metrics seeded) once per config,
    // not at every wake.
    let mut current: Option<(Arc<Config>, Vec<Planned>)> = None;
    let started = parts.clock.now();
    let mut first_pass = true;
    loop {
        let config = configs.borrow_and_update().clone();
        let now = parts.clock.now();
        if !current
            .as_ref()
            .is_some_and(|(c, _)| Arc::ptr_eq(c, &config))
        {
            let plan = planned(&config);
            for p in &plan {
                seed_metrics(&parts.metrics, p, now);
            }
            current = Some((config.clone(), plan));
        }
        let plan = &current.as_ref().expect("just set").1;
        let mut due = Vec::new();
        for p in plan {
            let from = handled.get(&p.target).copied().unwrap_or_else(|| {
                if !first_pass {
                    // Added by a reload or a selection's refresh: from its next slot on.
                    return now;
                }
                // At start: the last slot whose test may still run (to follow it), or that may
                // still be caught up.
                let running = crate::restore::expires_at(now, &p.test) - now;
                now - running.max(chrono::Duration::from_std(CATCH_UP).expect("an hour"))
            });
            if let Some(slot) = p.test.schedule.latest_in(from, now) {
                handled.insert(p.target.clone(), slot);
                due.push((p.clone(), slot, slot < started));
            } else {
                handled.entry(p.target.clone()).or_insert(from);
            }
        }
        if !due.is_empty() {
            tokio::spawn(start_all(parts.clone(), due, watch.clone(), stop.clone()));
        }
        first_pass = false;
        let next_slot = plan
            .iter()
            .filter_map(|p| p.test.schedule.next_after(now))
            .min()
            .and_then(|t| (t - now).to_std().ok())
            .map(|d| tokio::time::Instant::now() + d);
        let sleep_slot = async {
            match next_slot {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            changed = configs.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(next_sweep) => {
                let globals = config.restore.clone();
                next_sweep = tokio::time::Instant::now() + globals.sweep_interval;
                if let Some(machine) = globals.state_machine.clone() {
                    tokio::spawn(sweeper::sweep(parts.clone(), machine, globals, watch.clone()));
                }
            }
            () = sleep_slot => {}
        }
    }
}

/// Tests started at once, at most: a fleet's slot is a queue, not 10,000 tasks.
const START_CONCURRENCY: usize = 16;

/// Starts the tests of `due` (each a planned test, its slot, and whether the slot is from
/// before this start), [`START_CONCURRENCY`] at a time.
async fn start_all<S: StepFunctions, B: RecoveryPoints, T: TagSearch>(
    parts: Arc<Parts<S, B, T>>,
    due: Vec<(Planned, DateTime<Utc>, bool)>,
    watch: start::Watch,
    stop: CancellationToken,
) {
    let mut running = tokio::task::JoinSet::new();
    for (p, slot, late) in due {
        while running.len() >= START_CONCURRENCY {
            running.join_next().await;
        }
        if stop.is_cancelled() {
            return;
        }
        let (parts, watch, stop) = (parts.clone(), watch.clone(), stop.clone());
        running.spawn(async move { start::start(&parts, &p, slot, late, &watch, &stop).await });
    }
    while running.join_next().await.is_some() {}
}

/// The test's expected interval and maximum restore time, for the alert rules.
fn seed_metrics(metrics: &Metrics, p: &Planned, now: DateTime<Utc>) {
    let max = p.test.max_restore().as_secs_f64();
    metrics.set_restore_max_duration(&p.target, max);
    // 0 until a test passes (the alert's "never passed").
    metrics.set_last_restore_test_success(&p.target, None);
    if let Some(gap) = p.test.schedule.longest_gap(now, 8) {
        metrics.set_restore_test_expected_interval(&p.target, gap.as_seconds_f64());
    }
}
