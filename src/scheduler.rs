//! The timer loop. tokio-cron-scheduler drives the timers; our [`crate::schedule`] decides the
//! slots (its three syntaxes and EventBridge's daylight-saving rule).
//!
//! Targets that share a schedule and zone form one group with one timer, so a fleet of 10,000
//! targets on a handful of schedules costs a handful of timers: tokio-cron-scheduler rescans
//! every job twice a second, so jobs must stay few. Each group arms a one-shot job at its next
//! slot; when it fires, the group's *current* targets fire and the next slot is armed. A reload
//! keeps the timers of unchanged groups, so no slot is lost or repeated around it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::aws::StepFunctions;
use crate::clock::Clock;
use crate::execution::Trigger;
use crate::launcher::{Fire, Launcher};
use crate::metrics::Metrics;
use crate::model::Instances;
use crate::model::{Config, Rule};
use crate::rules::Decision;
use crate::schedule::Schedule;
use crate::telemetry::event;

/// How much earlier than a slot the tokio-cron-scheduler timer is set (its resolution is 1 s).
const EARLY_WAKE: Duration = Duration::from_millis(1500);

/// A group's timer went off for `slot`.
#[derive(Debug, Clone)]
struct Due {
    key: String,
    slot: DateTime<Utc>,
}

struct Group {
    schedule: Arc<Schedule>,
    rules: Vec<Arc<Rule>>,
    next: Option<DateTime<Utc>>,
    job: Option<Uuid>,
}

/// Each schedule's next slot after one instant, computed once: a fleet on one plan asks a few
/// schedules, not one per target.
struct NextSlots {
    after: DateTime<Utc>,
    asked: HashMap<*const Schedule, Option<DateTime<Utc>>>,
}

impl NextSlots {
    fn after(after: DateTime<Utc>) -> Self {
        NextSlots {
            after,
            asked: HashMap::new(),
        }
    }

    fn of(&mut self, s: &Arc<Schedule>) -> Option<DateTime<Utc>> {
        let after = self.after;
        *self
            .asked
            .entry(Arc::as_ptr(s))
            .or_insert_with(|| s.next_after(after))
    }

    /// The soonest next slot of any rule of `t`'s target (of `t` alone in today's form), so a
    /// gauge does not show whichever rule's timer was armed last.
    fn soonest_of(&mut self, instances: &Instances, t: &Rule) -> Option<DateTime<Utc>> {
        match t.settings.rule.as_ref().and(instances.rules_of(t)) {
            None => self.of(&t.settings.schedule),
            Some(rules) => rules
                .iter()
                .filter(|r| r.name == t.name)
                .filter_map(|r| self.of(&r.settings.schedule))
                .min(),
        }
    }
}

/// Sets the next-fire gauge of a group's targets when its timer is armed again for `slot`: the
/// soonest slot after `now` of each target's rules, `slot` at the latest.
fn publish_next_fire(
    metrics: &Metrics,
    instances: &Instances,
    targets: &[Arc<Rule>],
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let mut next = NextSlots::after(now);
    metrics.set_next_fires(targets.iter().map(|t| {
        let soonest = next.soonest_of(instances, t).map_or(slot, |s| s.min(slot));
        (&t.name, soonest)
    }));
}

/// Sets every enabled target's next-fire gauge once, to the soonest slot after `after` of any of
/// its rules (its groups' timers are armed for those same slots). Once per target, not per rule:
/// a 3-rule plan fleet sets 100,000 gauges, not 300,000, when a config is applied.
fn publish_every_next_fire(
    metrics: &Metrics,
    instances: &Instances,
    config: &Config,
    after: DateTime<Utc>,
) {
    let mut next = NextSlots::after(after);
    let mut fires = Vec::with_capacity(config.rules.len());
    let mut last: Option<&Arc<str>> = None;
    for t in config.enabled_rules() {
        // The rules of one target are consecutive in the config.
        if last.is_some_and(|l| *l == t.name) {
            continue;
        }
        last = Some(&t.name);
        if let Some(at) = next.soonest_of(instances, t) {
            fires.push((&t.name, at));
        }
    }
    metrics.set_next_fires(fires);
}

/// The slots one stall skipped: a count and the first and last, not a list.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stalled {
    count: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Stalled {
    fn add(&mut self, slot: DateTime<Utc>) {
        self.count += 1;
        self.first.get_or_insert(slot);
        self.last = Some(slot);
    }

    fn range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.first.zip(self.last)
    }
}

/// Groups enabled targets by schedule group key, in config order.
pub fn group_targets(config: &Config) -> HashMap<String, Vec<Arc<Rule>>> {
    // Keyed by the schedules' own keys while counting: one String per group, not per target.
    let mut groups: HashMap<&str, Vec<Arc<Rule>>> = HashMap::new();
    for t in config.enabled_rules() {
        groups
            .entry(t.settings.schedule.group_key())
            .or_default()
            .push(t.clone());
    }
    groups
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Applies the overlap rule to slot `slot` of `t`: the fire to launch, if any (its trigger is
/// the caller's to set). A slot folded into another slot's backup is logged `slot_merged` once
/// here, where it is due, and counted apart from skipped slots.
pub fn decide(
    instances: &Instances,
    t: &Arc<Rule>,
    slot: DateTime<Utc>,
    metrics: &Metrics,
) -> Option<Fire> {
    let decision = instances.decide(t, slot);
    if decision.is_merged() {
        let (name, into, start) = decision.covering();
        info!(
            event = event::SLOT_MERGED,
            target = %t.name,
            rule = %t.rule_name(),
            resource_arn = %t.resource_arn,
            scheduled_for = %slot.to_rfc3339(),
            covering_execution = %name,
            covering_target = %into.name,
            covering_rule = %into.rule_name(),
            covering_slot = %start.to_rfc3339(),
            delete_after_days = into.settings.delete_after_days,
            "slot merged into an overlapping backup of the same instance (the rule with the longest retention)"
        );
        metrics.slot_merged(&t.name);
    }
    match decision {
        Decision::Start { target, slot, .. } => Some(Fire {
            target,
            slot,
            trigger: Trigger::Schedule,
        }),
        Decision::Merged { .. } => None,
    }
}

/// Owns the tokio-cron-scheduler instance and the groups.
pub struct Scheduler<S> {
    tcs: JobScheduler,
    groups: HashMap<String, Group>,
    due_tx: mpsc::UnboundedSender<Due>,
    due_rx: mpsc::UnboundedReceiver<Due>,
    launcher: Launcher<S>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// The rules of instances with several (the overlap rule), from the config applied last.
    instances: Instances,
}

impl<S: StepFunctions> Scheduler<S> {
    /// A started tokio-cron-scheduler with no groups yet.
    pub async fn new(
        launcher: Launcher<S>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, JobSchedulerError> {
        let tcs = JobScheduler::new().await?;
        tcs.start().await?;
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        Ok(Scheduler {
            tcs,
            groups: HashMap::new(),
            due_tx,
            due_rx,
            launcher,
            clock,
            metrics,
            instances: Instances::default(),
        })
    }

    /// Timers registered with tokio-cron-scheduler.
    pub fn timer_count(&self) -> usize {
        self.groups.values().filter(|g| g.job.is_some()).count()
    }

    /// Swaps in `config`'s targets; slots after `after` fire. Unchanged groups keep their timer.
    pub async fn apply(&mut self, config: &Config, after: DateTime<Utc>) {
        self.instances = config.instances.clone();
        let mut wanted = group_targets(config);
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(g) = self.groups.remove(&k) {
                self.disarm(&g).await;
            }
        }
        for (key, targets) in wanted.drain() {
            if let Some(g) = self.groups.get_mut(&key) {
                g.rules = targets;
                continue;
            }
            let schedule = targets[0].settings.schedule.clone();
            let next = schedule.next_after(after);
            let mut g = Group {
                schedule,
                rules: targets,
                next,
                job: None,
            };
            self.arm(&key, &mut g, false).await;
            self.groups.insert(key, g);
        }
        publish_every_next_fire(&self.metrics, &self.instances, config, after);
        // A target's rules are consecutive: each name once.
        let mut names: Vec<&str> = config.rules.iter().map(|t| &*t.name).collect();
        names.dedup();
        let mut keep: crate::fasthash::FastSet<&str> =
            HashSet::with_capacity_and_hasher(names.len(), Default::default());
        keep.extend(names);
        self.metrics.retain_targets(&keep);
    }

    async fn disarm(&self, g: &Group) {
        if let Some(id) = g.job
            && let Err(e) = self.tcs.remove(&id).await
        {
            warn!(error = %e, "could not remove a timer");
        }
    }

    /// Registers the timer of `g`'s next slot; `publish`: also set its targets' next-fire gauges
    /// (`apply` sets every target's once instead).
    async fn arm(&self, key: &str, g: &mut Group, publish: bool) {
        g.job = None;
        let Some(slot) = g.next else {
            info!(schedule = %g.schedule.expression(), "schedule has no further slots");
            return;
        };
        if publish {
            publish_next_fire(
                &self.metrics,
                &self.instances,
                &g.rules,
                slot,
                self.clock.now(),
            );
        }
        // tokio-cron-scheduler keeps ticks in whole seconds and checks twice a second: wake a
        // little early and let `on_due` sleep the last stretch with tokio's precise timer.
        let wait = (slot - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .saturating_sub(EARLY_WAKE);
        let tx = self.due_tx.clone();
        let due = Due {
            key: key.to_string(),
            slot,
        };
        let job = Job::new_one_shot_async(wait, move |_id, _sched| {
            let tx = tx.clone();
            let due = due.clone();
            Box::pin(async move {
                // The receiver is gone only after shutdown.
                let _ = tx.send(due);
            })
        });
        match job {
            Ok(job) => match self.tcs.add(job).await {
                Ok(id) => g.job = Some(id),
                Err(e) => warn!(error = %e, "could not register a timer"),
            },
            Err(e) => warn!(error = %e, "could not build a timer"),
        }
    }

    async fn on_due(&mut self, due: Due) {
        // Woken early on purpose (see `arm`): sleep the rest with tokio's precise timer.
        if let Ok(early) = (due.slot - self.clock.now()).to_std()
            && !early.is_zero()
        {
            let tx = self.due_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(early).await;
                let _ = tx.send(due);
            });
            return;
        }
        let Some(mut g) = self.groups.remove(&due.key) else {
            return;
        };
        if g.next != Some(due.slot) {
            // A timer of a group that was replaced meanwhile.
            self.groups.insert(due.key, g);
            return;
        }
        for t in &g.rules {
            debug!(
                event = event::SLOT_FIRED,
                target = %t.name,
                scheduled_for = %due.slot.to_rfc3339(),
                "slot fired"
            );
            if let Some(fire) = decide(&self.instances, t, due.slot, &self.metrics) {
                self.launcher.launch(Fire {
                    trigger: Trigger::Schedule,
                    ..fire
                });
            }
        }
        let now = self.clock.now();
        let mut next = g.schedule.next_after(due.slot);
        // Slots that passed while the process was frozen (suspend, a stopped container) are not
        // fired in a burst: the next start's catch-up policy is the one place that decides those.
        // One line per target for the whole stall (an hour of a 5 s schedule is 719 slots).
        let mut stalled = Stalled::default();
        while let Some(n) = next.filter(|n| *n < now - chrono::Duration::seconds(1)) {
            stalled.add(n);
            next = g.schedule.next_after(n);
        }
        if let Some((first, last)) = stalled.range() {
            for t in &g.rules {
                warn!(
                    event = event::SLOT_SKIPPED,
                    target = %t.name,
                    scheduled_for = %first.to_rfc3339(),
                    first_slot = %first.to_rfc3339(),
                    last_slot = %last.to_rfc3339(),
                    count = stalled.count,
                    reason = "process_stalled",
                    "slots skipped: the process was not running when they were due"
                );
                self.metrics
                    .slots_skipped(&t.name, "process_stalled", stalled.count);
            }
        }
        g.next = next;
        self.arm(&due.key, &mut g, true).await;
        self.groups.insert(due.key, g);
    }

    /// Fires slots until `shutdown`; applies each config sent on `configs`.
    pub async fn run(
        mut self,
        mut configs: watch::Receiver<Arc<Config>>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = configs.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let config = configs.borrow_and_update().clone();
                    let now = self.clock.now();
                    self.apply(&config, now).await;
                }
                Some(due) = self.due_rx.recv() => self.on_due(due).await,
            }
        }
        if let Err(e) = self.tcs.shutdown().await {
            warn!(error = %e, "timer shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeAws;
    use crate::telemetry::capture;
    use chrono::TimeZone;
    use std::sync::Mutex;

    /// A wall clock the test sets by hand: a jump is one assignment.
    struct ManualClock(Mutex<DateTime<Utc>>);

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    /// A target on a plan of a daily (03:00) and a weekly (Sunday 02:00) rule: on a Saturday
    /// evening its gauge says Sunday 02:00 whichever rule's timer publishes, and 03:00 on Monday.
    #[test]
    fn a_target_with_several_rules_shows_its_soonest_slot() {
        let text = r#"
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:b"
[[plan]]
name = "gfs"
[[plan.rule]]
name = "daily"
schedule = "0 3 * * *"
[[plan.rule]]
name = "weekly"
schedule = "0 2 * * 0"
delete_after_days = 90
[[backup]]
name = "db"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
plan = "gfs"
"#;
        let config = crate::config::parse(text, "t.toml").unwrap();
        let gauge = |m: &Metrics| {
            m.encode()
                .lines()
                .find(|l| l.starts_with("orchestrator_next_fire_timestamp_seconds{target=\"db\"}"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        };
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 20, 0, 0).unwrap();
        let sunday_two = Utc.with_ymd_and_hms(2026, 11, 29, 2, 0, 0).unwrap();
        let sunday_three = Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap();
        let (daily, weekly): (Vec<_>, Vec<_>) = config
            .rules
            .iter()
            .cloned()
            .partition(|t| t.settings.rule.as_deref() == Some("daily"));
        let m = Metrics::new();
        // The daily's timer armed last: it must not hide the weekly's sooner slot.
        publish_next_fire(&m, &config.instances, &weekly, sunday_two, saturday);
        publish_next_fire(&m, &config.instances, &daily, sunday_three, saturday);
        assert_eq!(gauge(&m), Some(sunday_two.timestamp() as f64));
        // After the weekly fired, the daily's 03:00 is next.
        let after = sunday_two + chrono::Duration::seconds(1);
        let next_weekly = Utc.with_ymd_and_hms(2026, 12, 6, 2, 0, 0).unwrap();
        publish_next_fire(&m, &config.instances, &weekly, next_weekly, after);
        assert_eq!(gauge(&m), Some(sunday_three.timestamp() as f64));
    }

    #[tokio::test]
    async fn a_clock_jump_over_many_slots_logs_one_line_per_target() {
        let (logs, _guard) = capture::start();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(t0)));
        let fake = Arc::new(FakeAws::new());
        let rig = crate::launcher::testing::rig(&fake, t0);
        let metrics = rig.metrics.clone();
        let mut scheduler = Scheduler::new(rig.launcher.clone(), clock.clone(), metrics.clone())
            .await
            .unwrap();
        let mut text = String::from(
            "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n",
        );
        for (i, name) in ["a", "b"].iter().enumerate() {
            text.push_str(&format!(
                "[[backup]]\nname = \"{name}\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}\"\nschedule = \"*/5 * * * * *\"\n"
            ));
        }
        let config = crate::config::parse(&text, "t.toml").unwrap();
        scheduler.apply(&config, t0).await;
        let (key, slot) = {
            let (k, g) = scheduler.groups.iter().next().unwrap();
            (k.clone(), g.next.unwrap())
        };
        assert_eq!(slot, t0 + chrono::Duration::seconds(5));
        // The process wakes an hour later: its timer for 09:00:05 goes off at 10:00:05.5.
        *clock.0.lock().unwrap() = t0 + chrono::Duration::milliseconds(3_605_500);
        scheduler.on_due(Due { key, slot }).await;

        let lines = logs.named(event::SLOT_SKIPPED);
        assert_eq!(lines.len(), 2, "one line per target: {lines:?}");
        // 09:00:10 … 10:00:00 passed while frozen (10:00:05 is within the second of now).
        for (line, target) in lines.iter().zip(["a", "b"]) {
            assert_eq!(line["target"], target);
            assert_eq!(line["reason"], "process_stalled");
            assert_eq!(line["count"], 719);
            assert_eq!(line["first_slot"], "2026-11-29T09:00:10+00:00");
            assert_eq!(line["last_slot"], "2026-11-29T10:00:00+00:00");
        }
        // The metric still counts every slot.
        let text = metrics.encode();
        for target in ["a", "b"] {
            let series = format!(
                "orchestrator_slots_skipped_total{{target=\"{target}\",reason=\"process_stalled\"}} 719"
            );
            assert!(text.contains(&series), "{series} in\n{text}");
        }
        // 10:00:05, less than a second late, is armed (and fires at once), not skipped.
        let g = scheduler.groups.values().next().unwrap();
        assert_eq!(g.next, Some(t0 + chrono::Duration::seconds(3605)));
    }
}
