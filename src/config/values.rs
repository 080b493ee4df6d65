//! Typed checks of single values: durations, rates, time zones, hook documents, tags.

use std::time::Duration;

use chrono_tz::Tz;
use toml::Spanned;

use super::diagnostics::Report;
use super::raw::RawDocument;
use crate::hooks::{self, Document};

/// Parses `250ms`, `30s`, `5m`, `1h30m`, `2d` (units may be combined, largest first).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration (expected e.g. 30s, 5m, 1h30m)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration (expected e.g. 30s, 5m, 1h30m)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let step = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => return Err(format!("`{s}`: a unit is missing (ms, s, m, h, d)")),
            other => return Err(format!("`{s}`: unknown unit `{other}` (ms, s, m, h, d)")),
        };
        total = total.saturating_add(step);
    }
    Ok(total)
}

pub(super) fn duration_field(
    r: &mut Report<'_>,
    v: &Option<Spanned<String>>,
    field: &str,
    default: Duration,
) -> Duration {
    duration_at(r, v, || field.to_string(), default)
}

/// [`duration_field`] whose field path is formatted only if the value is wrong (300,000 rules a
/// load).
pub(super) fn duration_at(
    r: &mut Report<'_>,
    v: &Option<Spanned<String>>,
    field: impl FnOnce() -> String,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => match parse_duration(s.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                r.push(s.span(), field(), e);
                default
            }
        },
    }
}

pub(super) fn rate_field(
    r: &mut Report<'_>,
    v: &Option<Spanned<f64>>,
    field: &str,
    default: f64,
) -> f64 {
    match v {
        Some(s) if !(s.get_ref().is_finite() && *s.get_ref() > 0.0) => {
            r.push(
                s.span(),
                field,
                "must be a positive number of calls per second",
            );
            default
        }
        Some(s) => *s.get_ref(),
        None => default,
    }
}

pub(super) fn zone_field(r: &mut Report<'_>, v: &Spanned<String>, field: &str) -> Option<Tz> {
    match v.get_ref().parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            r.push(
                v.span(),
                field,
                format!(
                    "unknown time zone `{}` (expected an IANA name like UTC, Europe/Berlin, Asia/Tokyo)",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

/// AWS tag rules: keys of 1-128 characters, values of at most 256, both of letters, digits,
/// spaces and `_ . : / = + - @` (`aws:` keys, set by AWS, may be selected on).
pub(super) fn tag_ok(key: &str, value: &str) -> Result<(), String> {
    let chars_ok = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
    };
    if key.is_empty() || key.chars().count() > 128 || !chars_ok(key) {
        return Err(format!(
            "tag key `{key}`: use 1-128 of letters, digits, spaces and _ . : / = + - @"
        ));
    }
    if value.chars().count() > 256 || !chars_ok(value) {
        return Err(format!(
            "tag value `{value}`: use at most 256 of letters, digits, spaces and _ . : / = + - @"
        ));
    }
    Ok(())
}

/// `hook_max_downtime`: a duration within the machine's bounds.
pub(super) fn max_downtime(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < hooks::MIN_MAX_DOWNTIME || d > hooks::MAX_MAX_DOWNTIME {
        return Err(format!(
            "`{s}`: must be between {}s and {}h (the machine polls the job every 10 s while \
             it waits, and an execution holds at most 25,000 history events)",
            hooks::MIN_MAX_DOWNTIME.as_secs(),
            hooks::MAX_MAX_DOWNTIME.as_secs() / 3600
        ));
    }
    Ok(d)
}

/// A hook document, checked; reports each problem under `field.name` etc. at the document.
/// Returns the document and whether it was good.
pub(super) fn document_field(
    r: &mut Report<'_>,
    raw: &Spanned<RawDocument>,
    field: &str,
) -> (Option<Document>, bool) {
    let d = raw.get_ref();
    let doc = Document {
        name: d.name.clone(),
        version: d.version.clone(),
        parameters: d.parameters.clone(),
    };
    let problems = hooks::check_document(&doc);
    let good = problems.is_empty();
    for (sub, message) in problems {
        r.push(raw.span(), format!("{field}.{sub}"), message);
    }
    (Some(doc), good)
}
