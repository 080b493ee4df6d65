//! Points in time from the command line (`next --from`): an RFC 3339 instant, or a local
//! date-time read in each target's own zone. Pure.

use chrono::{DateTime, MappedLocalTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Local date-time forms accepted besides RFC 3339.
const LOCAL_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
];
/// How far past a daylight-saving gap a missing local time is moved (the widest gap is 2 h).
const MAX_GAP_MINUTES: i64 = 180;

/// A `--from` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// An instant (RFC 3339, with its offset): the same for every target.
    Instant(DateTime<Utc>),
    /// A wall-clock time without a zone: read in each target's zone.
    Local(NaiveDateTime),
}

impl From {
    /// Parses `2026-03-08T01:30:00-05:00`, `2026-03-08T01:30Z`, `2026-03-08T01:30`,
    /// `2026-03-08 01:30:00` or `2026-03-08` (midnight).
    pub fn parse(s: &str) -> Result<From, String> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(From::Instant(t.to_utc()));
        }
        // RFC 3339 without seconds (`…T01:30Z`, `…T01:30+01:00`).
        if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%#z") {
            return Ok(From::Instant(t.to_utc()));
        }
        if let Some(t) = LOCAL_FORMATS
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        {
            return Ok(From::Local(t));
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(From::Local(
                d.and_hms_opt(0, 0, 0).expect("midnight exists"),
            ));
        }
        Err(format!(
            "`{s}` is not a time: give RFC 3339 (2026-03-08T01:30:00-05:00, …Z) or a local date-time (2026-03-08T01:30, 2026-03-08 01:30:00, 2026-03-08)"
        ))
    }

    /// The instant in `tz`: a repeated local time is its first occurrence; a local time that
    /// does not exist (spring forward) is the first instant after the gap.
    pub fn resolve(self, tz: Tz) -> DateTime<Utc> {
        let local = match self {
            From::Instant(t) => return t,
            From::Local(l) => l,
        };
        for minutes in 0..=MAX_GAP_MINUTES {
            let candidate = local + chrono::Duration::minutes(minutes);
            let candidate = if minutes == 0 {
                candidate
            } else {
                // The first whole minute past the gap.
                candidate
                    .date()
                    .and_hms_opt(
                        chrono::Timelike::hour(&candidate),
                        chrono::Timelike::minute(&candidate),
                        0,
                    )
                    .unwrap_or(candidate)
            };
            match tz.from_local_datetime(&candidate) {
                MappedLocalTime::Single(t) => return t.to_utc(),
                MappedLocalTime::Ambiguous(a, b) => return a.to_utc().min(b.to_utc()),
                MappedLocalTime::None => {}
            }
        }
        // No zone has a gap this wide; read it as UTC rather than fail.
        local.and_utc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn slots(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr, tz).unwrap();
        let at = From::parse(from).unwrap().resolve(tz);
        // Slots at or after the moment.
        s.iter_after(at - chrono::Duration::nanoseconds(1))
            .take(n)
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn forms() {
        assert_eq!(
            From::parse("2026-03-08T01:30:00-05:00").unwrap(),
            From::Instant(utc("2026-03-08T06:30:00Z"))
        );
        assert_eq!(
            From::parse("2026-03-08T01:30Z").unwrap(),
            From::Instant(utc("2026-03-08T01:30:00Z"))
        );
        let local = |s| match From::parse(s).unwrap() {
            From::Local(l) => l.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(local("2026-03-08T01:30"), "2026-03-08 01:30:00");
        assert_eq!(local("2026-03-08 01:30:15"), "2026-03-08 01:30:15");
        assert_eq!(local("2026-03-08"), "2026-03-08 00:00:00");
        assert!(
            From::parse("next tuesday")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn a_local_time_is_read_in_each_zone_across_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let l = From::parse("2027-03-14T02:30").unwrap();
        // 02:30 does not exist in New York that night: the first instant after the gap.
        assert_eq!(l.resolve(ny), utc("2027-03-14T07:00:00Z"));
        // It exists in Berlin (whose change is on 2027-03-28).
        assert_eq!(l.resolve(berlin), utc("2027-03-14T01:30:00Z"));
        // A repeated time is its first occurrence.
        let fall = From::parse("2026-10-25T02:30").unwrap();
        assert_eq!(fall.resolve(berlin), utc("2026-10-25T00:30:00Z"));
        // An instant is the same everywhere.
        let i = From::parse("2027-03-14T02:30:00Z").unwrap();
        assert_eq!(i.resolve(ny), i.resolve(berlin));
    }

    #[test]
    fn next_from_across_a_change_in_two_zones() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Spring forward in New York: 02:30 is skipped on 2027-03-14.
        assert_eq!(
            slots("30 2 * * *", ny, "2027-03-13", 3),
            [
                "2027-03-13T02:30:00-05:00",
                "2027-03-15T02:30:00-04:00",
                "2027-03-16T02:30:00-04:00"
            ]
        );
        // Fall back in Berlin: the repeated 02:00 fires once, at its first occurrence.
        assert_eq!(
            slots("0 * * * *", berlin, "2026-10-25T01:00", 4),
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00"
            ]
        );
        // Spring forward in Berlin: 02:00 does not exist on 2027-03-28.
        assert_eq!(
            slots("0 * * * *", berlin, "2027-03-28T01:00", 2),
            ["2027-03-28T01:00:00+01:00", "2027-03-28T03:00:00+02:00"]
        );
    }
}
