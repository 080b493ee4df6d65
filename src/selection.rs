//! Pure: tag selections. A `[[backup]]` with `select_tags` instead of `resource_arn` stands for
//! every EC2 instance whose tags match; each becomes a target named `{target}-{instance id}`
//! (stable across refreshes, restarts and replicas: it is part of execution names).
//!
//! What is here: the spec of a selection ([`Selection`]), which resources it keeps
//! ([`Selection::keeps`]), expanding a resolved set into targets ([`Selection::expand`]) and a
//! whole config ([`effective`]), diffing two sets ([`diff`]), and the failure streak and backoff
//! of a selection's refreshes ([`Streak`]). The calls are in [`crate::aws::tagging`]; the loop
//! that makes them is [`crate::refresh`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::arn::InstanceArn;
use crate::aws::{TagQuery, TaggedResource};
use crate::model::{Config, Rule, Selection};

/// GetResources' `ResourceTypeFilters` for EC2 instances.
pub const RESOURCE_TYPE: &str = "ec2:instance";
/// GetResources takes at most this many tag filters (keys).
pub const MAX_TAG_KEYS: usize = 50;
/// The id a template's placeholder ARN carries (never fired: templates are not targets).
pub const TEMPLATE_INSTANCE: &str = "i-00000000000000000";

/// The instance ids a selection matched at one refresh, sorted.
pub type Set = Arc<BTreeSet<String>>;

impl Selection {
    /// True when `other` searches the same instances (its last resolved set still holds).
    pub fn same_search(&self, other: &Selection) -> bool {
        self.select == other.select
            && self.exclude == other.exclude
            && self.region == other.region
            && self.account == other.account
            && self.partition == other.partition
    }

    /// The GetResources query: the select tags as filters (ANDed by the service).
    pub fn query(&self) -> TagQuery {
        TagQuery {
            region: self.region.clone(),
            resource_types: vec![RESOURCE_TYPE.to_string()],
            tag_filters: self
                .select
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
        }
    }

    /// The instance id of `r` when the selection keeps it: an instance of its account and
    /// region, every select tag present with its value (the service filtered already; checked
    /// again), no exclude tag with its value.
    pub fn keeps<'a>(&self, r: &'a TaggedResource) -> Option<&'a str> {
        let arn = InstanceArn::parse(&r.arn).ok()?;
        if arn.region() != self.region || arn.account() != self.account {
            return None;
        }
        let has = |k: &String, v: &String| r.tags.iter().any(|(tk, tv)| tk == k && tv == v);
        if !self.select.iter().all(|(k, v)| has(k, v))
            || self.exclude.iter().any(|(k, v)| has(k, v))
        {
            return None;
        }
        let id = r.arn.rsplit('/').next()?;
        Some(id)
    }

    /// The set of instance ids the selection keeps out of a GetResources answer.
    pub fn resolve(&self, found: &[TaggedResource]) -> BTreeSet<String> {
        found
            .iter()
            .filter_map(|r| self.keeps(r))
            .map(str::to_string)
            .collect()
    }

    /// The name of the target that backs up `instance_id`.
    pub fn target_name(&self, instance_id: &str) -> String {
        format!("{}-{instance_id}", self.name)
    }

    /// True when `target` is the name of one of this selection's instances.
    pub fn owns(&self, target: &str) -> bool {
        target
            .strip_prefix(self.name.as_str())
            .is_some_and(|rest| rest.starts_with("-i-"))
    }

    /// The names of this selection's instance targets in a resolved config, each once.
    pub fn instance_names<'a>(&self, config: &'a Config) -> Vec<&'a str> {
        let mut names: Vec<&str> = config
            .rules
            .iter()
            .filter(|t| self.owns(&t.name))
            .map(|t| &*t.name)
            .collect();
        names.dedup();
        names
    }

    /// The targets of `ids` (each instance: one per rule, in the templates' order).
    pub fn expand(&self, ids: &BTreeSet<String>) -> Vec<Arc<Rule>> {
        let mut out = Vec::with_capacity(ids.len() * self.templates.len());
        for id in ids {
            let arn = format!(
                "arn:{}:ec2:{}:{}:instance/{id}",
                self.partition, self.region, self.account
            );
            let Ok(resource_arn) = InstanceArn::parse(&arn) else {
                continue;
            };
            let name: Arc<str> = self.target_name(id).into();
            for t in &self.templates {
                out.push(Arc::new(Rule {
                    name: name.clone(),
                    resource_arn: resource_arn.clone(),
                    settings: t.settings.clone(),
                }));
            }
        }
        out
    }
}

/// The config the scheduler runs: the explicit targets, then each resolved selection's
/// targets (in file order), with the overlap rule's instances recomputed over all of them. An
/// unresolved selection contributes nothing yet.
pub fn effective(base: &Config, resolved: &HashMap<String, Set>) -> Config {
    let mut config = base.clone();
    if base.selections.is_empty() {
        return config;
    }
    for s in &base.selections {
        if let Some(ids) = resolved.get(&s.name) {
            config.rules.extend(s.expand(ids));
        }
    }
    config.instances = crate::model::Instances::of(&config.rules);
    config
}

/// What a refresh changed in one selection's set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Instance ids newly selected, sorted.
    pub added: Vec<String>,
    /// Instance ids no longer selected, sorted.
    pub removed: Vec<String>,
}

impl Change {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The change from `old` (None: never resolved) to `new`.
pub fn diff(old: Option<&BTreeSet<String>>, new: &BTreeSet<String>) -> Change {
    let empty = BTreeSet::new();
    let old = old.unwrap_or(&empty);
    Change {
        added: new.difference(old).cloned().collect(),
        removed: old.difference(new).cloned().collect(),
    }
}

/// What the refresh loop does after a failed refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait this long before the next try.
    pub after: Duration,
    /// True for the first failure of a streak: log it (later ones are only counted).
    pub log: bool,
}

/// A selection's refresh failures in a row, and the backoff they earn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    failures: u32,
}

/// The first retry's wait; it doubles per failure.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

impl Streak {
    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A refresh failed: when to retry (doubling from [`RETRY_BASE`], never later than the
    /// refresh interval), and whether this failure starts a streak.
    pub fn failed(&mut self, interval: Duration) -> Retry {
        self.failures = self.failures.saturating_add(1);
        let doubling = RETRY_BASE.saturating_mul(1 << (self.failures - 1).min(16));
        Retry {
            after: doubling.min(interval.max(RETRY_BASE)),
            log: self.failures == 1,
        }
    }

    /// A refresh succeeded: the length of the streak it ended (0: there was none).
    pub fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:b";

    fn config(extra: &str) -> Config {
        crate::config::parse(
            &format!(
                "state_machine_arn = \"{SM}\"\n\n[[backup]]\nname = \"web\"\nselect_tags = {{ backup = \"daily\", env = \"prod\" }}\nexclude_tags = {{ skip = \"true\" }}\nschedule = \"0 3 * * *\"\ndelete_after_days = 7\n{extra}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn res(id: &str, tags: &[(&str, &str)]) -> TaggedResource {
        TaggedResource {
            arn: format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}"),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const A: &str = "i-0000000000000000a";
    const B: &str = "i-0000000000000000b";
    const C: &str = "i-0000000000000000c";

    #[test]
    fn keeps_instances_with_every_select_tag_and_no_exclude_tag() {
        let c = config("");
        let s = &c.selections[0];
        let found = [
            res(A, &[("backup", "daily"), ("env", "prod")]),
            res(B, &[("backup", "daily"), ("env", "prod"), ("skip", "true")]),
            res(C, &[("backup", "daily"), ("env", "dev")]),
            // Another region or account, or not an instance: never kept.
            TaggedResource {
                arn: "arn:aws:ec2:eu-west-1:123456789012:instance/i-0000000000000000d".into(),
                tags: vec![
                    ("backup".into(), "daily".into()),
                    ("env".into(), "prod".into()),
                ],
            },
            TaggedResource {
                arn: "arn:aws:ec2:us-east-1:123456789012:volume/vol-1".into(),
                tags: vec![
                    ("backup".into(), "daily".into()),
                    ("env".into(), "prod".into()),
                ],
            },
        ];
        assert_eq!(s.resolve(&found), BTreeSet::from([A.to_string()]));
        let q = s.query();
        assert_eq!(q.resource_types, vec!["ec2:instance"]);
        assert_eq!(
            q.tag_filters,
            vec![
                ("backup".to_string(), vec!["daily".to_string()]),
                ("env".to_string(), vec!["prod".to_string()])
            ]
        );
        assert_eq!(q.region, "us-east-1");
    }

    #[test]
    fn expansion_names_targets_from_the_selection_and_the_instance_id() {
        let c = config("");
        let s = &c.selections[0];
        let ids = BTreeSet::from([B.to_string(), A.to_string()]);
        let targets = s.expand(&ids);
        let names: Vec<&str> = targets.iter().map(|t| &*t.name).collect();
        assert_eq!(
            names,
            vec!["web-i-0000000000000000a", "web-i-0000000000000000b"]
        );
        assert_eq!(
            targets[0].resource_arn.as_str(),
            "arn:aws:ec2:us-east-1:123456789012:instance/i-0000000000000000a"
        );
        assert_eq!(targets[0].settings.delete_after_days, 7);
        // The execution name: the same on every refresh, restart and replica.
        let slot = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            targets[0].scheduled_name(slot),
            "web-i-0000000000000000a-20260102T030000Z"
        );
    }

    #[test]
    fn effective_config_holds_explicit_and_resolved_targets_and_merges_shared_instances() {
        let c = config(&format!(
            "\n[[backup]]\nname = \"pinned\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/{A}\"\nschedule = \"0 3 * * *\"\ndelete_after_days = 90\n"
        ));
        assert_eq!(c.rules.len(), 1, "the selection is no target by itself");
        let unresolved = effective(&c, &HashMap::new());
        assert_eq!(unresolved.rules.len(), 1);
        let resolved = HashMap::from([(
            "web".to_string(),
            Arc::new(BTreeSet::from([A.to_string(), B.to_string()])),
        )]);
        let e = effective(&c, &resolved);
        let names: Vec<&str> = e.rules.iter().map(|t| &*t.name).collect();
        assert_eq!(
            names,
            vec![
                "pinned",
                "web-i-0000000000000000a",
                "web-i-0000000000000000b"
            ]
        );
        // A is both pinned and selected: its two rules merge, the longest retention wins.
        assert_eq!(e.instances.len(), 1);
        let slot = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let decision = e.instances.decide(&e.rules[1], slot);
        let (_, winner, _) = decision.covering();
        assert_eq!(&*winner.name, "pinned");
        assert_eq!(winner.settings.delete_after_days, 90);
    }

    #[test]
    fn diff_names_added_and_removed_ids() {
        let old = BTreeSet::from([A.to_string(), B.to_string()]);
        let new = BTreeSet::from([B.to_string(), C.to_string()]);
        let d = diff(Some(&old), &new);
        assert_eq!(d.added, vec![C.to_string()]);
        assert_eq!(d.removed, vec![A.to_string()]);
        assert!(diff(Some(&new), &new).is_empty());
        assert_eq!(diff(None, &new).added.len(), 2);
    }

    #[test]
    fn a_streak_is_logged_once_and_backs_off_up_to_the_interval() {
        let mut s = Streak::default();
        let interval = Duration::from_secs(10);
        let waits: Vec<(u64, bool)> = (0..6)
            .map(|_| {
                let r = s.failed(interval);
                (r.after.as_secs(), r.log)
            })
            .collect();
        assert_eq!(
            waits,
            vec![
                (1, true),
                (2, false),
                (4, false),
                (8, false),
                (10, false),
                (10, false)
            ]
        );
        assert_eq!(s.succeeded(), 6);
        assert_eq!(s.succeeded(), 0);
        assert!(s.failed(interval).log, "a new streak is logged again");
    }
}
