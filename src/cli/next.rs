//! `orchestrator next`: the next fire times of each target, in its zone and in UTC.

mod from;

use from::From as When;

use chrono::Utc;

use super::args::*;
use super::out::outln;
use crate::model::Config;

/// `next`: checks `--from` and `--target`, then prints.
fn next(c: &Config, count: usize, from: Option<&str>, target: Option<&str>) -> i32 {
    let from = match from.map(When::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("--from: {e}");
            return EXIT_USAGE;
        }
    };
    let selection = |name: &str| c.selections.iter().find(|s| s.name == name);
    if let Some(name) = target
        && c.first_rule_of(name).is_none()
        && selection(name).is_none()
    {
        eprintln!("{}: no target named `{name}`", c.source);
        return EXIT_CONFIG;
    }
    // A resolved config holds the selections' instances as targets; unresolved, say so.
    let resolved = c
        .selections
        .iter()
        .any(|s| c.rules.iter().any(|t| s.owns(&t.name)));
    if !resolved {
        for s in c
            .selections
            .iter()
            .filter(|s| target.is_none_or(|n| n == s.name))
        {
            outln!(
                "{} (tag selection: {}): run `next --resolve` to list its instances' slots",
                s.name,
                super::check::tags_text(&s.select)
            );
        }
    }
    match target.and_then(selection) {
        // A selection's name: its instances.
        Some(s) => print_next_where(c, count, from, |t| s.owns(&t.name)),
        None => print_next(c, count, from, target),
    }
    0
}

pub(super) fn print_next(c: &Config, count: usize, from: Option<When>, only: Option<&str>) {
    print_next_where(c, count, from, |t| only.is_none_or(|n| n == &*t.name));
}

pub(super) fn print_next_where(
    c: &Config,
    count: usize,
    from: Option<When>,
    keep: impl Fn(&crate::model::Rule) -> bool,
) {
    let now = Utc::now();
    for t in c.enabled_rules().filter(|t| keep(t)) {
        // A target alone on its instance prints as it always did; rules show their retention
        // and what each slot starts or is merged into.
        let plain = t.settings.rule.is_none() && c.instances.rules_of(t).is_none();
        if plain {
            outln!(
                "{} ({} in {})",
                t.name,
                t.settings.schedule.expression(),
                t.settings.schedule.timezone().name()
            );
        } else {
            outln!(
                "{}{} ({} in {}, {} d)",
                t.name,
                t.settings
                    .rule
                    .as_deref()
                    .map_or(String::new(), |r| format!(" rule {r}")),
                t.settings.schedule.expression(),
                t.settings.schedule.timezone().name(),
                t.settings.delete_after_days
            );
        }
        // `--from`: slots at or after that moment (iter_after is strictly after).
        let after = from.map_or(now, |f| {
            f.resolve(t.settings.schedule.timezone()) - chrono::Duration::nanoseconds(1)
        });
        for slot in t.settings.schedule.iter_after(after).take(count) {
            let decision = c.instances.decide(t, slot);
            let (name, into, _) = decision.covering();
            let note = if plain {
                String::new()
            } else if decision.is_merged() {
                format!(
                    "  merged into {name} (rule {}, {} d)",
                    into.rule_name(),
                    into.settings.delete_after_days
                )
            } else {
                format!("  {name}")
            };
            outln!(
                "  {}  {}{note}",
                slot.with_timezone(&t.settings.schedule.timezone())
                    .to_rfc3339(),
                slot.to_rfc3339()
            );
        }
    }
}

/// `next [--count N] [--from TIME] [--target NAME] [--resolve]`.
pub(super) async fn run(
    args: &RunArgs,
    count: usize,
    from: Option<&str>,
    target: Option<&str>,
    resolve: bool,
) -> i32 {
    let c = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if resolve {
        match super::check::resolved(&c).await {
            Ok(effective) => next(&effective, count, from, target),
            Err(code) => code,
        }
    } else {
        next(&c, count, from, target)
    }
}
