//! Several rules per instance: which rules share an instance, and what a fired slot of one of
//! them becomes under the overlap rule ([`crate::overlap`] does the maths).
//!
//! A rule is one [`Target`] of the config: a `[[backup]]` with its own `schedule`, or one rule
//! of a target with `plan = "…"` or `[[backup.rule]]`s. Rules naming the same instance (several
//! `[[backup]]`s with one `resource_arn`, the rules of one target, or both) are one instance's
//! rules: their slots merge. Pure: the same config gives every replica the same answer.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{Instances, Rule};
use crate::overlap::{self, Group, RuleSlots};

impl RuleSlots for Arc<Rule> {
    fn next_slot_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.settings.schedule.next_after(after)
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.settings.start_window_minutes))
    }

    fn retention(&self) -> Option<u32> {
        Some(self.settings.delete_after_days)
    }
}

impl Instances {
    /// What slot `slot` of `t` becomes.
    pub fn decide(&self, t: &Arc<Rule>, slot: DateTime<Utc>) -> Decision {
        let alone = Decision::Start {
            target: t.clone(),
            slot,
            merged: false,
        };
        let Some(rules) = self.rules_of(t) else {
            return alone;
        };
        let Some(index) = rules.iter().position(|r| Arc::ptr_eq(r, t) || **r == **t) else {
            return alone;
        };
        decide(rules, index, slot)
    }
}

/// What a fired slot becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start a backup of `target` (the winning rule) at `slot` (this slot: the group's start).
    /// `merged`: this slot's own rule lost to `target`'s, so the slot is also logged as merged.
    Start {
        /// The rule whose settings and name the backup carries.
        target: Arc<Rule>,
        /// The backup's slot.
        slot: DateTime<Utc>,
        /// True when the slot's own rule is not `target`.
        merged: bool,
    },
    /// Covered by the backup another slot starts: nothing to start.
    Merged {
        /// The rule whose backup covers this slot.
        into: Arc<Rule>,
        /// That backup's slot.
        start: DateTime<Utc>,
        /// False only for the winning rule's own slot at the group's start (the backup carries
        /// its very name); true for every slot folded into another slot's or rule's backup.
        folded: bool,
    },
}

impl Decision {
    /// The execution that covers the slot: its name, its rule, and its slot.
    pub fn covering(&self) -> (String, &Arc<Rule>, DateTime<Utc>) {
        match self {
            Decision::Start { target, slot, .. } => (target.scheduled_name(*slot), target, *slot),
            Decision::Merged { into, start, .. } => (into.scheduled_name(*start), into, *start),
        }
    }

    /// True when the slot is folded into a backup named for another slot or rule.
    pub fn is_merged(&self) -> bool {
        matches!(
            self,
            Decision::Start { merged: true, .. } | Decision::Merged { folded: true, .. }
        )
    }
}

/// What slot `slot` of `rules[index]` becomes.
pub fn decide(rules: &[Arc<Rule>], index: usize, slot: DateTime<Utc>) -> Decision {
    let g: Group = overlap::group_of(rules, index, slot);
    let winner = rules[g.winner].clone();
    if g.is_led_by(index, slot) {
        Decision::Start {
            target: winner,
            slot,
            merged: g.folds(index, slot),
        }
    } else {
        Decision::Merged {
            into: winner,
            start: g.start,
            folded: g.folds(index, slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use chrono::TimeZone;

    pub(crate) const GFS: &str = r#"
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:b"
[[plan]]
name = "gfs"
[[plan.rule]]
name = "daily"
schedule = "0 3 * * *"
delete_after_days = 35
[[plan.rule]]
name = "weekly"
schedule = "0 3 * * SUN"
delete_after_days = 90
[[plan.rule]]
name = "monthly"
schedule = "0 3 1 * *"
delete_after_days = 365

[[backup]]
name = "db"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-12345678"
plan = "gfs"
"#;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    /// Every slot of every rule in November 2026, decided: one backup a day, the right retention.
    #[test]
    fn a_gfs_month_makes_one_backup_a_day_with_the_longest_retention() {
        let c = config::parse(GFS, "t.toml").unwrap();
        assert_eq!(c.rules.len(), 3);
        let mut starts: Vec<(DateTime<Utc>, String, u32)> = Vec::new();
        let mut merged = 0;
        for t in &c.rules {
            for slot in t
                .settings
                .schedule
                .iter_after(at(1, 0, 0))
                .take_while(|s| *s < at(30, 23, 0))
            {
                let d = c.instances.decide(t, slot);
                merged += usize::from(d.is_merged());
                if let Decision::Start { target, slot, .. } = d {
                    starts.push((
                        slot,
                        target.scheduled_name(slot),
                        target.settings.delete_after_days,
                    ));
                }
            }
        }
        starts.sort();
        assert_eq!(starts.len(), 30, "one backup a day: {starts:?}");
        let days: std::collections::HashSet<_> = starts.iter().map(|s| s.0.date_naive()).collect();
        assert_eq!(days.len(), 30, "no day twice, none lost");
        assert_eq!(starts[0].1, "db-monthly-20261101T030000Z");
        assert_eq!(starts[0].2, 365);
        // Sundays in November 2026 other than the 1st: 8, 15, 22, 29.
        let weekly: Vec<_> = starts.iter().filter(|s| s.2 == 90).collect();
        assert_eq!(weekly.len(), 4, "{weekly:?}");
        assert_eq!(weekly[0].1, "db-weekly-20261108T030000Z");
        assert_eq!(starts.iter().filter(|s| s.2 == 35).count(), 25);
        // Nov 1 is a Sunday: daily and weekly fold into the monthly; 4 more Sundays fold a daily.
        assert_eq!(merged, 2 + 4);
    }

    #[test]
    fn the_daily_at_three_leads_the_weekly_at_half_past() {
        let text = GFS
            .replace("0 3 * * SUN", "30 3 * * SUN")
            .replace("0 3 1 * *", "0 5 1 1 *");
        let c = config::parse(&text, "t.toml").unwrap();
        let (daily, weekly) = (&c.rules[0], &c.rules[1]);
        let d = c.instances.decide(daily, at(8, 3, 0));
        assert!(
            matches!(&d, Decision::Start { target, merged: true, .. } if target.settings.rule.as_deref() == Some("weekly")),
            "{d:?}"
        );
        assert_eq!(d.covering().0, "db-weekly-20261108T030000Z");
        let w = c.instances.decide(weekly, at(8, 3, 30));
        assert_eq!(w.covering().0, "db-weekly-20261108T030000Z");
        assert!(matches!(w, Decision::Merged { .. }));
        // A Monday: the daily alone, under its own name.
        let m = c.instances.decide(daily, at(9, 3, 0));
        assert_eq!(m.covering().0, "db-daily-20261109T030000Z");
        assert!(!m.is_merged());
    }

    #[test]
    fn todays_form_keeps_its_names_and_merges_across_blocks() {
        let text = r#"
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:b"
[[backup]]
name = "db-daily"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-12345678"
schedule = "0 3 * * *"
[[backup]]
name = "db-monthly"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-12345678"
schedule = "0 3 1 * *"
delete_after_days = 365
[[backup]]
name = "web"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-87654321"
schedule = "0 3 * * *"
"#;
        let c = config::parse(text, "t.toml").unwrap();
        assert_eq!(c.instances.len(), 1, "web has one rule: not kept");
        let d = c.instances.decide(&c.rules[0], at(1, 3, 0));
        assert_eq!(d.covering().0, "db-monthly-20261101T030000Z");
        let web = c.instances.decide(&c.rules[2], at(1, 3, 0));
        assert_eq!(web.covering().0, "web-20261101T030000Z");

        // The instance's blocks apart, another instance's between them: its rules are still
        // one list, in file order.
        let (db, web) = ("i-12345678", "i-87654321");
        let apart = text
            .replacen(db, "DB", 1)
            .replacen(db, "WEB", 1)
            .replacen(web, "DB", 1)
            .replace("DB", db)
            .replace("WEB", web);
        let c = config::parse(&apart, "t.toml").unwrap();
        let names = |t: &Rule| -> Vec<String> {
            c.instances
                .rules_of(t)
                .map_or_else(Vec::new, |r| r.iter().map(|r| r.name.to_string()).collect())
        };
        assert_eq!(names(&c.rules[0]), ["db-daily", "web"]);
        assert_eq!(names(&c.rules[2]), ["db-daily", "web"]);
        assert!(names(&c.rules[1]).is_empty(), "db-monthly is alone now");
    }
}
