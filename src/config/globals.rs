//! The top of the file: the global settings, `[defaults]`, `[ha]` and the `[[plan]]`s, settled
//! before any target, and the checks that need every target at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use toml::Spanned;

use super::backup::{AllRules, Targets};
use super::diagnostics::Report;
use super::plans::{MIN_START_WINDOW_MINUTES, Plan, check_plans};
use super::raw::{RawGlobal, RawHa, RawPlan, RawPolicy};
use super::values::{
    document_field, duration_field, max_downtime, parse_duration, rate_field, zone_field,
};
use crate::arn::StateMachineArn;
use crate::fasthash::{FastMap, FastSet};
use crate::model::{Config, Pacing, RestoreGlobals, content_hash};

/// Default StartExecution pacing: well below the smallest regional refill (150/s).
pub const DEFAULT_START_RATE: f64 = 100.0;

/// Default StartExecution burst: well below the smallest regional bucket (800).
pub const DEFAULT_START_BURST: u32 = 200;

/// Default DescribeExecution pacing: below the smallest regional refill (10/s).
pub const DEFAULT_DESCRIBE_RATE: f64 = 8.0;

/// How often tag selections are resolved again, by default.
pub const DEFAULT_SELECTION_REFRESH: Duration = Duration::from_secs(300);

/// Default pacing of AWS Backup read calls (DescribeBackupJob, ListBackupJobs).
pub const DEFAULT_BACKUP_READ_RATE: f64 = 5.0;

pub(super) fn validate_ha(
    r: &mut Report<'_>,
    span: Range<usize>,
    h: RawHa,
) -> Option<crate::lease::LeaseSettings> {
    let table = match &h.lease_table {
        None => {
            r.push(
                span,
                "ha.lease_table",
                "missing: the DynamoDB table of the lease",
            );
            None
        }
        Some(t) => {
            let name = t.get_ref();
            // DynamoDB table names: 3-255 of [A-Za-z0-9_.-].
            let ok = (3..=255).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                r.push(
                    t.span(),
                    "ha.lease_table",
                    "must be a DynamoDB table name: 3 to 255 of A-Z a-z 0-9 _ - .",
                );
            }
            ok.then(|| name.clone())
        }
    };
    let duration = duration_field(
        r,
        &h.lease_duration,
        "ha.lease_duration",
        Duration::from_secs(30),
    );
    let renew_interval = duration_field(
        r,
        &h.renew_interval,
        "ha.renew_interval",
        Duration::from_secs(10),
    );
    if duration < Duration::from_secs(3)
        && let Some(s) = &h.lease_duration
    {
        r.push(s.span(), "ha.lease_duration", "must be at least 3s");
    }
    // Two renewals fit before the holder's own deadline: one failed call costs no leadership.
    let usable = duration.saturating_sub(crate::lease::skew_margin(duration));
    if (renew_interval.is_zero() || renew_interval * 2 > usable)
        && let Some(s) = h.renew_interval.as_ref().or(h.lease_duration.as_ref())
    {
        r.push(
            s.span(),
            "ha.renew_interval",
            format!(
                "must be more than zero and at most {usable:?} / 2 (lease_duration minus its \
                 skew margin of a quarter, halved)"
            ),
        );
    }
    let owner_id = match &h.owner_id {
        Some(o) if o.get_ref().trim().is_empty() => {
            r.push(o.span(), "ha.owner_id", "must not be empty");
            None
        }
        Some(o) => Some(o.get_ref().clone()),
        None => Some(crate::lease::default_owner_id()),
    };
    Some(crate::lease::LeaseSettings {
        table: table?,
        duration,
        renew_interval,
        owner_id: owner_id?,
    })
}

/// The file's settings apart from its targets, checked: the config still without targets, and
/// what validating a target needs (shared by the threads that validate a large file's halves).
pub(super) struct FileSettings {
    pub(super) config: Config,
    pub(super) selection_refresh: Option<Spanned<String>>,
    pub(super) defaults: RawPolicy,
    pub(super) default_tz: Tz,
    pub(super) default_machine: Option<StateMachineArn>,
    pub(super) plans: HashMap<String, Plan>,
}

/// Checks the top-level settings, `[defaults]` and the `[[plan]]`s.
pub(super) fn settle(
    r: &mut Report<'_>,
    g: RawGlobal,
    defaults: RawPolicy,
    plans: Vec<RawPlan>,
) -> FileSettings {
    let default_machine = g.state_machine_arn.as_ref().and_then(|s| {
        StateMachineArn::parse(s.get_ref())
            .map_err(|e| r.push(s.span(), "state_machine_arn", e))
            .ok()
    });
    let default_tz = match &g.timezone {
        Some(z) => zone_field(r, z, "timezone").unwrap_or(Tz::UTC),
        None => Tz::UTC,
    };
    let (poll_interval, max_poll_interval) = poll_intervals(r, &g);
    let listen = listen_field(r, &g);
    let pacing = pacing_fields(r, &g);
    let shutdown_grace = duration_field(
        r,
        &g.shutdown_grace,
        "shutdown_grace",
        Duration::from_secs(10),
    );
    let recovery_lookback = duration_field(
        r,
        &g.recovery_lookback,
        "recovery_lookback",
        Duration::from_secs(24 * 3600),
    );

    let defaults = checked_defaults(r, defaults);
    let plans = check_plans(r, plans);
    let restore = restore_globals(r, &g);
    FileSettings {
        config: Config {
            source: r.file.to_string(),
            region: g.region.map(Spanned::into_inner),
            endpoint_url: g.endpoint_url.map(Spanned::into_inner),
            poll_interval,
            max_poll_interval,
            log_format: g.log_format.map(Spanned::into_inner).unwrap_or_default(),
            listen,
            pacing,
            shutdown_grace,
            recovery_lookback,
            rules: Vec::new(),
            ha: None,
            instances: crate::model::Instances::default(),
            selections: Vec::new(),
            selection_refresh: DEFAULT_SELECTION_REFRESH,
            content_hash: content_hash(r.text.as_bytes()),
            restore,
        },
        selection_refresh: g.selection_refresh,
        defaults,
        default_tz,
        default_machine,
        plans,
    }
}

impl FileSettings {
    /// A context to validate `count` targets in file order.
    pub(super) fn context(&self, count: usize) -> Targets<'_> {
        Targets {
            defaults: &self.defaults,
            default_tz: self.default_tz,
            default_machine: self.default_machine.as_ref(),
            plans: &self.plans,
            // Sized once: growing maps of 100,000s of keys was a tenth of a load. The prefixes
            // are sized at the first target, which tells how many rules a target has.
            seen: FastMap::with_capacity_and_hasher(count, Default::default()),
            exec_parts: FastMap::default(),
            schedules: FastMap::default(),
            settings: FastSet::default(),
            count,
            no_copies: Arc::from(Vec::new()),
            restores: FastMap::default(),
            no_restores: Arc::default(),
        }
    }

    /// The config with its targets: the checks that need all of them, then the rules by
    /// instance.
    pub(super) fn finish(self, r: &mut Report<'_>, all: AllRules) -> Config {
        let mut config = self.config;
        // `{selection}-i-…` names belong to the selection's instances.
        for s in &all.selections {
            let prefix = format!("{}-i-", s.name);
            for (name, at) in all.names.iter().flatten() {
                if name.starts_with(&prefix) {
                    r.push(
                        at.clone(),
                        "backup.name",
                        format!(
                            "`{name}` would clash with the instances of the selection `{}` (named {prefix}…)",
                            s.name
                        ),
                    );
                }
            }
        }
        let g = &self.selection_refresh;
        config.selection_refresh =
            duration_field(r, g, "selection_refresh", DEFAULT_SELECTION_REFRESH);
        if config.selection_refresh < Duration::from_secs(1)
            && let Some(s) = g
        {
            r.push(s.span(), "selection_refresh", "must be at least 1s");
        }
        let tests = all
            .rules
            .iter()
            .chain(all.selections.iter().flat_map(|s| s.templates.iter()))
            .any(|rule| rule.settings().restores.test.is_some());
        if tests && config.restore.state_machine.is_none() {
            r.push(
                0..0,
                "restore_state_machine_arn",
                "missing: restore_test needs the restore machine (the stack's RestoreStateMachineArn output)",
            );
        }
        config.instances = crate::model::Instances::of(&all.rules);
        config.rules = all.rules;
        config.selections = all.selections;
        config
    }
}

/// Reports each bad `[defaults]` value once, under `defaults.KEY`, and drops it, so that the
/// targets that inherit it fall back to the built-in default instead of repeating the error.
pub(super) fn checked_defaults(r: &mut Report<'_>, mut d: RawPolicy) -> RawPolicy {
    let check_duration = |v: &mut Option<Spanned<String>>, key: &str, r: &mut Report<'_>| {
        if let Some(s) = v.as_ref()
            && let Err(e) = parse_duration(s.get_ref())
        {
            r.push(s.span(), format!("defaults.{key}"), e);
            *v = None;
        }
    };
    check_duration(&mut d.starting_deadline, "starting_deadline", r);
    check_duration(&mut d.jitter, "jitter", r);
    if let Some(s) = d.hook_max_downtime.as_ref()
        && let Err(e) = max_downtime(s.get_ref())
    {
        r.push(s.span(), "defaults.hook_max_downtime", e);
        d.hook_max_downtime = None;
    }
    for (key, doc) in [
        ("pre_document", &mut d.pre_document),
        ("post_document", &mut d.post_document),
    ] {
        if let Some(raw) = doc.as_ref()
            && !document_field(r, raw, &format!("defaults.{key}")).1
        {
            *doc = None;
        }
    }
    if let Some(v) = &d.start_window_minutes
        && *v.get_ref() < MIN_START_WINDOW_MINUTES
    {
        r.push(
            v.span(),
            "defaults.start_window_minutes",
            format!("AWS Backup needs at least {MIN_START_WINDOW_MINUTES}"),
        );
        d.start_window_minutes = None;
    }
    if let Some(v) = &d.delete_after_days
        && *v.get_ref() == 0
    {
        r.push(v.span(), "defaults.delete_after_days", "must be at least 1");
        d.delete_after_days = None;
    }
    d
}

/// `restore_state_machine_arn`, `restore_sweep_interval`, `restore_sweep_grace`.
fn restore_globals(r: &mut Report<'_>, g: &RawGlobal) -> RestoreGlobals {
    let d = RestoreGlobals::default();
    let state_machine = g.restore_state_machine_arn.as_ref().and_then(|s| {
        StateMachineArn::parse(s.get_ref())
            .map_err(|e| r.push(s.span(), "restore_state_machine_arn", e))
            .ok()
    });
    let sweep_interval = duration_field(
        r,
        &g.restore_sweep_interval,
        "restore_sweep_interval",
        d.sweep_interval,
    );
    if sweep_interval < Duration::from_secs(1)
        && let Some(s) = &g.restore_sweep_interval
    {
        r.push(s.span(), "restore_sweep_interval", "must be at least 1s");
    }
    RestoreGlobals {
        state_machine,
        sweep_interval: sweep_interval.max(Duration::from_secs(1)),
        sweep_grace: duration_field(
            r,
            &g.restore_sweep_grace,
            "restore_sweep_grace",
            d.sweep_grace,
        ),
    }
}

/// `poll_interval` and `max_poll_interval`: more than zero, the ceiling not below the first.
fn poll_intervals(r: &mut Report<'_>, g: &RawGlobal) -> (Duration, Duration) {
    let poll_interval = duration_field(
        r,
        &g.poll_interval,
        "poll_interval",
        Duration::from_secs(30),
    );
    let max_poll_interval = duration_field(
        r,
        &g.max_poll_interval,
        "max_poll_interval",
        Duration::from_secs(300).max(poll_interval),
    );
    if poll_interval.is_zero()
        && let Some(s) = &g.poll_interval
    {
        r.push(s.span(), "poll_interval", "must be more than zero");
    }
    if max_poll_interval < poll_interval
        && let Some(s) = &g.max_poll_interval
    {
        r.push(
            s.span(),
            "max_poll_interval",
            "must not be less than poll_interval",
        );
    }
    (poll_interval, max_poll_interval)
}

/// `listen` (an address:port) and `endpoint_url` (http or https).
fn listen_field(r: &mut Report<'_>, g: &RawGlobal) -> Option<SocketAddr> {
    let listen = g.listen.as_ref().and_then(|s| {
        s.get_ref()
            .parse::<SocketAddr>()
            .map_err(|_| {
                r.push(
                    s.span(),
                    "listen",
                    format!(
                        "`{}` is not an address:port like 127.0.0.1:9464",
                        s.get_ref()
                    ),
                )
            })
            .ok()
    });
    if let Some(u) = &g.endpoint_url
        && !(u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://"))
    {
        r.push(
            u.span(),
            "endpoint_url",
            "must start with http:// or https://",
        );
    }
    listen
}

/// The API pacing: `start_rate`, `start_burst`, `describe_rate`, `backup_read_rate`.
fn pacing_fields(r: &mut Report<'_>, g: &RawGlobal) -> Pacing {
    let start_burst = match &g.start_burst {
        Some(b) if *b.get_ref() == 0 => {
            r.push(b.span(), "start_burst", "must be at least 1");
            DEFAULT_START_BURST
        }
        Some(b) => *b.get_ref(),
        None => DEFAULT_START_BURST,
    };
    Pacing {
        start_rate: rate_field(r, &g.start_rate, "start_rate", DEFAULT_START_RATE),
        start_burst,
        describe_rate: rate_field(r, &g.describe_rate, "describe_rate", DEFAULT_DESCRIBE_RATE),
        backup_read_rate: rate_field(
            r,
            &g.backup_read_rate,
            "backup_read_rate",
            DEFAULT_BACKUP_READ_RATE,
        ),
    }
}
