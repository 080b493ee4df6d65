//! `orchestrator check`: validate the config offline and print a summary; with `--resolve`,
//! also what each tag selection matches now.

use std::sync::Arc;

use chrono::Utc;

use super::args::*;
use super::out::outln;
use crate::app::{self};
use crate::aws::tagging::SdkTagSearch;
use crate::model::Config;

pub(super) fn print_summary(c: &Config) {
    outln!("{}: valid", c.source);
    outln!(
        "  {} target(s), {} enabled, {} schedule group(s), {} state machine(s)",
        c.rules.len(),
        c.enabled_rules().count(),
        c.groups().len(),
        c.state_machines().len()
    );
    let now = Utc::now();
    for t in c.rules.iter().take(50) {
        let next = t
            .settings
            .schedule
            .next_after(now)
            .map_or_else(|| "never".to_string(), |n| n.to_rfc3339());
        let rule = t
            .settings
            .rule
            .as_deref()
            .map_or(String::new(), |r| format!(" rule {r}"));
        outln!(
            "  {:<24} {:<28} {:<16} {} d next {}{}",
            format!("{}{rule}", t.name),
            t.settings.schedule.expression(),
            t.settings.schedule.timezone().name(),
            t.settings.delete_after_days,
            next,
            if t.settings.enabled {
                ""
            } else {
                " (disabled)"
            }
        );
    }
    if c.rules.len() > 50 {
        outln!("  … and {} more", c.rules.len() - 50);
    }
    print_restore_tests(c, now);
    for s in &c.selections {
        outln!(
            "  {:<24} selects ec2:instance in {} ({}) tagged {}{}; {} rule(s); refreshed every {:?}",
            s.name,
            s.region,
            s.account,
            tags_text(&s.select),
            if s.exclude.is_empty() {
                String::new()
            } else {
                format!(", except tagged (any of) {}", tags_text(&s.exclude))
            },
            s.templates.len(),
            c.selection_refresh
        );
    }
    for r in crate::stack::refusals(c) {
        println!("  warning: {} {}: {}", r.target, r.field, r.message);
    }
    if !c.instances.is_empty() {
        outln!(
            "  {} instance(s) with several rules: overlapping slots become one backup (the longest retention)",
            c.instances.len()
        );
    }
}

/// One line per target with a restore test (the first 50), and how many there are.
fn print_restore_tests(c: &Config, now: chrono::DateTime<Utc>) {
    let mut seen = std::collections::HashSet::new();
    let tested: Vec<_> = c
        .rules
        .iter()
        .filter_map(|r| Some((r, r.settings().restores.test.as_ref()?)))
        .filter(|(r, _)| seen.insert(r.name.clone()))
        .collect();
    for (r, t) in tested.iter().take(50) {
        let next = t
            .schedule
            .next_after(now)
            .map_or_else(|| "never".to_string(), |n| n.to_rfc3339());
        outln!(
            "  {:<24} {:<28} {:<16} restore test ({}, within {} d, max {} min{}) next {}{}",
            format!("{} restore", r.name),
            t.schedule.expression(),
            t.schedule.timezone().name(),
            match t.pick {
                crate::model::Pick::Latest => "latest",
                crate::model::Pick::Random => "random",
            },
            t.within_days,
            t.max_restore_minutes,
            t.validate_document
                .as_ref()
                .map_or(String::new(), |d| format!(", validates with {}", d.name)),
            next,
            if t.enabled { "" } else { " (disabled)" }
        );
    }
    if tested.len() > 50 {
        outln!("  … and {} more restore tests", tested.len() - 50);
    }
}

pub(super) fn tags_text(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `check --resolve`: what each selection matches now.
pub(super) fn print_selected(base: &Config, effective: &Config) {
    for s in &base.selections {
        let names = s.instance_names(effective);
        outln!("  selection {}: {} instance(s) now", s.name, names.len());
        for n in names.iter().take(50) {
            outln!("    {n}");
        }
        if names.len() > 50 {
            outln!("    … and {} more", names.len() - 50);
        }
    }
}

/// Resolves every tag selection of `c` once (GetResources) into the config the daemon would run
/// now; a failure is printed and exits 1.
pub(super) async fn resolved(c: &Config) -> Result<Config, i32> {
    if c.selections.is_empty() {
        return Ok(c.clone());
    }
    let sdk = app::sdk_config(c, false).await;
    if !app::check_credentials(&sdk).await {
        eprintln!(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
        );
        return Err(EXIT_FAILURE);
    }
    let tags = SdkTagSearch::new(sdk);
    let mut sets = std::collections::HashMap::new();
    for s in &c.selections {
        match crate::refresh::resolve(&tags, s).await {
            Ok((ids, _)) => {
                sets.insert(s.name.clone(), Arc::new(ids));
            }
            Err(e) => {
                eprintln!("selection {}: cannot resolve: {e}", s.name);
                return Err(EXIT_FAILURE);
            }
        }
    }
    Ok(crate::selection::effective(c, &sets))
}

/// `check [--resolve]`.
pub(super) async fn run(args: &RunArgs, resolve: bool) -> i32 {
    let c = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if resolve {
        match resolved(&c).await {
            Ok(effective) => {
                print_summary(&c);
                print_selected(&c, &effective);
            }
            Err(code) => return code,
        }
    } else {
        print_summary(&c);
    }
    0
}
