//! Pure: which slots of one instance's rules become one backup (AWS Backup's overlap rule).
//!
//! Slots of different rules whose start windows overlap (half-open, `[slot, slot + window)`)
//! become one backup: it starts at the earliest slot, with the settings of the rule with the
//! longest retention (no retention = kept forever = longest; ties go to the rule listed first).
//! Slots of one rule never merge with each other.
//!
//! Groups are formed greedily in time order: the earliest slot not yet in a group leads a new
//! group, which takes the first later slot of each other rule that starts inside the leader's
//! window. Every replica computes the same groups from the config alone: the function looks
//! back from a slot to the last point no earlier window covers (an anchor), then replays the
//! greedy pass from there. When no such point is found within [`MAX_CHAIN`] steps (windows
//! that chain without end: rules whose periods are shorter than their windows), groups are
//! formed per span of the longest window, aligned to the Unix epoch, and never cross its end.

use chrono::{DateTime, Duration, Utc};

/// Steps the look-back for a point no window covers may take.
pub const MAX_CHAIN: usize = 64;
/// Groups the replay may form before it reaches the slot; beyond it a slot stands alone.
const MAX_GROUPS: usize = 4096;

/// What the merging maths needs to know about one rule.
pub trait RuleSlots {
    /// The first slot strictly after `after`.
    fn next_slot_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>>;
    /// The start window (a slot's window is `[slot, slot + window)`).
    fn window(&self) -> Duration;
    /// Retention in days; `None` keeps the recovery point forever.
    fn retention(&self) -> Option<u32>;
}

/// One backup made from one or more slots of an instance's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// When the backup starts: the earliest member slot.
    pub start: DateTime<Utc>,
    /// The rule (index) of the earliest slot.
    pub leader: usize,
    /// The rule whose settings and name the backup carries.
    pub winner: usize,
    /// Every slot in the group, `(rule, slot)`, in time order (the leader's first).
    pub members: Vec<(usize, DateTime<Utc>)>,
}

impl Group {
    /// True when `(rule, slot)` is the slot that starts the backup.
    pub fn is_led_by(&self, rule: usize, slot: DateTime<Utc>) -> bool {
        self.leader == rule && self.start == slot
    }

    /// True when the backup is just this one slot of its own rule.
    pub fn is_alone(&self) -> bool {
        self.members.len() == 1
    }

    /// True when `(rule, slot)` is folded into a backup named for another slot: every member but
    /// the winner's own slot at the start (that one *is* the backup).
    pub fn folds(&self, rule: usize, slot: DateTime<Utc>) -> bool {
        !(rule == self.winner && slot == self.start)
    }
}

/// Orders retentions: `None` (forever) is the longest.
fn longer(a: Option<u32>, b: Option<u32>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x > y,
        _ => false,
    }
}

/// The winning rule among `members`: the longest retention, then the rule listed first.
pub fn winner<R: RuleSlots>(rules: &[R], members: &[(usize, DateTime<Utc>)]) -> usize {
    let mut best = members[0].0;
    for &(r, _) in &members[1..] {
        let (a, b) = (rules[r].retention(), rules[best].retention());
        if longer(a, b) || (a == b && r < best) {
            best = r;
        }
    }
    best
}

/// The first slot of `rule` at or after `at` (slots are whole seconds).
fn slot_at_or_after<R: RuleSlots>(rule: &R, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    rule.next_slot_after(at - Duration::seconds(1))
}

/// The group that slot `slot` of rule `rule` belongs to. `slot` must be a slot of that rule.
pub fn group_of<R: RuleSlots>(rules: &[R], rule: usize, slot: DateTime<Utc>) -> Group {
    let alone = Group {
        start: slot,
        leader: rule,
        winner: rule,
        members: vec![(rule, slot)],
    };
    if rules.len() < 2 {
        return alone;
    }
    // Look back: while a slot of any rule starts before `anchor` and its window covers it, that
    // slot may lead a group reaching forward; start the replay at the earliest such slot.
    let covering = |at: DateTime<Utc>| {
        rules
            .iter()
            .filter_map(|r| {
                slot_at_or_after(r, at - r.window() + Duration::seconds(1)).filter(|s| *s < at)
            })
            .min()
    };
    let mut anchor = slot;
    let mut quiet = false;
    for _ in 0..MAX_CHAIN {
        match covering(anchor) {
            Some(earlier) => anchor = earlier,
            None => {
                quiet = true;
                break;
            }
        }
    }
    // No quiet point within reach: windows chain without end (periods shorter than windows).
    // Then groups are formed per span of the longest window (aligned to the Unix epoch) and
    // never cross its end, so that every slot of a group still finds the same group.
    let (anchor, limit) = if quiet {
        (anchor, None)
    } else {
        let span = rules
            .iter()
            .map(RuleSlots::window)
            .max()
            .unwrap_or(Duration::hours(1))
            .num_seconds()
            .max(1);
        let from = slot.timestamp().div_euclid(span) * span;
        let from = DateTime::<Utc>::from_timestamp(from, 0).expect("in range");
        (from, Some(from + Duration::seconds(span)))
    };
    // Replay the greedy pass from the anchor.
    let mut cursor: Vec<Option<DateTime<Utc>>> =
        rules.iter().map(|r| slot_at_or_after(r, anchor)).collect();
    for _ in 0..MAX_GROUPS {
        let Some((leader, start)) = cursor
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .min_by_key(|&(i, s)| (s, i))
        else {
            return alone;
        };
        if start > slot {
            // `slot` was not met: it is not a slot of `rule`, or the chain was cut.
            return alone;
        }
        let end = limit.map_or(start + rules[leader].window(), |l| {
            l.min(start + rules[leader].window())
        });
        let mut members = vec![(leader, start)];
        cursor[leader] = rules[leader].next_slot_after(start);
        for (i, c) in cursor.iter_mut().enumerate() {
            if i == leader {
                continue;
            }
            if let Some(s) = *c
                && s < end
            {
                members.push((i, s));
                *c = rules[i].next_slot_after(s);
            }
        }
        if members.contains(&(rule, slot)) {
            members.sort_by_key(|&(i, s)| (s, i));
            let winner = winner(rules, &members);
            return Group {
                start,
                leader,
                winner,
                members,
            };
        }
    }
    alone
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    /// Slots at `offset + k * period`, k >= 0, from a fixed epoch.
    #[derive(Debug, Clone)]
    struct Every {
        offset: i64,
        period: i64,
        window: i64,
        retention: Option<u32>,
    }

    fn epoch() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    impl RuleSlots for Every {
        fn next_slot_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
            let t = (after - epoch()).num_seconds() - self.offset;
            let k = if t < 0 { 0 } else { t / self.period + 1 };
            Some(epoch() + Duration::seconds(self.offset + k * self.period))
        }
        fn window(&self) -> Duration {
            Duration::seconds(self.window)
        }
        fn retention(&self) -> Option<u32> {
            self.retention
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        epoch() + Duration::seconds(secs)
    }

    const H: i64 = 3600;
    const D: i64 = 86_400;

    #[test]
    fn daily_at_three_and_weekly_at_half_past_make_one_backup_with_the_weekly_retention() {
        let rules = [
            Every {
                offset: 3 * H,
                period: D,
                window: H,
                retention: Some(35),
            },
            Every {
                offset: 3 * H + 1800,
                period: 7 * D,
                window: H,
                retention: Some(90),
            },
        ];
        let g = group_of(&rules, 0, at(3 * H));
        assert_eq!(g.start, at(3 * H));
        assert_eq!(g.winner, 1);
        assert_eq!(g.members, vec![(0, at(3 * H)), (1, at(3 * H + 1800))]);
        assert!(g.folds(0, at(3 * H)) && g.folds(1, at(3 * H + 1800)));
        // The weekly slot finds the same group.
        assert_eq!(group_of(&rules, 1, at(3 * H + 1800)), g);
        // The next day the daily is alone.
        assert!(group_of(&rules, 0, at(D + 3 * H)).is_alone());
    }

    #[test]
    fn half_open_windows_do_not_touch() {
        let rules = [
            Every {
                offset: 0,
                period: D,
                window: H,
                retention: Some(1),
            },
            Every {
                offset: H,
                period: D,
                window: H,
                retention: Some(2),
            },
        ];
        assert!(group_of(&rules, 1, at(H)).is_alone());
    }

    #[test]
    fn forever_is_longest_and_ties_go_to_the_first_rule() {
        let same = |r: Option<u32>| Every {
            offset: 0,
            period: D,
            window: H,
            retention: r,
        };
        let rules = [same(Some(35)), same(None), same(Some(400))];
        assert_eq!(group_of(&rules, 0, at(0)).winner, 1);
        let rules = [same(Some(35)), same(Some(35))];
        let g = group_of(&rules, 1, at(0));
        assert_eq!((g.leader, g.winner), (0, 0));
        assert!(!g.folds(0, at(0)) && g.folds(1, at(0)));
    }

    #[test]
    fn endless_chains_stay_deterministic_and_bounded() {
        // Two half-hourly rules offset by 15 minutes with hour-long windows overlap without end.
        let rules = [
            Every {
                offset: 0,
                period: 1800,
                window: H,
                retention: Some(1),
            },
            Every {
                offset: 900,
                period: 1800,
                window: H,
                retention: Some(2),
            },
        ];
        let g = group_of(&rules, 0, at(100 * 1800));
        assert_eq!(g, group_of(&rules, 0, at(100 * 1800)));
    }

    fn rule_strategy() -> impl Strategy<Value = Every> {
        (
            0i64..(2 * D),
            prop_oneof![Just(H), Just(6 * H), Just(D), Just(7 * D), Just(30 * D)],
            prop_oneof![Just(H), Just(2 * H), Just(4 * H)],
            prop_oneof![Just(None), (1u32..400).prop_map(Some)],
        )
            .prop_map(|(offset, period, window, retention)| Every {
                offset: offset % period,
                period,
                window: window.min(period),
                retention,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Over a stretch of slots: every slot is in exactly one group, every member of a group
        /// finds the same group, members come from distinct rules and start inside the leader's
        /// window, and the winner's retention is at least every member's.
        #[test]
        fn groups_partition_the_slots(rules in prop::collection::vec(rule_strategy(), 2..4)) {
            let mut all: Vec<(usize, DateTime<Utc>)> = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                let mut s = r.next_slot_after(at(10 * D) - Duration::seconds(1));
                while let Some(t) = s.filter(|t| *t < at(12 * D)) {
                    all.push((i, t));
                    s = r.next_slot_after(t);
                }
            }
            for &(i, t) in &all {
                let g = group_of(&rules, i, t);
                prop_assert!(g.members.contains(&(i, t)));
                prop_assert_eq!(g.members[0], (g.leader, g.start));
                let mut seen = std::collections::HashSet::new();
                for &(j, s) in &g.members {
                    prop_assert!(seen.insert(j), "one slot per rule: {:?}", g);
                    prop_assert!(s >= g.start && s < g.start + rules[g.leader].window());
                    prop_assert!(!longer(rules[j].retention(), rules[g.winner].retention()));
                    prop_assert_eq!(&group_of(&rules, j, s), &g, "member {} {} disagrees", j, s);
                }
            }
        }
    }
}
