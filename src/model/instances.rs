//! The rules of every instance that has more than one: the overlap rule's input.

use std::sync::Arc;

use crate::arn::InstanceArn;
use crate::fasthash::FastMap;

use super::rule::Rule;

/// The enabled rules of every instance that has more than one, by instance ARN. Instances with
/// one rule are not kept: their slots never merge (most fleets; it keeps 100,000 targets small).
/// What a fired slot becomes is [`crate::rules`]' `Instances::decide`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instances(Arc<FastMap<InstanceArn, Arc<[Arc<Rule>]>>>);

impl Instances {
    /// Groups `rules` (in config order, which is the overlap rule's tie-break).
    pub fn of(rules: &[Arc<Rule>]) -> Self {
        // The rules of one target are consecutive: each run of one instance is hashed once and
        // becomes its slice at once; an instance met again further on (another `[[backup]]`
        // naming it) has its rules joined in config order. Keyed by the ARN the rules already
        // share: no copy of its text per instance.
        let enabled: Vec<&Arc<Rule>> = rules.iter().filter(|r| r.settings.enabled).collect();
        let runs = || enabled.chunk_by(|a, b| a.resource_arn == b.resource_arn);
        // Sized by the runs: a plan fleet's map is its instances', not its rules' (no shrink).
        let mut by: FastMap<InstanceArn, Arc<[Arc<Rule>]>> =
            FastMap::with_capacity_and_hasher(runs().count(), Default::default());
        for run in runs() {
            match by.entry(run[0].resource_arn.clone()) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(run.iter().copied().cloned().collect());
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let joined = o.get().iter().chain(run.iter().copied()).cloned().collect();
                    o.insert(joined);
                }
            }
        }
        by.retain(|_, rules| rules.len() > 1);
        if by.len() < by.capacity() / 4 {
            by.shrink_to_fit();
        }
        Instances(Arc::new(by))
    }

    /// The rules of `r`'s instance, when it has more than one.
    pub fn rules_of(&self, r: &Rule) -> Option<&Arc<[Arc<Rule>]>> {
        self.0.get(r.resource_arn.as_str())
    }

    /// Instances with more than one rule.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no instance has more than one rule.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
