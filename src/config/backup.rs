//! One `[[backup]]` into its rules: named passes over the raw target (name, instance, hooks,
//! schedules), then one [`Rule`] per schedule with its checked windows, retention and copies.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use toml::Spanned;

use super::copy_to::copy_destinations;
use super::diagnostics::{Report, line_col};
use super::plans::{MIN_START_WINDOW_MINUTES, Plan, check_rules, merge, over};
use super::raw::{RawDocument, RawPolicy, RawRules, RawTarget};
use super::selection::selection_spec;
use super::values::{document_field, duration_at, max_downtime, zone_field};
use crate::arn::{InstanceArn, StateMachineArn};
use crate::fasthash::{FastMap, FastSet};
use crate::hooks::{self, Document, OnPreHookFailure, PostHookWhen};
use crate::model::{Restores, Rule, RuleSettings};
use crate::schedule::Schedule;

/// One rule of a target before its values are checked: rule name, schedule, settings, path.
pub(super) type RuleDraft = (Option<Arc<str>>, Option<Arc<Schedule>>, RawPolicy, Arc<str>);

/// Checked restore settings by the start of their `restore` and `restore_test` tables and
/// the zone.
pub(super) type RestoresByTable =
    FastMap<(Option<usize>, Option<usize>, Tz), Option<Arc<Restores>>>;

/// Targets validated in file order, with the names, execution-name prefixes and settings they
/// took ([`Targets::take`]).
pub(super) struct ValidatedRun {
    pub(super) rules: Vec<Arc<Rule>>,
    pub(super) selections: Vec<Arc<crate::model::Selection>>,
    pub(super) names: FastMap<Arc<str>, Range<usize>>,
    pub(super) exec_parts: FastMap<String, Option<String>>,
    pub(super) settings: FastSet<Arc<RuleSettings>>,
}

/// Every target of a file, validated.
pub(super) struct AllRules {
    pub(super) rules: Vec<Arc<Rule>>,
    pub(super) selections: Vec<Arc<crate::model::Selection>>,
    /// Where each target name is written, per run validated apart.
    pub(super) names: Vec<FastMap<Arc<str>, Range<usize>>>,
}

impl ValidatedRun {
    /// All the targets, when these are all.
    pub(super) fn all(self) -> AllRules {
        AllRules {
            rules: self.rules,
            selections: self.selections,
            names: vec![self.names],
        }
    }

    /// The targets of this run followed by those of `later` (validated apart, from where this
    /// run ends): the same as one run over both, unless a name or an execution-name prefix of
    /// `later` is taken in this one (then None: that message is one run's to give). Settings
    /// alike are shared across both.
    pub(super) fn join(self, later: ValidatedRun) -> Option<AllRules> {
        let clash = later.names.keys().any(|n| self.names.contains_key(n))
            || later
                .exec_parts
                .keys()
                .any(|p| self.exec_parts.contains_key(p));
        if clash {
            return None;
        }
        let mut same: FastMap<*const RuleSettings, Arc<RuleSettings>> = FastMap::default();
        for s in &later.settings {
            if let Some(mine) = self.settings.get(s) {
                same.insert(Arc::as_ptr(s), mine.clone());
            }
        }
        let mut targets = self.rules;
        targets.reserve_exact(later.rules.len());
        for mut t in later.rules {
            if let (Some(mine), Some(t)) =
                (same.get(&Arc::as_ptr(&t.settings)), Arc::get_mut(&mut t))
            {
                t.settings = mine.clone();
            }
            targets.push(t);
        }
        let mut selections = self.selections;
        selections.extend(later.selections);
        Some(AllRules {
            rules: targets,
            selections,
            names: vec![self.names, later.names],
        })
    }
}

/// The longest target name we accept.
pub(super) const MAX_TARGET_NAME_LEN: usize = 128;

/// What validating a run of targets in file order shares.
pub(super) struct Targets<'a> {
    pub(super) defaults: &'a RawPolicy,
    pub(super) default_tz: Tz,
    pub(super) default_machine: Option<&'a StateMachineArn>,
    pub(super) plans: &'a HashMap<String, Plan>,
    pub(super) seen: FastMap<Arc<str>, Range<usize>>,
    /// Execution-name prefixes taken, with the rule's slot key when it differs from the prefix.
    pub(super) exec_parts: FastMap<String, Option<String>>,
    /// Plan rules' schedules, parsed once per zone (100,000 targets on one plan share three).
    pub(super) schedules: FastMap<(usize, usize, Tz), Option<Arc<Schedule>>>,
    /// Every distinct [`Settings`] so far: targets set alike share one.
    pub(super) settings: FastSet<Arc<RuleSettings>>,
    /// How many `[[backup]]`s the file has.
    pub(super) count: usize,
    /// The empty `copy_to` every rule without copies shares.
    pub(super) no_copies: Arc<[crate::copies::Destination]>,
    /// Restore settings by where their tables are written and the zone: a `[defaults]` or
    /// plan table is checked once for all its targets.
    pub(super) restores: RestoresByTable,
    /// The restores of every target without any.
    pub(super) no_restores: Arc<Restores>,
}

impl Targets<'_> {
    /// Validates `raw_targets` in file order.
    pub(super) fn take(
        mut self,
        r: &mut Report<'_>,
        raw_targets: impl Iterator<Item = (String, Range<usize>, (RawTarget, RawRules))>,
    ) -> ValidatedRun {
        let mut targets = Vec::with_capacity(self.count);
        let mut selections = Vec::new();
        for (path, span, (mut t, rules)) in raw_targets {
            let select = selection_spec(r, &path, &mut t, self.default_machine);
            let validated = self.validate(r, &path, span, t, rules);
            match select {
                None => targets.extend(validated.into_iter().map(Arc::new)),
                Some((false, _, _)) => {}
                Some(_) if validated.is_empty() => {}
                Some((true, select, exclude)) => {
                    let sm = &validated[0].settings.state_machine;
                    selections.push(Arc::new(crate::model::Selection {
                        name: validated[0].name.to_string(),
                        select,
                        exclude,
                        partition: sm.partition.clone(),
                        region: sm.region.clone(),
                        account: sm.account.clone(),
                        templates: validated.into_iter().map(Arc::new).collect(),
                    }));
                }
            }
        }
        ValidatedRun {
            rules: targets,
            selections,
            names: self.seen,
            exec_parts: self.exec_parts,
            settings: self.settings,
        }
    }

    /// The shared copy of `settings`.
    pub(super) fn shared(&mut self, settings: RuleSettings) -> Arc<RuleSettings> {
        if let Some(s) = self.settings.get(&settings) {
            return s.clone();
        }
        let s = Arc::new(settings);
        self.settings.insert(s.clone());
        s
    }
}

/// The longest start window the state machine takes (a week).
const MAX_START_WINDOW_MINUTES: u32 = 7 * 24 * 60;
/// The longest complete window the state machine takes (30 days).
const MAX_COMPLETE_WINDOW_MINUTES: u32 = 30 * 24 * 60;
/// The longest raw `pre_command` / `post_command` the state machine takes.
const MAX_COMMAND_CHARS: usize = 4096;

/// Where a `[[backup]]` is written (`backup[3]` and its table), for messages.
struct At<'p> {
    path: &'p str,
    span: Range<usize>,
}

impl At<'_> {
    /// The field path of `key` in this target.
    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

/// What a target backs up, and with which machine.
struct Place {
    resource_arn: Option<InstanceArn>,
    tz: Option<Tz>,
    state_machine: Option<StateMachineArn>,
}

/// A target's hooks and backup options: every rule of it runs them.
struct TargetHooks {
    pre_command: Option<Arc<str>>,
    post_command: Option<Arc<str>>,
    pre_document: Option<Arc<Document>>,
    post_document: Option<Arc<Document>>,
    post_hook_when: PostHookWhen,
    hook_max_downtime: Duration,
    on_pre_hook_failure: OnPreHookFailure,
    windows_vss: bool,
}

impl Targets<'_> {
    /// Validates one `[[backup]]` into one [`Rule`] per schedule (none if anything is wrong),
    /// pass by pass; each pass reports every problem it finds.
    pub(super) fn validate(
        &mut self,
        r: &mut Report<'_>,
        path: &str,
        span: Range<usize>,
        t: RawTarget,
        inline: RawRules,
    ) -> Vec<Rule> {
        let at = At { path, span };
        let (name, mut ok) = self.check_name(r, &at, &t);
        let place = self.check_place(r, &at, &t);
        // The rules: the target's own schedule, a plan, or inline rules, over [defaults].
        let own = merge(&t, self.defaults);
        let hooks = check_hooks(r, &at, &t, &own);
        let restores = self.check_restores(r, &at, &t, &own, place.tz);
        ok &= restores.is_some();
        let (units, units_ok) = self.check_schedules(r, &at, &t, own, place.tz, inline);
        ok &= units_ok;
        self.reserve_prefixes(units.len());
        let mut out = Vec::with_capacity(units.len());
        for unit in units {
            if ok && !name.is_empty() {
                ok &= self.take_prefix(r, &at, &t, &name, unit.0.as_deref());
            }
            let restores = restores.as_ref().unwrap_or(&self.no_restores).clone();
            let (rule, good) = self.rule_of(r, &at, &t, &name, &place, (&hooks, restores), unit);
            ok &= good;
            out.extend(rule);
        }
        if ok { out } else { Vec::new() }
    }

    /// The restores pass: the nearest `restore` and `restore_test` of target, plan and
    /// `[defaults]`, each table checked once.
    fn check_restores(
        &mut self,
        r: &mut Report<'_>,
        at: &At<'_>,
        t: &RawTarget,
        own: &RawPolicy,
        tz: Option<Tz>,
    ) -> Option<Arc<Restores>> {
        let plan = t
            .plan
            .as_ref()
            .and_then(|p| self.plans.get(p.get_ref()))
            .map(|p| &p.restores);
        let plan_path = plan.map_or("", |p| p.path.as_str());
        let restore = nearest(
            "restore",
            at,
            [
                t.restore.as_ref(),
                plan.and_then(|p| p.restore.as_ref()),
                own.restore.as_ref(),
            ],
            plan_path,
        );
        let test = nearest(
            "restore_test",
            at,
            [
                t.restore_test.as_ref(),
                plan.and_then(|p| p.restore_test.as_ref()),
                own.restore_test.as_ref(),
            ],
            plan_path,
        );
        if restore.is_none() && test.is_none() {
            return Some(self.no_restores.clone());
        }
        let zone = tz.unwrap_or(self.default_tz);
        let key = (
            restore.as_ref().map(|(m, _)| m.span().start),
            test.as_ref().map(|(m, _)| m.span().start),
            zone,
        );
        if let Some(done) = self.restores.get(&key) {
            return done.clone();
        }
        let checked = super::restore::restores(r, restore, test, zone);
        self.restores.insert(key, checked.clone());
        checked
    }

    /// The name pass: present, well formed, not taken.
    fn check_name(&mut self, r: &mut Report<'_>, at: &At<'_>, t: &RawTarget) -> (Arc<str>, bool) {
        let Some(n) = &t.name else {
            r.push(
                at.span.clone(),
                at.field("name"),
                "missing (every [[backup]] needs a unique name)",
            );
            return (Arc::from(""), false);
        };
        let s = n.get_ref();
        let name: Arc<str> = Arc::from(s.as_str());
        let good_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if s.is_empty() || s.len() > MAX_TARGET_NAME_LEN || !good_chars {
            r.push(
                n.span(),
                at.field("name"),
                format!("`{s}`: use 1-{MAX_TARGET_NAME_LEN} of A-Z a-z 0-9 - _ ."),
            );
            return (name, false);
        }
        if let Some(first) = self.seen.get(s.as_str()) {
            let (line, _) = line_col(r.text, first.start);
            r.push(
                n.span(),
                at.field("name"),
                format!("`{s}` is used already (line {line})"),
            );
            return (name, false);
        }
        self.seen.insert(name.clone(), n.span());
        (name, true)
    }

    /// The instance pass: the instance, the zone and the machine, in one region and account.
    fn check_place(&self, r: &mut Report<'_>, at: &At<'_>, t: &RawTarget) -> Place {
        let resource_arn = match &t.resource_arn {
            None => {
                r.push(
                    at.span.clone(),
                    at.field("resource_arn"),
                    "missing (the EC2 instance ARN to back up, or select_tags)",
                );
                None
            }
            Some(a) => InstanceArn::parse(a.get_ref())
                .map_err(|e| r.push(a.span(), at.field("resource_arn"), e))
                .ok(),
        };
        let tz = match &t.timezone {
            Some(z) => zone_field(r, z, &at.field("timezone")),
            None => Some(self.default_tz),
        };
        let state_machine = match &t.state_machine_arn {
            Some(s) => StateMachineArn::parse(s.get_ref())
                .map_err(|e| r.push(s.span(), at.field("state_machine_arn"), e))
                .ok(),
            None => {
                if self.default_machine.is_none() {
                    r.push(
                        at.span.clone(),
                        at.field("state_machine_arn"),
                        "no state machine: set state_machine_arn at the top or in this target",
                    );
                }
                self.default_machine.cloned()
            }
        };
        if let (Some(res), Some(sm)) = (&resource_arn, &state_machine) {
            let written = t
                .resource_arn
                .as_ref()
                .map(Spanned::span)
                .unwrap_or(at.span.clone());
            if res.region() != sm.region {
                r.push(
                    written,
                    at.field("resource_arn"),
                    format!(
                        "the instance is in {} but its state machine runs in {}: AWS Backup backs up resources in its own region",
                        res.region(), sm.region
                    ),
                );
            } else if res.account() != sm.account || res.partition() != sm.partition {
                r.push(
                    written,
                    at.field("resource_arn"),
                    format!(
                        "the instance is in account {} but its state machine in {}: StartBackupJob needs the same account",
                        res.account(), sm.account
                    ),
                );
            }
        }
        Place {
            resource_arn,
            tz,
            state_machine,
        }
    }
}

/// The hooks pass: commands and documents (a hook is one or the other) and their timing. A
/// target's own document is checked here; an inherited one was checked in `[defaults]`.
fn check_hooks(r: &mut Report<'_>, at: &At<'_>, t: &RawTarget, policy: &RawPolicy) -> TargetHooks {
    let command = |c: &Option<Spanned<String>>, key: &str, r: &mut Report<'_>| {
        c.as_ref().and_then(|c| {
            if c.get_ref().trim().is_empty() {
                r.push(
                    c.span(),
                    at.field(key),
                    "empty command (leave the key out instead)",
                );
                None
            } else if c.get_ref().chars().count() > MAX_COMMAND_CHARS {
                r.push(
                    c.span(),
                    at.field(key),
                    format!(
                        "{} characters; the state machine takes at most {MAX_COMMAND_CHARS}                          (put a longer script in an SSM document)",
                        c.get_ref().chars().count()
                    ),
                );
                None
            } else {
                Some(Arc::<str>::from(c.get_ref().as_str()))
            }
        })
    };
    let pre_command = command(&t.pre_command, "pre_command", r);
    let post_command = command(&t.post_command, "post_command", r);
    let document = |own: &Option<Spanned<RawDocument>>,
                    merged: &Option<Spanned<RawDocument>>,
                    key: &str,
                    r: &mut Report<'_>| match (own, merged) {
        (Some(raw), _) => {
            let (doc, good) = document_field(r, raw, &at.field(key));
            doc.filter(|_| good)
        }
        (None, Some(raw)) => {
            document_field(
                &mut Report {
                    diags: Vec::new(),
                    ..*r
                },
                raw,
                "",
            )
            .0
        }
        (None, None) => None,
    };
    let pre_document =
        document(&t.pre_document, &policy.pre_document, "pre_document", r).map(Arc::new);
    let post_document =
        document(&t.post_document, &policy.post_document, "post_document", r).map(Arc::new);
    for (cmd, doc, key) in [
        (&t.pre_command, &policy.pre_document, "pre_command"),
        (&t.post_command, &policy.post_document, "post_command"),
    ] {
        if let (Some(c), Some(_)) = (cmd, doc) {
            r.push(
                c.span(),
                at.field(key),
                format!(
                    "the target has a {} too: a hook is either a document or a command",
                    key.replace("command", "document")
                ),
            );
        }
    }
    let hook_max_downtime = match &policy.hook_max_downtime {
        None => hooks::DEFAULT_MAX_DOWNTIME,
        Some(s) => max_downtime(s.get_ref()).unwrap_or_else(|e| {
            // An inherited bad default was reported (and dropped) in [defaults].
            r.push(s.span(), at.field("hook_max_downtime"), e);
            hooks::DEFAULT_MAX_DOWNTIME
        }),
    };
    TargetHooks {
        pre_command,
        post_command,
        pre_document,
        post_document,
        post_hook_when: policy
            .post_hook_when
            .clone()
            .map(Spanned::into_inner)
            .unwrap_or_default(),
        hook_max_downtime,
        on_pre_hook_failure: policy
            .on_pre_hook_failure
            .clone()
            .map(Spanned::into_inner)
            .unwrap_or_default(),
        windows_vss: policy.windows_vss.clone().is_some_and(Spanned::into_inner),
    }
}

impl Targets<'_> {
    /// The schedules pass: the target's own schedule, a plan's rules or its inline rules, each
    /// with its zone and its values over the target's (`own`).
    fn check_schedules(
        &mut self,
        r: &mut Report<'_>,
        at: &At<'_>,
        t: &RawTarget,
        own: RawPolicy,
        tz: Option<Tz>,
        inline: RawRules,
    ) -> (Vec<RuleDraft>, bool) {
        let mut ok = true;
        let mut units: Vec<RuleDraft> = Vec::new();
        let compact = t.plan.is_some() || inline.is_some();
        let mut conflict = false;
        if let (Some(s), true) = (&t.schedule, compact) {
            r.push(
                s.span(),
                at.field("schedule"),
                "a target has either its own schedule or rules (plan = \"…\" or [[backup.rule]]), not both",
            );
            conflict = true;
        }
        if let (Some(p), Some((rspan, _))) = (&t.plan, &inline) {
            r.push(
                p.span(),
                at.field("plan"),
                format!(
                    "a target has either plan = \"…\" or [[backup.rule]]s (line {}), not both",
                    line_col(r.text, rspan.start).0
                ),
            );
            conflict = true;
        }
        ok &= !conflict;
        match (&t.schedule, &t.plan, inline) {
            (_, _, _) if conflict => {}
            (None, None, None) => {
                r.push(
                    at.span.clone(),
                    at.field("schedule"),
                    "missing (a cron expression, plan = \"…\" or [[backup.rule]]s)",
                );
                ok = false;
            }
            (Some(s), None, None) => {
                let schedule = tz.and_then(|tz| {
                    Schedule::parse(s.get_ref(), tz)
                        .map_err(|e| r.push(s.span(), at.field("schedule"), e.message))
                        .ok()
                        .map(Arc::new)
                });
                units.push((None, schedule, own, Arc::from(at.path)));
            }
            (None, Some(p), None) => ok &= self.plan_units(r, at, p, &own, tz, &mut units),
            (None, None, Some((rspan, rules))) => {
                if rules.is_empty() {
                    r.push(rspan, at.field("rule"), "no rules");
                    ok = false;
                }
                let checked = check_rules(r, rules);
                ok &= checked.usable;
                for rule in checked.rules {
                    let Some(zone) = rule.tz.or(tz) else {
                        continue;
                    };
                    let s = rule.raw.schedule.as_ref().expect("checked");
                    let schedule = Schedule::parse(s.get_ref(), zone)
                        .map_err(|e| r.push(s.span(), format!("{}.schedule", rule.path), e.message))
                        .ok()
                        .map(Arc::new);
                    units.push((Some(rule.name), schedule, over(&rule.raw, &own), rule.path));
                }
            }
            _ => {}
        }

        (units, ok)
    }

    /// The rules of the plan `p` names, each over the target's values (`own`); false when
    /// there is no such plan or it is unusable (reported once, where the plan is).
    fn plan_units(
        &mut self,
        r: &mut Report<'_>,
        at: &At<'_>,
        p: &Spanned<String>,
        own: &RawPolicy,
        tz: Option<Tz>,
        units: &mut Vec<RuleDraft>,
    ) -> bool {
        let Some(plan) = self.plans.get(p.get_ref()) else {
            let mut known: Vec<&str> = self.plans.keys().map(String::as_str).collect();
            known.sort_unstable();
            r.push(
                p.span(),
                at.field("plan"),
                format!(
                    "no [[plan]] named `{}` (plans: {})",
                    p.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            return false;
        };
        if !plan.usable {
            return false;
        }
        // Plans are not added to while targets are validated: the address names it.
        let plan_index = plan as *const Plan as usize;
        for (i, rule) in plan.rules.iter().enumerate() {
            let Some(zone) = rule.tz.or(tz) else {
                continue;
            };
            let schedule = self
                .schedules
                .entry((plan_index, i, zone))
                .or_insert_with(|| {
                    let s = rule.raw.schedule.as_ref().expect("checked");
                    Schedule::parse(s.get_ref(), zone)
                        .map_err(|e| r.push(s.span(), format!("{}.schedule", rule.path), e.message))
                        .ok()
                        .map(Arc::new)
                })
                .clone();
            units.push((
                Some(rule.name.clone()),
                schedule,
                over(&rule.raw, own),
                rule.path.clone(),
            ));
        }
        true
    }

    /// Room for every target still to come with as many rules as this one (four at most): a
    /// plan fleet grows the prefix map once, not by doubling through 300,000 keys.
    fn reserve_prefixes(&mut self, rules: usize) {
        if self.exec_parts.capacity() - self.exec_parts.len() < rules {
            let to_come = self.count.saturating_sub(self.seen.len()) + 1;
            self.exec_parts
                .reserve(rules.clamp(1, 4).saturating_mul(to_come));
        }
    }

    /// The execution-name prefix pass: no two rules may start their execution names alike.
    fn take_prefix(
        &mut self,
        r: &mut Report<'_>,
        at: &At<'_>,
        t: &RawTarget,
        name: &str,
        rule: Option<&str>,
    ) -> bool {
        let slot_key = match rule {
            Some(rule) => format!("{name}-{rule}"),
            None => name.to_string(),
        };
        // Keyed by the prefix, with the slot key beside it only when they differ: no copy of
        // either for the usual short plain name.
        let (prefix, full) = if crate::execution::is_plain_part(&slot_key, 63) {
            (slot_key, None)
        } else {
            (crate::execution::target_part(&slot_key, 63), Some(slot_key))
        };
        match self.exec_parts.entry(prefix) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let (part, other) = (o.key(), o.get().as_deref().unwrap_or(o.key()));
                let mine = full.as_deref().unwrap_or(part);
                r.push(
                    t.name.as_ref().map_or(at.span.clone(), Spanned::span),
                    at.field("name"),
                    format!("`{mine}` and `{other}` give the same execution name prefix `{part}`"),
                );
                false
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(full);
                true
            }
        }
    }

    /// One rule of the target: its windows, retention and copies checked, its settings shared
    /// with every rule set alike. `None` when a part is missing (reported where it was).
    #[allow(clippy::too_many_arguments)] // the passes' results, each named
    fn rule_of(
        &mut self,
        r: &mut Report<'_>,
        at: &At<'_>,
        t: &RawTarget,
        name: &Arc<str>,
        place: &Place,
        (hooks, restores): (&TargetHooks, Arc<Restores>),
        (rule, schedule, policy, rule_path): RuleDraft,
    ) -> (Option<Rule>, bool) {
        let from_rule = rule.is_some().then_some(&*rule_path);
        let (windows, ok) = check_windows(r, at, &policy, from_rule);
        // Named where it was written: the target, [defaults], or the rule.
        let copy_path = || match &policy.copy_to {
            Some(c) if t.copy_to.as_ref().is_some_and(|o| o.span() == c.span()) => {
                at.field("copy_to")
            }
            Some(c)
                if self
                    .defaults
                    .copy_to
                    .as_ref()
                    .is_some_and(|o| o.span() == c.span()) =>
            {
                "defaults.copy_to".to_string()
            }
            _ => format!("{rule_path}.copy_to"),
        };
        let partition = place.state_machine.as_ref().map(|m| m.partition.as_str());
        let copy_to = match &policy.copy_to {
            None => Some(Vec::new()),
            Some(c) => copy_destinations(r, c, &copy_path(), partition, windows.delete_after_days),
        };
        let (Some(resource_arn), Some(schedule), Some(state_machine), Some(copy_to)) =
            (&place.resource_arn, schedule, &place.state_machine, copy_to)
        else {
            return (None, false);
        };
        let settings = RuleSettings {
            rule,
            schedule,
            state_machine: state_machine.clone(),
            enabled: t.enabled.as_ref().is_none_or(|e| *e.get_ref()),
            catch_up: policy.catch_up.map(Spanned::into_inner).unwrap_or_default(),
            starting_deadline: windows.starting_deadline,
            concurrency: policy
                .concurrency
                .map(Spanned::into_inner)
                .unwrap_or_default(),
            jitter: windows.jitter,
            start_window_minutes: windows.start_window_minutes,
            complete_window_minutes: windows.complete_window_minutes,
            delete_after_days: windows.delete_after_days,
            pre_command: hooks.pre_command.clone(),
            post_command: hooks.post_command.clone(),
            pre_document: hooks.pre_document.clone(),
            post_document: hooks.post_document.clone(),
            post_hook_when: hooks.post_hook_when,
            hook_max_downtime: hooks.hook_max_downtime,
            on_pre_hook_failure: hooks.on_pre_hook_failure,
            windows_vss: hooks.windows_vss,
            copy_to: if copy_to.is_empty() {
                self.no_copies.clone()
            } else {
                copy_to.into()
            },
            restores,
        };
        let rule = Rule {
            name: name.clone(),
            resource_arn: resource_arn.clone(),
            settings: self.shared(settings),
        };
        (Some(rule), ok)
    }
}

/// The first of the target's, its plan's (at `plan_path`) and `[defaults]`' (or the target's
/// own, merged) table `key`, with the field path it is reported under.
fn nearest<'a, T>(
    key: &str,
    at: &At<'_>,
    [mine, planned, defaults]: [Option<&'a Spanned<T>>; 3],
    plan_path: &str,
) -> super::restore::Written<'a, T> {
    mine.map(|m| (m, at.field(key)))
        .or_else(|| planned.map(|m| (m, format!("{plan_path}.{key}"))))
        .or_else(|| defaults.map(|m| (m, format!("defaults.{key}"))))
}

/// A rule's time windows and retention, checked.
struct Windows {
    starting_deadline: Duration,
    jitter: Duration,
    start_window_minutes: u32,
    complete_window_minutes: u32,
    delete_after_days: u32,
}

/// The windows pass of one rule: deadline, jitter, start and complete windows, retention. A
/// value's error names where it was written: the rule (`rule_path`, when the rule is one of a
/// plan or of `[[backup.rule]]`), the target or `[defaults]`.
fn check_windows(
    r: &mut Report<'_>,
    at: &At<'_>,
    policy: &RawPolicy,
    rule_path: Option<&str>,
) -> (Windows, bool) {
    let mut ok = true;
    let from_rule = rule_path.is_some();
    let field = |key: &str, from_rule: bool| match rule_path {
        Some(path) if from_rule => format!("{path}.{key}"),
        _ => at.field(key),
    };
    let starting_deadline = duration_at(
        r,
        &policy.starting_deadline,
        || field("starting_deadline", false),
        Duration::from_secs(3600),
    );
    let jitter = duration_at(r, &policy.jitter, || field("jitter", false), Duration::ZERO);
    if let (Some(j), false) = (&policy.jitter, jitter < starting_deadline) {
        r.push(
            j.span(),
            field("jitter", from_rule),
            "must be shorter than starting_deadline",
        );
        ok = false;
    }
    let start_window_minutes = policy
        .start_window_minutes
        .as_ref()
        .map_or(MIN_START_WINDOW_MINUTES, |v| *v.get_ref());
    if let Some(v) = &policy.start_window_minutes
        && *v.get_ref() < MIN_START_WINDOW_MINUTES
    {
        r.push(
            v.span(),
            field("start_window_minutes", false),
            format!("AWS Backup needs at least {MIN_START_WINDOW_MINUTES}"),
        );
        ok = false;
    }
    if let Some(v) = &policy.start_window_minutes
        && *v.get_ref() > MAX_START_WINDOW_MINUTES
    {
        r.push(
            v.span(),
            field("start_window_minutes", from_rule),
            format!("at most {MAX_START_WINDOW_MINUTES} (a week): the state machine refuses more"),
        );
        ok = false;
    }
    let complete_window_minutes = policy
        .complete_window_minutes
        .as_ref()
        .map_or(7 * 24 * 60, |v| *v.get_ref());
    if let Some(v) = &policy.complete_window_minutes
        && *v.get_ref() <= start_window_minutes
    {
        r.push(
            v.span(),
            field("complete_window_minutes", from_rule),
            "must be more than start_window_minutes",
        );
        ok = false;
    }
    if let Some(v) = &policy.complete_window_minutes
        && *v.get_ref() > MAX_COMPLETE_WINDOW_MINUTES
    {
        r.push(
            v.span(),
            field("complete_window_minutes", from_rule),
            format!(
                "at most {MAX_COMPLETE_WINDOW_MINUTES} (30 days): the state machine refuses more"
            ),
        );
        ok = false;
    }
    let delete_after_days = policy
        .delete_after_days
        .as_ref()
        .map_or(35, |v| *v.get_ref());
    if let Some(v) = &policy.delete_after_days
        && *v.get_ref() == 0
    {
        r.push(
            v.span(),
            field("delete_after_days", false),
            "must be at least 1",
        );
        ok = false;
    }
    let windows = Windows {
        starting_deadline,
        jitter,
        start_window_minutes,
        complete_window_minutes,
        delete_after_days,
    };
    (windows, ok)
}
