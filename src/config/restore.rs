//! `restore = {…}` and `restore_test = {…}` into a target's [`Restores`]. A table written once
//! in `[defaults]` or a `[[plan]]` serves every target under it: it is checked (and reported)
//! once per zone, and its targets share the result.

use std::sync::Arc;

use chrono_tz::Tz;
use toml::Spanned;

use super::diagnostics::Report;
use super::raw::{RawRestore, RawRestoreTest};
use super::values::zone_field;
use crate::hooks::{self, Document};
use crate::model::{RestorePlacement, RestoreTest, Restores, ValidateDocument};
use crate::schedule::Schedule;

/// A restore test's defaults: AWS Backup's restore testing picks within 30 days; a weekly
/// test wants last week's points.
const DEFAULT_WITHIN_DAYS: u32 = 7;
const DEFAULT_MAX_RESTORE_MINUTES: u32 = 60;
const DEFAULT_KEEP_MINUTES: u32 = 30;
/// The restore machine's bounds (`MaxRestoreSeconds` 60-86400, `KeepSeconds` 0-86400).
const MAX_MINUTES: u32 = 24 * 60;
/// AWS Backup restore testing's recovery point window.
const MAX_WITHIN_DAYS: u32 = 365;

/// Where a `restore` or `restore_test` table is written: its table and its field path.
pub(super) type Written<'a, T> = Option<(&'a Spanned<T>, String)>;

/// The target's restores from the tables that apply to it (the nearest of target, plan and
/// `[defaults]` for each); `None` if one of them is wrong (reported).
pub(super) fn restores(
    r: &mut Report<'_>,
    restore: Written<'_, RawRestore>,
    test: Written<'_, RawRestoreTest>,
    zone: Tz,
) -> Option<Arc<Restores>> {
    // Both tables are checked, so that every problem is reported at once.
    let placement = match restore {
        None => Some(RestorePlacement::default()),
        Some((raw, path)) => {
            let p = raw.get_ref();
            placement(
                r,
                raw.span(),
                &path,
                RestorePlacement {
                    instance_type: p.instance_type.clone(),
                    subnet_id: p.subnet_id.clone(),
                    security_group_ids: p.security_group_ids.clone(),
                    keep_instance_profile: p.keep_instance_profile,
                },
            )
        }
    };
    let under = placement.clone().unwrap_or_default();
    let test = match test {
        None => Some(None),
        Some((raw, path)) => restore_test(r, raw, &path, zone, &under).map(|t| Some(Arc::new(t))),
    };
    Some(Arc::new(Restores {
        placement: placement?,
        test: test?,
    }))
}

/// Checks a placement's values (each problem reported under `path.key`).
fn placement(
    r: &mut Report<'_>,
    span: std::ops::Range<usize>,
    path: &str,
    p: RestorePlacement,
) -> Option<RestorePlacement> {
    let mut ok = true;
    let mut bad = |key: &str, message: String| {
        r.push(span.clone(), format!("{path}.{key}"), message);
        ok = false;
    };
    if let Some(t) = &p.instance_type
        && !instance_type_ok(t)
    {
        bad(
            "instance_type",
            format!("`{t}`: expected an EC2 instance type like t3.micro"),
        );
    }
    if let Some(s) = &p.subnet_id
        && !id_ok(s, "subnet-")
    {
        bad(
            "subnet_id",
            format!("`{s}`: expected a subnet id like subnet-0123456789abcdef0"),
        );
    }
    if let Some(groups) = &p.security_group_ids {
        if !(1..=5).contains(&groups.len()) {
            bad(
                "security_group_ids",
                format!("{} security groups; 1 to 5", groups.len()),
            );
        }
        for g in groups.iter().filter(|g| !id_ok(g, "sg-")) {
            bad(
                "security_group_ids",
                format!("`{g}`: expected a security group id like sg-0123456789abcdef0"),
            );
        }
    }
    ok.then_some(p)
}

/// Checks a `restore_test` table.
fn restore_test(
    r: &mut Report<'_>,
    raw: &Spanned<RawRestoreTest>,
    path: &str,
    zone: Tz,
    under: &RestorePlacement,
) -> Option<RestoreTest> {
    let t = raw.get_ref();
    let span = raw.span();
    let field = |k: &str| format!("{path}.{k}");
    let mut ok = true;
    let zone = match &t.timezone {
        None => Some(zone),
        Some(z) => zone_field(
            r,
            &Spanned::new(span.clone(), z.clone()),
            &field("timezone"),
        ),
    };
    let schedule = match (&t.schedule, zone) {
        (None, _) => {
            r.push(
                span.clone(),
                field("schedule"),
                "missing (when the test runs, a cron expression)",
            );
            None
        }
        (Some(_), None) => None,
        (Some(s), Some(zone)) => Schedule::parse(s, zone)
            .map_err(|e| r.push(span.clone(), field("schedule"), e.message))
            .ok()
            .map(Arc::new),
    };
    let mut within = |key: &str, v: Option<u32>, default: u32, lo: u32, hi: u32| {
        let v = v.unwrap_or(default);
        if !(lo..=hi).contains(&v) {
            r.push(
                span.clone(),
                field(key),
                format!("{v}: between {lo} and {hi}"),
            );
            ok = false;
        }
        v
    };
    let within_days = within(
        "within_days",
        t.within_days,
        DEFAULT_WITHIN_DAYS,
        1,
        MAX_WITHIN_DAYS,
    );
    let max_restore_minutes = within(
        "max_restore_minutes",
        t.max_restore_minutes,
        DEFAULT_MAX_RESTORE_MINUTES,
        1,
        MAX_MINUTES,
    );
    let keep_minutes = within(
        "keep_minutes",
        t.keep_minutes,
        DEFAULT_KEEP_MINUTES,
        0,
        MAX_MINUTES,
    );
    let validate_document = t.validate_document.as_ref().map(|d| {
        let doc = Document {
            name: d.name.clone(),
            version: None,
            parameters: d.parameters.clone(),
        };
        for (sub, message) in hooks::check_document(&doc) {
            r.push(
                span.clone(),
                field(&format!("validate_document.{sub}")),
                message,
            );
            ok = false;
        }
        ValidateDocument {
            name: doc.name,
            parameters: doc.parameters,
        }
    });
    let own = RestorePlacement {
        instance_type: t.instance_type.clone(),
        subnet_id: t.subnet_id.clone(),
        security_group_ids: t.security_group_ids.clone(),
        keep_instance_profile: t.keep_instance_profile,
    };
    let placement = placement(r, span.clone(), path, own);
    let (Some(schedule), Some(placement), true) = (schedule, placement, ok) else {
        return None;
    };
    Some(RestoreTest {
        schedule,
        pick: t.pick.unwrap_or_default(),
        within_days,
        max_restore_minutes,
        keep_minutes,
        validate_document,
        placement: placement.over(under),
        enabled: t.enabled.unwrap_or(true),
    })
}

/// `family.size` in lower case, as EC2 names types (`t3.micro`, `m7g.2xlarge`).
fn instance_type_ok(t: &str) -> bool {
    t.len() <= 64
        && t.split_once('.').is_some_and(|(family, size)| {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !size.is_empty()
                && size
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `prefix` then 8 or 17 hex digits, as EC2 ids are.
fn id_ok(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_types_follow_ec2() {
        assert!(instance_type_ok("t3.micro"));
        assert!(instance_type_ok("m7g.2xlarge"));
        assert!(!instance_type_ok("T3.micro"));
        assert!(!instance_type_ok("t3"));
        assert!(id_ok("subnet-0123456789abcdef0", "subnet-"));
        assert!(id_ok("sg-01234567", "sg-"));
        assert!(!id_ok("sg-0123", "sg-"));
        assert!(!id_ok("subnet-0123456789abcdef0", "sg-"));
    }
}
