//! `[[plan]]`s and `[[backup.rule]]`s: rule lists checked once, and a rule's values over its
//! target's over `[defaults]`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use chrono_tz::Tz;
use toml::Spanned;

use super::diagnostics::{Report, line_col};
use super::raw::{RawPlan, RawPolicy, RawRestore, RawRestoreTest, RawRule, RawTarget};
use super::values::{parse_duration, zone_field};

/// AWS Backup's smallest start window.
pub const MIN_START_WINDOW_MINUTES: u32 = 60;

/// The longest rule name we accept (it is part of execution names).
pub(super) const MAX_RULE_NAME_LEN: usize = 32;

/// A `[[plan]]` after its rules were checked (each bad value reported once, then dropped).
pub(super) struct Plan {
    /// False when a rule of it is unusable: its targets are then left out, not reported again.
    pub(super) usable: bool,
    pub(super) rules: Vec<CheckedRule>,
    /// A `[[plan]]`'s own `restore` and `restore_test` (between its targets' and
    /// `[defaults]`'), with the plan's path.
    pub(super) restores: PlanRestores,
}

/// The restore settings a `[[plan]]` gives its targets.
#[derive(Default)]
pub(super) struct PlanRestores {
    pub(super) path: String,
    pub(super) restore: Option<Spanned<RawRestore>>,
    pub(super) restore_test: Option<Spanned<RawRestoreTest>>,
}

/// A rule whose own values were checked.
pub(super) struct CheckedRule {
    pub(super) path: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) raw: RawRule,
    /// Its own zone, if it names one.
    pub(super) tz: Option<Tz>,
}

/// Checks a list of rules (of a plan or a target): names, duplicates, and each value once.
pub(super) fn check_rules(r: &mut Report<'_>, rules: Vec<(String, Range<usize>, RawRule)>) -> Plan {
    let mut usable = !rules.is_empty();
    let mut names: HashMap<String, Range<usize>> = HashMap::new();
    let mut out = Vec::with_capacity(rules.len());
    for (path, span, mut raw) in rules {
        let f = |k: &str| format!("{path}.{k}");
        let name = match &raw.name {
            None => {
                r.push(span.clone(), f("name"), "missing (every rule needs a name)");
                None
            }
            Some(n) => {
                let s = n.get_ref();
                let good = s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
                if s.is_empty() || s.len() > MAX_RULE_NAME_LEN || !good {
                    r.push(
                        n.span(),
                        f("name"),
                        format!("`{s}`: use 1-{MAX_RULE_NAME_LEN} of A-Z a-z 0-9 - _"),
                    );
                    None
                } else if let Some(first) = names.get(s) {
                    let (line, _) = line_col(r.text, first.start);
                    r.push(
                        n.span(),
                        f("name"),
                        format!("two rules named `{s}` (the first on line {line})"),
                    );
                    None
                } else {
                    names.insert(s.clone(), n.span());
                    Some(Arc::<str>::from(s.as_str()))
                }
            }
        };
        if raw.schedule.is_none() {
            r.push(span.clone(), f("schedule"), "missing (a cron expression)");
        }
        let tz = raw
            .timezone
            .as_ref()
            .map(|z| zone_field(r, z, &f("timezone")));
        for (v, key) in [
            (&mut raw.starting_deadline, "starting_deadline"),
            (&mut raw.jitter, "jitter"),
        ] {
            if let Some(s) = v.as_ref()
                && let Err(e) = parse_duration(s.get_ref())
            {
                r.push(s.span(), f(key), e);
                *v = None;
            }
        }
        if let Some(v) = &raw.start_window_minutes
            && *v.get_ref() < MIN_START_WINDOW_MINUTES
        {
            r.push(
                v.span(),
                f("start_window_minutes"),
                format!("AWS Backup needs at least {MIN_START_WINDOW_MINUTES}"),
            );
            raw.start_window_minutes = None;
        }
        if let Some(v) = &raw.delete_after_days
            && *v.get_ref() == 0
        {
            r.push(v.span(), f("delete_after_days"), "must be at least 1");
            raw.delete_after_days = None;
        }
        match (name, &raw.schedule, tz) {
            (Some(name), Some(_), None | Some(Some(_))) => out.push(CheckedRule {
                path: path.into(),
                name,
                tz: tz.flatten(),
                raw,
            }),
            _ => usable = false,
        }
    }
    Plan {
        usable,
        rules: out,
        restores: PlanRestores::default(),
    }
}

/// Checks every `[[plan]]` once; targets then only look them up.
pub(super) fn check_plans(r: &mut Report<'_>, plans: Vec<RawPlan>) -> HashMap<String, Plan> {
    let mut out: HashMap<String, (Range<usize>, Plan)> = HashMap::new();
    for p in plans {
        let Some(name) = p.name else {
            r.push(
                p.span.clone(),
                format!("{}.name", p.path),
                "missing (targets name a plan with plan = \"NAME\")",
            );
            continue;
        };
        if p.rules.is_empty() {
            r.push(
                name.span(),
                format!("{}.rule", p.path),
                "a plan needs at least one [[plan.rule]]",
            );
        }
        let mut checked = check_rules(r, p.rules);
        checked.restores = PlanRestores {
            path: p.path.clone(),
            restore: p.restore,
            restore_test: p.restore_test,
        };
        if let Some((first, _)) = out.get(name.get_ref()) {
            let (line, _) = line_col(r.text, first.start);
            r.push(
                name.span(),
                format!("{}.name", p.path),
                format!("a plan `{}` exists already (line {line})", name.get_ref()),
            );
            continue;
        }
        out.insert(name.get_ref().clone(), (name.span(), checked));
    }
    out.into_iter().map(|(k, (_, p))| (k, p)).collect()
}

/// A rule's own settings over its target's (which are already over `[defaults]`).
pub(super) fn over(rule: &RawRule, target: &RawPolicy) -> RawPolicy {
    let t = target.clone();
    RawPolicy {
        catch_up: rule.catch_up.clone().or(t.catch_up.clone()),
        starting_deadline: rule
            .starting_deadline
            .clone()
            .or(t.starting_deadline.clone()),
        jitter: rule.jitter.clone().or(t.jitter.clone()),
        start_window_minutes: rule
            .start_window_minutes
            .clone()
            .or(t.start_window_minutes.clone()),
        complete_window_minutes: rule
            .complete_window_minutes
            .clone()
            .or(t.complete_window_minutes.clone()),
        delete_after_days: rule
            .delete_after_days
            .clone()
            .or(t.delete_after_days.clone()),
        copy_to: rule.copy_to.clone().or(t.copy_to.clone()),
        ..t
    }
}

/// A target's own settings over `[defaults]`.
pub(super) fn merge(o: &RawTarget, defaults: &RawPolicy) -> RawPolicy {
    let d = defaults.clone();
    let o = RawPolicy {
        catch_up: o.catch_up.clone(),
        starting_deadline: o.starting_deadline.clone(),
        concurrency: o.concurrency.clone(),
        jitter: o.jitter.clone(),
        start_window_minutes: o.start_window_minutes.clone(),
        complete_window_minutes: o.complete_window_minutes.clone(),
        delete_after_days: o.delete_after_days.clone(),
        pre_document: o.pre_document.clone(),
        post_document: o.post_document.clone(),
        post_hook_when: o.post_hook_when.clone(),
        hook_max_downtime: o.hook_max_downtime.clone(),
        on_pre_hook_failure: o.on_pre_hook_failure.clone(),
        windows_vss: o.windows_vss.clone(),
        copy_to: o.copy_to.clone(),
        restore: o.restore.clone(),
        restore_test: o.restore_test.clone(),
    };
    RawPolicy {
        catch_up: o.catch_up.or(d.catch_up),
        starting_deadline: o.starting_deadline.or(d.starting_deadline),
        concurrency: o.concurrency.or(d.concurrency),
        jitter: o.jitter.or(d.jitter),
        start_window_minutes: o.start_window_minutes.or(d.start_window_minutes),
        complete_window_minutes: o.complete_window_minutes.or(d.complete_window_minutes),
        delete_after_days: o.delete_after_days.or(d.delete_after_days),
        pre_document: o.pre_document.or(d.pre_document),
        post_document: o.post_document.or(d.post_document),
        post_hook_when: o.post_hook_when.or(d.post_hook_when),
        hook_max_downtime: o.hook_max_downtime.or(d.hook_max_downtime),
        on_pre_hook_failure: o.on_pre_hook_failure.or(d.on_pre_hook_failure),
        windows_vss: o.windows_vss.or(d.windows_vss),
        copy_to: o.copy_to.or(d.copy_to),
        restore: o.restore.or(d.restore),
        restore_test: o.restore_test.or(d.restore_test),
    }
}
