//! `orchestrator status`: is every target backed up within its schedule? Pure: the coverage
//! verdict of each target from its backup jobs, the listing plan, the table and the JSON.
//! The AWS reads are in [`read`].
//!
//! **Overdue** = enabled, and no successful (COMPLETED) backup created within the target's
//! allowed age: the longest gap between two consecutive slots of its schedules (over
//! [`GAP_SAMPLES`] slots or [`GAP_HORIZON_DAYS`], whichever ends first, so daylight-saving
//! gaps and month ends count), plus its jitter, plus the margin (`--margin`), which covers the
//! start window and the job's own run time.

pub mod read;
pub mod restores;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{JobDetail, JobState};
use crate::model::Rule;
use crate::schedule::Schedule;

/// How far back AWS Backup lists jobs (ListBackupJobs only covers the last 30 days).
pub const LOOKBACK_DAYS: i64 = 30;
/// Slots looked at to find a schedule's longest gap.
pub const GAP_SAMPLES: usize = 10_000;
/// How far ahead the longest gap is looked for (two years: a yearly schedule has two gaps).
pub const GAP_HORIZON_DAYS: i64 = 800;
/// Rows of one ListBackupJobs page.
pub const PAGE_SIZE: u64 = 1000;

/// One schedule a target fires on. Today a target has one; several rules per target add rows
/// here ([`rules_of`]), and the longest gap is taken over their merged slots.
#[derive(Debug, Clone, Copy)]
pub struct NamedSchedule<'a> {
    /// The rule's name (`schedule` for a target's own schedule).
    pub name: &'a str,
    /// Its schedule.
    pub schedule: &'a Schedule,
}

/// The seam through which `status` and `next` see a target's schedules.
pub fn rules_of(t: &Rule) -> Vec<NamedSchedule<'_>> {
    vec![NamedSchedule {
        name: "schedule",
        schedule: &t.settings.schedule,
    }]
}

/// The longest gap between consecutive slots of the merged `rules` after `from`.
pub fn longest_gap(rules: &[NamedSchedule<'_>], from: DateTime<Utc>) -> Option<Duration> {
    let horizon = from + chrono::Duration::days(GAP_HORIZON_DAYS);
    let per_rule: Vec<Vec<DateTime<Utc>>> = rules
        .iter()
        .map(|r| {
            r.schedule
                .iter_after(from)
                .take_while(|s| *s <= horizon)
                .take(GAP_SAMPLES)
                .collect()
        })
        .collect();
    // Merged slots are complete only up to where the first rule's sample ends.
    let end = per_rule.iter().filter_map(|v| v.last()).min().copied()?;
    let mut slots: Vec<DateTime<Utc>> = per_rule
        .into_iter()
        .flatten()
        .filter(|s| *s <= end)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    slots
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .and_then(|d| d.to_std().ok())
}

/// The next slot of any of `rules` after `now`.
pub fn next_slot(rules: &[NamedSchedule<'_>], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    rules
        .iter()
        .filter_map(|r| r.schedule.next_after(now))
        .min()
}

/// Slots of `rules` in (`from`, `until`], counted up to `cap`: the jobs a target makes.
pub fn slots_between(
    rules: &[NamedSchedule<'_>],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    cap: u64,
) -> u64 {
    rules
        .iter()
        .map(|r| {
            r.schedule
                .iter_after(from)
                .take_while(|s| *s <= until)
                .take(usize::try_from(cap).unwrap_or(usize::MAX))
                .count() as u64
        })
        .sum::<u64>()
        .min(cap)
}

/// How the jobs of one region are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// One listing of the region's EC2 jobs, page by page, for all its targets; given up (and
    /// replaced by [`Plan::PerResource`]) after `budget` pages.
    Region {
        /// Pages the listing may take: what listing by resource would cost.
        budget: u64,
    },
    /// One listing per target (`byResourceArn`).
    PerResource,
}

/// Chooses how to read a region whose targets make `jobs_per_target` jobs in the lookback.
///
/// By resource, each target costs at least one call (one per 1,000 jobs): `Σ max(1, ⌈n/1000⌉)`.
/// One listing of the region costs `⌈Σn/1000⌉` pages for our jobs, never more, plus the pages of
/// EC2 jobs of instances not in the config (which no config can count). So the region listing
/// is tried first when it is estimated cheaper, with the by-resource cost as its page budget:
/// either way the cost is at most twice the by-resource cost, and usually far less (1,000 daily
/// targets: 30 pages instead of 1,000 calls).
pub fn plan(jobs_per_target: &[u64]) -> Plan {
    let per_resource: u64 = jobs_per_target
        .iter()
        .map(|n| n.div_ceil(PAGE_SIZE).max(1))
        .sum();
    let region = jobs_per_target
        .iter()
        .sum::<u64>()
        .div_ceil(PAGE_SIZE)
        .max(1);
    if region < per_resource {
        Plan::Region {
            budget: per_resource,
        }
    } else {
        Plan::PerResource
    }
}

/// A backup job as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// The job id.
    pub backup_job_id: String,
    /// Its state (COMPLETED, FAILED, RUNNING, …).
    pub state: String,
    /// When it was created: the backup's point in time.
    pub created: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed: Option<DateTime<Utc>>,
    /// Seconds from `created` to the report.
    pub age_seconds: Option<i64>,
    /// The recovery point it made.
    pub recovery_point_arn: Option<String>,
    /// AWS Backup's message (why it failed).
    pub status_message: Option<String>,
}

impl JobView {
    fn of(j: &JobDetail, now: DateTime<Utc>) -> JobView {
        JobView {
            backup_job_id: j.job_id.clone(),
            state: j.state.as_str().to_string(),
            created: j.creation_date,
            completed: j.completion_date,
            age_seconds: j.creation_date.map(|c| (now - c).num_seconds()),
            recovery_point_arn: j.recovery_point_arn.clone(),
            status_message: j.status_message.clone(),
        }
    }
}

/// A target's coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No success within the allowed age.
    Overdue,
    /// A success within the allowed age.
    Covered,
    /// `enabled = false`: not judged.
    Disabled,
    /// The schedule fires at most once more: no gap to judge by.
    NotRecurring,
    /// Backed up, but no restore test passed within its allowed age.
    RestoreOverdue,
    /// Backed up, but its last passed restore test was slower than `max_restore_minutes`.
    RestoreSlow,
}

/// One rule as the JSON shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    /// The rule's name.
    pub name: String,
    /// The schedule expression.
    pub schedule: String,
    /// Its zone.
    pub timezone: String,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    /// The target's name.
    pub target: String,
    /// The instance.
    pub resource_arn: String,
    /// The verdict.
    pub verdict: Verdict,
    /// True when overdue (for `jq 'select(.overdue)'`).
    pub overdue: bool,
    /// The schedules it fires on.
    pub rules: Vec<RuleView>,
    /// The longest gap between two slots, seconds.
    pub longest_gap_seconds: Option<u64>,
    /// The oldest a last success may be (gap + jitter + margin), seconds.
    pub allowed_age_seconds: Option<u64>,
    /// The newest COMPLETED job in the lookback.
    pub last_success: Option<JobView>,
    /// The newest job in the lookback, whatever its state.
    pub last_attempt: Option<JobView>,
    /// The next slot.
    pub next_slot: Option<DateTime<Utc>>,
    /// Copies per destination: not read yet (a later issue); always empty.
    pub copies: Vec<serde_json::Value>,
    /// Its restore test, when it has one.
    pub restore_test: Option<restores::RestoreTestView>,
}

/// Judges one target from the jobs of its instance (any order) at `now`.
pub fn assess(
    t: &Rule,
    gap: Option<Duration>,
    jobs: &[JobDetail],
    now: DateTime<Utc>,
    margin: Duration,
) -> TargetStatus {
    let rules = rules_of(t);
    let newest = |ok: fn(&JobState) -> bool| {
        jobs.iter()
            .filter(|j| ok(&j.state))
            .max_by_key(|j| j.creation_date)
            .map(|j| JobView::of(j, now))
    };
    let last_success = newest(|s| *s == JobState::Completed);
    let last_attempt = newest(|_| true);
    let allowed = gap.map(|g| g + t.settings.jitter + margin);
    let verdict = match allowed {
        _ if !t.settings.enabled => Verdict::Disabled,
        None => Verdict::NotRecurring,
        Some(allowed) => {
            let recent = last_success
                .as_ref()
                .and_then(|s| s.created)
                .is_some_and(|c| (now - c).to_std().unwrap_or_default() <= allowed);
            if recent {
                Verdict::Covered
            } else {
                Verdict::Overdue
            }
        }
    };
    TargetStatus {
        target: t.name.to_string(),
        resource_arn: t.resource_arn.to_string(),
        verdict,
        overdue: verdict == Verdict::Overdue,
        rules: rules
            .iter()
            .map(|r| RuleView {
                name: r.name.to_string(),
                schedule: r.schedule.expression().to_string(),
                timezone: r.schedule.timezone().name().to_string(),
            })
            .collect(),
        longest_gap_seconds: gap.map(|g| g.as_secs()),
        allowed_age_seconds: allowed.map(|a| a.as_secs()),
        last_success,
        last_attempt,
        next_slot: if t.settings.enabled {
            next_slot(&rules, now)
        } else {
            None
        },
        copies: Vec::new(),
        restore_test: None,
    }
}

/// Adds `t`'s restore test to its row: a test overdue or too slow makes a covered target
/// not covered.
fn with_restore_test(
    mut row: TargetStatus,
    t: &Rule,
    restores: &HashMap<String, restores::History>,
    now: DateTime<Utc>,
    margin: Duration,
) -> TargetStatus {
    let Some(test) = &t.settings.restores.test else {
        return row;
    };
    let view = restores::assess(test, restores.get(&*t.name), now, margin);
    if row.verdict == Verdict::Covered && view.overdue {
        row.verdict = Verdict::RestoreOverdue;
    } else if row.verdict == Verdict::Covered && view.too_slow {
        row.verdict = Verdict::RestoreSlow;
    }
    row.overdue |= view.overdue || view.too_slow;
    row.restore_test = Some(view);
    row
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// The margin, seconds.
    pub margin_seconds: u64,
    /// How far back jobs were read, days.
    pub lookback_days: i64,
    /// Targets overdue.
    pub overdue: usize,
    /// Targets in the report.
    pub total: usize,
    /// ListBackupJobs calls made.
    pub api_calls: u64,
    /// Overdue first, then config order.
    pub targets: Vec<TargetStatus>,
}

/// Judges every target; `jobs` are by resource ARN.
pub fn report<'a>(
    targets: impl IntoIterator<Item = &'a std::sync::Arc<Rule>>,
    jobs: &HashMap<String, Vec<JobDetail>>,
    restores: &HashMap<String, restores::History>,
    now: DateTime<Utc>,
    margin: Duration,
    api_calls: u64,
) -> Report {
    // Targets share schedules: each distinct set is sampled once.
    let mut gaps: HashMap<Vec<String>, Option<Duration>> = HashMap::new();
    let mut rows: Vec<TargetStatus> = targets
        .into_iter()
        .map(|t| {
            let rules = rules_of(t);
            let key: Vec<String> = rules
                .iter()
                .map(|r| r.schedule.group_key().to_string())
                .collect();
            let gap = *gaps
                .entry(key)
                .or_insert_with(|| longest_gap(&rules, now - chrono::Duration::days(1)));
            let none = Vec::new();
            let of = jobs.get(&t.resource_arn.to_string()).unwrap_or(&none);
            with_restore_test(assess(t, gap, of, now, margin), t, restores, now, margin)
        })
        .collect();
    // Stable: config order within each group.
    rows.sort_by_key(|r| !r.overdue);
    Report {
        generated_at: now,
        margin_seconds: margin.as_secs(),
        lookback_days: LOOKBACK_DAYS,
        overdue: rows.iter().filter(|r| r.overdue).count(),
        total: rows.len(),
        api_calls,
        targets: rows,
    }
}

/// A short age: `45s`, `12m 5s`, `3h 20m`, `4d 2h`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn stamp(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

/// The restore test's cells: last pass, its restore time against the maximum, its validation.
fn restore_cells(v: Option<&restores::RestoreTestView>) -> [String; 3] {
    let Some(v) = v else {
        return ["-".into(), "-".into(), "-".into()];
    };
    let max = age(i64::try_from(v.max_restore_seconds).unwrap_or(i64::MAX));
    [
        v.last_success
            .map_or_else(|| "never".to_string(), |t| stamp(Some(t))),
        v.last_restore_seconds.map_or_else(
            || format!("- / {max}"),
            |s| format!("{} / {max}", age(s.round() as i64)),
        ),
        v.last_validation.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// The table for people; overdue rows in red when `colour`.
pub fn render_table(r: &Report, colour: bool) -> String {
    let tests = r.targets.iter().any(|t| t.restore_test.is_some());
    let mut header = vec![
        "TARGET",
        "STATUS",
        "LAST SUCCESS",
        "AGE",
        "ALLOWED",
        "JOB",
        "LAST ATTEMPT",
        "NEXT SLOT",
    ];
    if tests {
        header.extend(["RESTORE TEST", "RESTORE TIME", "VALIDATION"]);
    }
    header.push("RECOVERY POINT");
    let rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .map(|t| {
            let s = t.last_success.as_ref();
            let attempt = t.last_attempt.as_ref().map_or_else(
                || "-".to_string(),
                |a| format!("{} {}", a.state, stamp(a.created)),
            );
            let mut row = vec![
                t.target.clone(),
                match t.verdict {
                    Verdict::Overdue => "OVERDUE",
                    Verdict::Covered => "ok",
                    Verdict::Disabled => "disabled",
                    Verdict::NotRecurring => "once",
                    Verdict::RestoreOverdue => "UNTESTED",
                    Verdict::RestoreSlow => "SLOW",
                }
                .to_string(),
                s.map_or_else(|| "never (30 d)".into(), |s| stamp(s.created)),
                s.and_then(|s| s.age_seconds)
                    .map_or_else(|| "-".into(), age),
                t.allowed_age_seconds
                    .map_or_else(|| "-".into(), |a| age(i64::try_from(a).unwrap_or(i64::MAX))),
                s.map_or_else(|| "-".into(), |s| s.backup_job_id.clone()),
                attempt,
                stamp(t.next_slot),
            ];
            if tests {
                row.extend(restore_cells(t.restore_test.as_ref()));
            }
            row.push(
                s.and_then(|s| s.recovery_point_arn.clone())
                    .unwrap_or_else(|| "-".into()),
            );
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let w = *w;
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        l
    };
    let mut out = line(&header.iter().map(|h| (*h).to_string()).collect::<Vec<_>>());
    out.push('\n');
    for (row, t) in rows.iter().zip(&r.targets) {
        let l = line(row);
        if colour && t.overdue {
            let _ = writeln!(out, "\x1b[31m{l}\x1b[0m");
        } else {
            out.push_str(&l);
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "{} of {} target(s) overdue (allowed age = longest gap between slots + jitter + margin {}); {} ListBackupJobs call(s)",
        r.overdue,
        r.total,
        age(i64::try_from(r.margin_seconds).unwrap_or(i64::MAX)),
        r.api_calls
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config(targets: &[(&str, &str, &str)]) -> crate::model::Config {
        let mut text = String::from(
            "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n",
        );
        for (i, (name, schedule, extra)) in targets.iter().enumerate() {
            text.push_str(&format!(
                "[[backup]]\nname = \"{name}\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}\"\nschedule = \"{schedule}\"\n{extra}\n"
            ));
        }
        crate::config::parse(&text, "t.toml").unwrap()
    }

    fn job(id: &str, state: JobState, created: DateTime<Utc>) -> JobDetail {
        JobDetail {
            job_id: id.into(),
            resource_arn: None,
            state,
            percent_done: None,
            backup_size_bytes: None,
            status_message: None,
            recovery_point_arn: Some(format!("rp-{id}")),
            creation_date: Some(created),
            completion_date: None,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_recent_success_covers_and_an_old_one_is_overdue() {
        let c = config(&[("daily", "0 3 * * *", "")]);
        let t = &c.rules[0];
        let gap = longest_gap(&rules_of(t), now());
        assert_eq!(gap, Some(24 * HOUR));
        // 33 h old: within 24 h + 10 h margin; 35 h old: not.
        let ok = assess(
            t,
            gap,
            &[job("a", JobState::Completed, now() - 33 * HOUR)],
            now(),
            10 * HOUR,
        );
        assert_eq!(ok.verdict, Verdict::Covered);
        let late = assess(
            t,
            gap,
            &[job("a", JobState::Completed, now() - 35 * HOUR)],
            now(),
            10 * HOUR,
        );
        assert_eq!(late.verdict, Verdict::Overdue);
        assert_eq!(late.allowed_age_seconds, Some(34 * 3600));
    }

    #[test]
    fn the_last_attempt_may_fail_after_a_success_and_never_is_overdue() {
        let c = config(&[("daily", "0 3 * * *", "")]);
        let t = &c.rules[0];
        let gap = Some(24 * HOUR);
        let jobs = [
            job("old", JobState::Completed, now() - 2 * HOUR),
            job("new", JobState::Failed, now() - HOUR),
        ];
        let s = assess(t, gap, &jobs, now(), HOUR);
        assert_eq!(s.verdict, Verdict::Covered);
        assert_eq!(s.last_success.unwrap().backup_job_id, "old");
        assert_eq!(s.last_attempt.unwrap().state, "FAILED");
        let never = assess(t, gap, &[], now(), HOUR);
        assert_eq!(never.verdict, Verdict::Overdue);
        assert!(never.last_attempt.is_none());
    }

    #[test]
    fn jitter_widens_the_allowed_age_and_disabled_targets_are_not_judged() {
        let c = config(&[
            ("j", "0 3 * * *", "jitter = \"30m\""),
            ("off", "0 3 * * *", "enabled = false"),
        ]);
        let s = assess(&c.rules[0], Some(24 * HOUR), &[], now(), HOUR);
        assert_eq!(s.allowed_age_seconds, Some(25 * 3600 + 1800));
        let off = assess(&c.rules[1], Some(24 * HOUR), &[], now(), HOUR);
        assert_eq!(
            (off.verdict, off.overdue, off.next_slot),
            (Verdict::Disabled, false, None)
        );
    }

    #[test]
    fn the_longest_gap_counts_daylight_saving_and_month_ends() {
        // 02:30 does not exist in New York on 2027-03-14: that day is skipped; 02:30 EST to
        // 02:30 EDT two days later is 47 h.
        let c = config(&[
            ("ny", "30 2 * * *", "timezone = \"America/New_York\""),
            ("monthly", "0 0 1 * *", ""),
            ("weekdays", "cron(0 3 ? * MON-FRI *)", ""),
        ]);
        let from = now();
        assert_eq!(longest_gap(&rules_of(&c.rules[0]), from), Some(47 * HOUR));
        assert_eq!(
            longest_gap(&rules_of(&c.rules[1]), from),
            Some(31 * 24 * HOUR)
        );
        assert_eq!(longest_gap(&rules_of(&c.rules[2]), from), Some(72 * HOUR));
    }

    #[test]
    fn the_plan_lists_a_region_when_that_is_cheaper() {
        // 1,000 daily targets: 30,000 jobs in 30 days, 30 pages instead of 1,000 calls.
        assert_eq!(plan(&[30; 1000]), Plan::Region { budget: 1000 });
        // One target: its own listing is never dearer.
        assert_eq!(plan(&[30]), Plan::PerResource);
        // Two targets of 10,000 jobs each: 20 pages either way.
        assert_eq!(plan(&[10_000, 10_000]), Plan::PerResource);
        assert_eq!(plan(&[]), Plan::PerResource);
    }

    #[test]
    fn overdue_rows_come_first_and_are_red_only_with_colour() {
        let c = config(&[("a", "0 3 * * *", ""), ("b", "0 3 * * *", "")]);
        let mut jobs = HashMap::new();
        jobs.insert(
            c.rules[0].resource_arn.to_string(),
            vec![job("ok-job", JobState::Completed, now() - HOUR)],
        );
        let r = report(&c.rules, &jobs, &HashMap::new(), now(), HOUR, 1);
        assert_eq!(
            r.targets
                .iter()
                .map(|t| t.target.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(r.overdue, 1);
        let plain = render_table(&r, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        let lines: Vec<&str> = plain.lines().collect();
        assert!(lines[0].starts_with("TARGET  STATUS"), "{plain}");
        assert!(
            lines[1].starts_with("b       OVERDUE  never (30 d)"),
            "{plain}"
        );
        assert!(
            lines[2].contains("ok-job") && lines[2].contains("1h 0m"),
            "{plain}"
        );
        assert!(lines[3].starts_with("1 of 2 target(s) overdue"), "{plain}");
        let red = render_table(&r, true);
        assert!(
            red.lines().nth(1).unwrap().starts_with("\x1b[31mb "),
            "{red}"
        );
        assert!(!red.lines().nth(2).unwrap().contains('\x1b'), "{red}");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(45), "45s");
        assert_eq!(age(725), "12m 5s");
        assert_eq!(age(12_000), "3h 20m");
        assert_eq!(age(4 * 86_400 + 7200), "4d 2h");
    }
}
