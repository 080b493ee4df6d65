//! Schedule expressions -> fire instants in an IANA time zone. Pure: no clock, no I/O, no tokio.
//!
//! # Accepted forms
//! - Vixie cron, 5 fields: `min hour dom month dow`, e.g. `0 3 * * *`. Day of week 0-7 (0 and 7
//!   are Sunday) or `SUN`-`SAT`; months 1-12 or `JAN`-`DEC`; names are case-insensitive.
//! - The same with a leading seconds field, 6 fields (as tokio-cron-scheduler/croner users write
//!   it), e.g. `0 0 3 * * *`.
//! - AWS (EventBridge / AWS Backup): `cron(min hour dom month dow year)`, e.g. `cron(0 3 * * ? *)`.
//!   Day of week 1-7 with 1 = `SUN`; exactly one of the two day fields must be `?`; the year field
//!   takes `*`, years, lists, ranges and steps within 1970-2199.
//!
//! Every field takes `*`, `a`, `a-b`, `a,b,c`, `*/n`, `a/n` (= `a-max/n`) and `a-b/n`. `?` is
//! allowed alone in a day field; in the Vixie forms it means `*`. Day-of-month specials: `L` (last
//! day), `L-n` (n days before the last), `nW` (nearest weekday to day n), `LW` (last weekday).
//! Day-of-week specials: `nL` (last such weekday of the month: AWS `6L`, Vixie `5L` = last
//! Friday), `n#k` (k-th such weekday, k 1-5) and a bare `L` (the last day of the week, Saturday).
//! Specials may appear in any of the three forms and as items of a list. `rate(...)` and `at(...)`
//! are rejected: a rate has no fixed slots, and slots are what the scheduler names executions by.
//!
//! # Semantics choices
//! - Vixie day rule: when both day fields are restricted, a day matches if *either* matches;
//!   otherwise both must. As in cron(5) and Vixie's code, a field that starts with `*` (so `*/2`
//!   too) or is `?` counts as unrestricted: `0 0 */2 * MON` means odd days that are Mondays.
//!   AWS expressions always combine the two with "and" (one side is `?`).
//! - `nW` never crosses the month: `1W` on a Saturday is Monday the 3rd, `31W` on a Sunday is
//!   Friday the 29th. When the month has no day n (`31W` in April) it does not fire that month,
//!   exactly like a plain `31`. `L-n` past the first of the month does not fire either.
//! - Daylight saving follows EventBridge Scheduler: a local time that does not exist (spring
//!   forward) is skipped, and a local time that occurs twice (fall back) fires once, at its first
//!   occurrence. The consequence is deliberate and tested: on the fall-back day an hourly
//!   `0 * * * *` fires at 01:00 daylight time and *not* at 01:00 standard time, so two real hours
//!   pass between its 01:00 and 02:00 fires, and `* * * * *` is silent for the repeated hour.
//! - Searches only consider local years 1970-2199 (AWS's year range). That bounds every search
//!   (at most 2,760 months, each ruled in or out with a few bit operations), so a schedule with
//!   no further slot returns `None` quickly. An expression that matches no date in that range at
//!   all (`0 0 30 2 *`) is rejected when parsed; a past year (`cron(0 3 * * ? 2020)`) is not.
//! - Zone rules come from chrono-tz, whose tables stop applying recurring daylight saving after
//!   2099; later slots use standard time.
//! - Fire instants are whole seconds; sub-second parts of the arguments only matter for "strictly
//!   after".

use chrono::{
    DateTime, Datelike, Duration, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use std::fmt::Write as _;

/// The three accepted forms with an example each; every parse error ends with it.
const ACCEPTED_FORMS: &str = r#"expected 5-field cron "0 3 * * *", 6-field cron with seconds "0 0 3 * * *", or AWS "cron(0 3 * * ? *)""#;

/// First local year a search considers (AWS's lower bound for the year field).
const MIN_YEAR: i32 = 1970;
/// Last local year a search considers (AWS's upper bound for the year field).
const MAX_YEAR: i32 = 2199;
/// Number of years in [`MIN_YEAR`, `MAX_YEAR`]; the year bitset has one bit for each.
const YEAR_COUNT: u32 = (MAX_YEAR - MIN_YEAR + 1) as u32;
const SECONDS_PER_DAY: i64 = 86_400;

/// A parsed schedule expression bound to a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    tz: Tz,
    syntax: Syntax,
    fields: Fields,
    // Computed once: the scheduler asks for it for every target, often.
    key: String,
}

/// Why an expression was rejected; the message names the field, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    /// Human-readable explanation, ending with the accepted forms.
    pub message: String,
}

impl ScheduleError {
    fn new(expression: &str, detail: &str) -> Self {
        ScheduleError {
            message: format!("invalid schedule {expression:?}: {detail}; {ACCEPTED_FORMS}"),
        }
    }
}

/// Which of the accepted forms an expression was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Vixie cron, `min hour dom month dow`.
    Cron5,
    /// Vixie cron with a leading seconds field.
    Cron6,
    /// AWS `cron(min hour dom month dow year)`.
    Aws,
}

impl Schedule {
    /// Parses one of the accepted forms; `tz` is the zone its wall-clock times are read in.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let expression = expr.trim();
        let fail = |detail: String| ScheduleError::new(expression, &detail);
        let upper = expression.to_ascii_uppercase();
        let (syntax, parts) = split_expression(&upper).map_err(fail)?;
        let fields = parse_fields(syntax, &parts).map_err(fail)?;
        let schedule = Schedule {
            expression: expression.to_string(),
            tz,
            syntax,
            key: group_key_for(tz, &fields),
            fields,
        };
        // A schedule that can never fire is almost always a typo (Feb 30); say so now rather
        // than have the target silently never run.
        if schedule.fields.next_local(first_search_second()).is_none() {
            return Err(fail(format!(
                "it matches no date in {MIN_YEAR}-{MAX_YEAR} (check the day-of-month against the month)"
            )));
        }
        Ok(schedule)
    }

    /// The expression as written, trimmed.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone whose wall-clock times the expression describes.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The form the expression was written in.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// Equal for schedules with the same zone and the same normalised field sets, so the same fire instants.
    pub fn group_key(&self) -> &str {
        &self.key
    }

    /// The first fire instant strictly after `after`, or `None` if there is none before 2200.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Mapping each existing local time to its first occurrence is strictly increasing, so
        // walking candidate local times in order yields fire instants in order. Local times up
        // to `after`'s own local time cannot be later than `after`, so start just past it.
        let mut lower = self.local_seconds(after);
        loop {
            let local = self.fields.next_local(lower.checked_add(1)?)?;
            let local_secs = local.and_utc().timestamp();
            match self.tz.from_local_datetime(&local) {
                MappedLocalTime::Single(at) => {
                    let at = at.to_utc();
                    if at > after {
                        return Some(at);
                    }
                    lower = local_secs;
                }
                MappedLocalTime::Ambiguous(a, b) => {
                    let (first, second) = ordered(a.to_utc(), b.to_utc());
                    if first > after {
                        return Some(first);
                    }
                    // `after` is in the second pass through a repeated hour: every repeated
                    // local time fired on the first pass, so resume where the repetition ends.
                    lower = match transition(self.tz, first.timestamp(), second.timestamp()) {
                        Some(t) => (t.at + i64::from(t.before) - 1).max(local_secs),
                        None => local_secs,
                    };
                }
                MappedLocalTime::None => {
                    // Skip the whole gap at once: a per-second schedule has 3,600 candidates in it.
                    lower = match gap_around(self.tz, local_secs) {
                        Some((_, end)) => (end - 1).max(local_secs),
                        None => local_secs,
                    };
                }
            }
        }
    }

    /// Fire instants strictly after `after`, in order (ending before 2200).
    pub fn iter_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after), move |&at| self.next_after(at))
    }

    /// The latest fire instant in (`after`, `until`], for catching up after downtime.
    pub fn latest_in(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if until <= after {
            return None;
        }
        // Clamped so that extreme arguments (`DateTime::<Utc>::MAX_UTC`) stay convertible.
        let until_local = self.local_seconds(until).min(last_search_second());
        let mut upper = until_local;
        // In the second pass through a repeated hour, the rest of that hour's local times
        // already fired (on the first pass), so they count as "not later than `until`" too.
        if let Some(naive) = naive_from_seconds(until_local)
            && let MappedLocalTime::Ambiguous(a, b) = self.tz.from_local_datetime(&naive)
        {
            let (first, second) = ordered(a.to_utc(), b.to_utc());
            if until >= second
                && let Some(t) = transition(self.tz, first.timestamp(), second.timestamp())
            {
                upper = upper.max(t.at + i64::from(t.before) - 1);
            }
        }
        // Local times before `after`'s local year map to instants before `after`.
        let floor_year =
            naive_from_seconds(self.local_seconds(after)).map_or(MIN_YEAR, |n| n.year());
        loop {
            let local = self.fields.prev_local(upper, floor_year)?;
            let local_secs = local.and_utc().timestamp();
            let at = match self.tz.from_local_datetime(&local) {
                MappedLocalTime::Single(at) => at.to_utc(),
                MappedLocalTime::Ambiguous(a, b) => ordered(a.to_utc(), b.to_utc()).0,
                MappedLocalTime::None => {
                    upper = match gap_around(self.tz, local_secs) {
                        Some((start, _)) => (start - 1).min(local_secs - 1),
                        None => local_secs - 1,
                    };
                    continue;
                }
            };
            if at > until {
                upper = local_secs - 1;
                continue;
            }
            return (at > after).then_some(at);
        }
    }

    /// The longest gap between consecutive fires among the next `samples` fires after `from`.
    pub fn longest_gap(&self, from: DateTime<Utc>, samples: usize) -> Option<Duration> {
        let mut fires = self.iter_after(from).take(samples);
        let mut previous = fires.next()?;
        let mut longest: Option<Duration> = None;
        for at in fires {
            let gap = at - previous;
            longest = Some(longest.map_or(gap, |l| l.max(gap)));
            previous = at;
        }
        longest
    }

    /// `at` as a count of seconds on the zone's wall clock (local time read as if it were UTC).
    fn local_seconds(&self, at: DateTime<Utc>) -> i64 {
        let offset = self.tz.offset_from_utc_datetime(&at.naive_utc()).fix();
        at.timestamp() + i64::from(offset.local_minus_utc())
    }
}

fn ordered(a: DateTime<Utc>, b: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    if a <= b { (a, b) } else { (b, a) }
}

fn naive_from_seconds(seconds: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(seconds, 0).map(|d| d.naive_utc())
}

/// The first local second a search considers, as local seconds.
fn first_search_second() -> i64 {
    NaiveDate::from_ymd_opt(MIN_YEAR, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp())
}

/// The last local second a search considers, as local seconds.
fn last_search_second() -> i64 {
    NaiveDate::from_ymd_opt(MAX_YEAR, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map_or(i64::MAX, |d| d.and_utc().timestamp())
}

/// A change of UTC offset: the first instant of the new offset and the offsets either side.
struct Transition {
    at: i64,
    before: i32,
    after: i32,
}

fn offset_at(tz: Tz, seconds: i64) -> Option<i32> {
    let utc = DateTime::from_timestamp(seconds, 0)?.naive_utc();
    Some(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc())
}

/// The first offset change in (`lo`, `hi`] (UTC seconds), assuming at most one; `None` if the offsets at both ends agree.
fn transition(tz: Tz, lo: i64, hi: i64) -> Option<Transition> {
    let before = offset_at(tz, lo)?;
    if offset_at(tz, hi)? == before {
        return None;
    }
    // Invariant: offset(lo) == before, offset(hi) != before.
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid)? == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(Transition {
        at: hi,
        before,
        after: offset_at(tz, hi)?,
    })
}

/// The local-time gap [start, end) containing the non-existent local second `local`.
fn gap_around(tz: Tz, local: i64) -> Option<(i64, i64)> {
    // UTC offsets lie within a day, so the transition lies within a day of `local`.
    let t = transition(tz, local - SECONDS_PER_DAY, local + SECONDS_PER_DAY)?;
    let (start, end) = (t.at + i64::from(t.before), t.at + i64::from(t.after));
    (start <= local && local < end).then_some((start, end))
}

// ---------------------------------------------------------------------------------------------
// Field sets and the calendar search.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    seconds: u64,
    minutes: u64,
    hours: u32,
    months: u16,
    days: DayRule,
    /// Bit `y - MIN_YEAR`; `None` = every year.
    years: Option<[u64; 4]>,
}

/// How the two day fields combine, after normalisation (so equal rules mean equal days).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayRule {
    All,
    Dom(DomSpec),
    Dow(DowSpec),
    Both(DomSpec, DowSpec),
    Either(DomSpec, DowSpec),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DomSpec {
    /// Bits 1-31.
    plain: u32,
    /// Bit n = `L-n` (`L` is bit 0).
    from_last: u32,
    /// Bit n = `nW`.
    nearest: u32,
    last_weekday: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DowSpec {
    /// Bit 0 = Sunday ... bit 6 = Saturday.
    plain: u8,
    /// Weekdays written as `nL`.
    last: u8,
    /// `nth[k - 1]` holds the weekdays written as `n#k`.
    nth: [u8; 5],
}

const ALL_DAYS: u32 = 0xFFFF_FFFE;
const ALL_WEEKDAYS: u8 = 0x7F;
const SATURDAY: u32 = 6;
const SUNDAY: u32 = 0;

impl DomSpec {
    fn full() -> Self {
        DomSpec {
            plain: ALL_DAYS,
            ..DomSpec::default()
        }
    }

    fn is_full(&self) -> bool {
        self.plain == ALL_DAYS
    }

    fn normalised(self) -> Self {
        // Every special names a subset of the days, so a full plain set absorbs them.
        if self.is_full() {
            DomSpec::full()
        } else {
            self
        }
    }

    /// Matching days (bits 1..=`len`) of a month with `len` days whose 1st is weekday `first`.
    fn mask(&self, len: u32, first: u32) -> u32 {
        let mut mask = self.plain & month_days(len);
        let mut from_last = self.from_last;
        while from_last != 0 {
            let n = from_last.trailing_zeros();
            from_last &= from_last - 1;
            if n < len {
                mask |= 1 << (len - n);
            }
        }
        let mut nearest = self.nearest & month_days(len);
        while nearest != 0 {
            let day = nearest.trailing_zeros();
            nearest &= nearest - 1;
            let weekday = (first + day - 1) % 7;
            let target = match weekday {
                SATURDAY if day == 1 => 3,
                SATURDAY => day - 1,
                SUNDAY if day == len => day - 2,
                SUNDAY => day + 1,
                _ => day,
            };
            mask |= 1 << target;
        }
        if self.last_weekday {
            let target = match (first + len - 1) % 7 {
                SATURDAY => len - 1,
                SUNDAY => len - 2,
                _ => len,
            };
            mask |= 1 << target;
        }
        mask
    }
}

impl DowSpec {
    fn full() -> Self {
        DowSpec {
            plain: ALL_WEEKDAYS,
            ..DowSpec::default()
        }
    }

    fn is_full(&self) -> bool {
        self.plain == ALL_WEEKDAYS
    }

    fn normalised(mut self) -> Self {
        // `w#1,w#2,...,w#5` is every `w`; and `wL`/`w#k` add nothing to a plain `w`.
        self.plain |= self.nth.iter().fold(ALL_WEEKDAYS, |all, &k| all & k);
        if self.is_full() {
            return DowSpec::full();
        }
        self.last &= !self.plain;
        for k in &mut self.nth {
            *k &= !self.plain;
        }
        self
    }

    fn mask(&self, len: u32, first: u32) -> u32 {
        let plain = u64::from(self.plain);
        // Bit i of `week` says whether day i + 1 (weekday (first + i) % 7) matches.
        let week = ((plain >> first) | (plain << (7 - first))) & 0x7F;
        let repeated = week | (week << 7) | (week << 14) | (week << 21) | (week << 28);
        let mut mask = ((repeated << 1) as u32) & month_days(len);
        let last_weekday = (first + len - 1) % 7;
        let mut last = self.last;
        while last != 0 {
            let w = last.trailing_zeros();
            last &= last - 1;
            mask |= 1 << (len - (last_weekday + 7 - w) % 7);
        }
        for (k, &weekdays) in (0u32..).zip(self.nth.iter()) {
            let mut weekdays = weekdays;
            while weekdays != 0 {
                let w = weekdays.trailing_zeros();
                weekdays &= weekdays - 1;
                let day = 1 + (w + 7 - first) % 7 + 7 * k;
                if day <= len {
                    mask |= 1 << day;
                }
            }
        }
        mask
    }

    fn key(&self) -> String {
        let nth: Vec<String> = self.nth.iter().map(|k| format!("{k:x}")).collect();
        format!("{:x}.{:x}.{}", self.plain, self.last, nth.join("."))
    }
}

impl DomSpec {
    fn key(&self) -> String {
        format!(
            "{:x}.{:x}.{:x}.{}",
            self.plain,
            self.from_last,
            self.nearest,
            u8::from(self.last_weekday)
        )
    }
}

impl DayRule {
    fn new(dom: DomSpec, dow: DowSpec, either: bool) -> Self {
        let (dom, dow) = (dom.normalised(), dow.normalised());
        match (dom.is_full(), dow.is_full()) {
            (true, true) => DayRule::All,
            // "Either" with one side matching every day matches every day.
            (true, false) | (false, true) if either => DayRule::All,
            (true, false) => DayRule::Dow(dow),
            (false, true) => DayRule::Dom(dom),
            (false, false) if either => DayRule::Either(dom, dow),
            (false, false) => DayRule::Both(dom, dow),
        }
    }

    fn mask(&self, year: i32, month: u32) -> u32 {
        let len = days_in_month(year, month);
        let first = || {
            NaiveDate::from_ymd_opt(year, month, 1)
                .map_or(0, |d| d.weekday().num_days_from_sunday())
        };
        match self {
            DayRule::All => month_days(len),
            DayRule::Dom(dom) => dom.mask(len, first()),
            DayRule::Dow(dow) => dow.mask(len, first()),
            DayRule::Both(dom, dow) => {
                let first = first();
                dom.mask(len, first) & dow.mask(len, first)
            }
            DayRule::Either(dom, dow) => {
                let first = first();
                dom.mask(len, first) | dow.mask(len, first)
            }
        }
    }

    fn key(&self) -> String {
        match self {
            DayRule::All => "*".to_string(),
            DayRule::Dom(dom) => format!("dom({})", dom.key()),
            DayRule::Dow(dow) => format!("dow({})", dow.key()),
            DayRule::Both(dom, dow) => format!("and({},{})", dom.key(), dow.key()),
            DayRule::Either(dom, dow) => format!("or({},{})", dom.key(), dow.key()),
        }
    }
}

/// Bits 1..=`len`: the days a month of `len` days has.
fn month_days(len: u32) -> u32 {
    ALL_DAYS & (u32::MAX >> (31 - len))
}

fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

/// The highest set bit strictly below `end`.
fn prev_bit(mask: u64, end: u32) -> Option<u32> {
    let rest = if end >= 64 {
        mask
    } else {
        mask & ((1u64 << end) - 1)
    };
    (rest != 0).then(|| 63 - rest.leading_zeros())
}

type TimeOfDay = (u32, u32, u32);
const START_OF_DAY: TimeOfDay = (0, 0, 0);
const END_OF_DAY: TimeOfDay = (23, 59, 59);

impl Fields {
    fn year_allowed(&self, year: i32) -> bool {
        match &self.years {
            None => true,
            Some(bits) => {
                let Ok(i) = u32::try_from(year - MIN_YEAR) else {
                    return false;
                };
                i < YEAR_COUNT && bits[(i / 64) as usize] >> (i % 64) & 1 == 1
            }
        }
    }

    /// The first allowed year at or after `from`, within the search range.
    fn next_year(&self, from: i32) -> Option<i32> {
        (from.max(MIN_YEAR)..=MAX_YEAR).find(|&y| self.year_allowed(y))
    }

    /// The last allowed year at or before `upto`, within the search range.
    fn prev_year(&self, upto: i32) -> Option<i32> {
        (MIN_YEAR..=upto.min(MAX_YEAR))
            .rev()
            .find(|&y| self.year_allowed(y))
    }

    /// The first matching time of day at or after `from`.
    fn next_time(&self, (h, m, s): TimeOfDay) -> Option<TimeOfDay> {
        let first = |mask: u64| next_bit(mask, 0).unwrap_or(0);
        if self.hours >> h & 1 == 1 {
            if self.minutes >> m & 1 == 1
                && let Some(s) = next_bit(self.seconds, s)
            {
                return Some((h, m, s));
            }
            if let Some(m) = next_bit(self.minutes, m + 1) {
                return Some((h, m, first(self.seconds)));
            }
        }
        let h = next_bit(u64::from(self.hours), h + 1)?;
        Some((h, first(self.minutes), first(self.seconds)))
    }

    /// The last matching time of day at or before `upto`.
    fn prev_time(&self, (h, m, s): TimeOfDay) -> Option<TimeOfDay> {
        let last = |mask: u64| prev_bit(mask, 64).unwrap_or(0);
        if self.hours >> h & 1 == 1 {
            if self.minutes >> m & 1 == 1
                && let Some(s) = prev_bit(self.seconds, s + 1)
            {
                return Some((h, m, s));
            }
            if let Some(m) = prev_bit(self.minutes, m) {
                return Some((h, m, last(self.seconds)));
            }
        }
        let h = prev_bit(u64::from(self.hours), h)?;
        Some((h, last(self.minutes), last(self.seconds)))
    }

    /// The first matching local time at or after `start` (local seconds), ignoring daylight saving.
    fn next_local(&self, start: i64) -> Option<NaiveDateTime> {
        let start = naive_from_seconds(start.max(first_search_second()))?;
        let (mut year, mut month, mut day) = (start.year(), start.month(), start.day());
        let mut time = (start.hour(), start.minute(), start.second());
        loop {
            let allowed = self.next_year(year)?;
            if allowed != year {
                (year, month, day, time) = (allowed, 1, 1, START_OF_DAY);
            }
            match next_bit(u64::from(self.months), month) {
                None => {
                    (year, month, day, time) = (year + 1, 1, 1, START_OF_DAY);
                    continue;
                }
                Some(m) if m != month => (month, day, time) = (m, 1, START_OF_DAY),
                Some(_) => {}
            }
            let days = u64::from(self.days.mask(year, month));
            let mut from_day = day;
            // At most two rounds: any later day starts at the day's first matching time.
            while let Some(d) = next_bit(days, from_day) {
                let from = if d == day { time } else { START_OF_DAY };
                if let Some((h, m, s)) = self.next_time(from) {
                    return NaiveDate::from_ymd_opt(year, month, d)?.and_hms_opt(h, m, s);
                }
                from_day = d + 1;
            }
            (month, day, time) = (month + 1, 1, START_OF_DAY);
            if month > 12 {
                (year, month) = (year + 1, 1);
            }
        }
    }

    /// The last matching local time at or before `end` (local seconds) in a year no earlier than `floor_year`.
    fn prev_local(&self, end: i64, floor_year: i32) -> Option<NaiveDateTime> {
        let end = naive_from_seconds(end)?;
        let (mut year, mut month, mut day) = (end.year(), end.month(), end.day());
        let mut time = (end.hour(), end.minute(), end.second());
        loop {
            let allowed = self.prev_year(year)?;
            if allowed < floor_year {
                return None;
            }
            if allowed != year {
                (year, month, day, time) = (allowed, 12, 31, END_OF_DAY);
            }
            match prev_bit(u64::from(self.months), month + 1) {
                None => {
                    (year, month, day, time) = (year - 1, 12, 31, END_OF_DAY);
                    continue;
                }
                Some(m) if m != month => (month, day, time) = (m, 31, END_OF_DAY),
                Some(_) => {}
            }
            let days = u64::from(self.days.mask(year, month));
            let mut end_day = day + 1;
            while let Some(d) = prev_bit(days, end_day) {
                let upto = if d == day { time } else { END_OF_DAY };
                if let Some((h, m, s)) = self.prev_time(upto) {
                    return NaiveDate::from_ymd_opt(year, month, d)?.and_hms_opt(h, m, s);
                }
                end_day = d;
            }
            (month, day, time) = (month - 1, 31, END_OF_DAY);
            if month == 0 {
                (year, month) = (year - 1, 12);
            }
        }
    }
}

fn group_key_for(tz: Tz, fields: &Fields) -> String {
    let mut key = format!(
        "{}|{:x}|{:x}|{:x}|{:x}|{}|",
        tz.name(),
        fields.seconds,
        fields.minutes,
        fields.hours,
        fields.months,
        fields.days.key()
    );
    match &fields.years {
        None => key.push('*'),
        Some(bits) => {
            for word in bits {
                let _ = write!(key, "{word:x}.");
            }
        }
    }
    key
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// What one field accepts; `allowed` is shown to the user when a value is out of range.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    first_name: u32,
    allowed: &'static str,
}

const WEEKDAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
    allowed: "0-59",
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    allowed: "0-59",
    ..SECOND
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    max: 23,
    allowed: "0-23",
    ..SECOND
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
    allowed: "1-31, L, L-n, nW or LW",
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: MONTH_NAMES,
    first_name: 1,
    allowed: "1-12 or JAN-DEC",
};
const DAY_OF_WEEK_VIXIE: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: WEEKDAY_NAMES,
    first_name: 0,
    allowed: "0-7 or SUN-SAT (0 and 7 = Sunday), nL, n#k or L",
};
const DAY_OF_WEEK_AWS: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: WEEKDAY_NAMES,
    first_name: 1,
    allowed: "1-7 or SUN-SAT (1 = SUN), nL, n#k or L",
};
const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: MIN_YEAR as u32,
    max: MAX_YEAR as u32,
    names: &[],
    first_name: 0,
    allowed: "1970-2199",
};

fn split_expression(upper: &str) -> Result<(Syntax, Vec<&str>), String> {
    if upper.is_empty() {
        return Err("the expression is empty".to_string());
    }
    if upper.starts_with("RATE(") {
        return Err(
            "rate(...) schedules are not supported: a rate has no fixed slots (it counts \
                    from whenever it was created), and each backup is tied to a slot; write the \
                    times you want as a cron expression"
                .to_string(),
        );
    }
    if upper.starts_with("AT(") {
        return Err("one-time at(...) schedules are not supported".to_string());
    }
    if let Some(inner) = upper.strip_prefix("CRON(") {
        let inner = inner
            .strip_suffix(')')
            .ok_or("cron(...) is missing its closing parenthesis")?;
        let parts: Vec<&str> = inner.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(format!(
                "AWS cron(...) takes 6 fields (minutes hours day-of-month month day-of-week year), got {}",
                parts.len()
            ));
        }
        return Ok((Syntax::Aws, parts));
    }
    if upper.contains(['(', ')']) {
        return Err("unknown expression type (only cron(...) is accepted in parentheses)".into());
    }
    let parts: Vec<&str> = upper.split_whitespace().collect();
    match parts.len() {
        5 => Ok((Syntax::Cron5, parts)),
        6 => Ok((Syntax::Cron6, parts)),
        7 => Err("7 fields: a year field is only accepted in the AWS form cron(...)".into()),
        n => Err(format!("got {n} fields")),
    }
}

fn parse_fields(syntax: Syntax, parts: &[&str]) -> Result<Fields, String> {
    let (seconds_text, rest) = match syntax {
        Syntax::Cron6 => (parts[0], &parts[1..]),
        Syntax::Cron5 | Syntax::Aws => ("0", parts),
    };
    let fields = parse_field_texts(syntax, seconds_text, rest);
    if syntax == Syntax::Cron6 {
        // A 6-field expression ending in a year or with `?` in the month slot is an AWS
        // expression without its `cron(...)` wrapper; say so instead of a puzzling range error.
        let looks_aws = rest[3] == "?" || rest[4].parse::<u32>().is_ok_and(|v| v >= YEAR.min);
        if looks_aws {
            return fields.map_err(|e| format!("{e} (for AWS syntax write cron(...) around it)"));
        }
    }
    fields
}

fn parse_field_texts(syntax: Syntax, seconds: &str, rest: &[&str]) -> Result<Fields, String> {
    let seconds = parse_set(seconds, &SECOND)?;
    let minutes = parse_set(rest[0], &MINUTE)?;
    let hours = parse_set(rest[1], &HOUR)? as u32;
    let (dom, dom_unrestricted) = parse_dom(rest[2])?;
    let months = parse_set(rest[3], &MONTH)? as u16;
    let (dow, dow_unrestricted) = parse_dow(rest[4], syntax)?;
    let (days, years) = match syntax {
        Syntax::Aws => {
            match (rest[2] == "?", rest[4] == "?") {
                (true, true) => {
                    return Err(
                        "day-of-month and day-of-week are both ?; AWS needs exactly one \
                                of them to be ?, e.g. cron(0 3 * * ? *) or cron(0 3 ? * MON *)"
                            .into(),
                    );
                }
                (false, false) => {
                    return Err(format!(
                        "day-of-month {:?} and day-of-week {:?}: AWS needs exactly one of them \
                         to be ?, e.g. cron(0 3 * * ? *) or cron(0 3 ? * MON *)",
                        rest[2], rest[4]
                    ));
                }
                _ => {}
            }
            (DayRule::new(dom, dow, false), parse_years(rest[5])?)
        }
        Syntax::Cron5 | Syntax::Cron6 => {
            let either = !dom_unrestricted && !dow_unrestricted;
            (DayRule::new(dom, dow, either), None)
        }
    };
    Ok(Fields {
        seconds,
        minutes,
        hours,
        months,
        days,
        years,
    })
}

/// Calls `item` for each comma-separated item, prefixing errors with the field and its text.
fn for_each_item(
    text: &str,
    spec: &FieldSpec,
    mut item: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    text.split(',')
        .try_for_each(|it| {
            if it.is_empty() {
                Err("empty list item".to_string())
            } else if it == "?" {
                Err("? is only allowed on its own, in day-of-month or day-of-week".to_string())
            } else {
                item(it)
            }
        })
        .map_err(|e| format!("{} field {text:?}: {e}", spec.name))
}

fn parse_value(token: &str, spec: &FieldSpec) -> Result<u32, String> {
    if token.is_empty() {
        return Err(format!("missing value (allowed {})", spec.allowed));
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return match token.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{token} is out of range (allowed {})",
                spec.allowed
            )),
        };
    }
    if let Some(i) = spec.names.iter().position(|n| *n == token) {
        return Ok(i as u32 + spec.first_name);
    }
    let hint = if token.contains(['L', 'W', '#']) {
        " (L, W and # only go in the day fields)"
    } else {
        ""
    };
    Err(format!(
        "{token:?} is not a valid value (allowed {}){hint}",
        spec.allowed
    ))
}

/// A number in `lo..=hi` inside a special such as `L-n`, `nW` or `n#k`.
fn parse_number(token: &str, lo: u32, hi: u32, what: &str) -> Result<u32, String> {
    match token.parse::<u32>() {
        Ok(v) if token.bytes().all(|b| b.is_ascii_digit()) && (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("{what}: {token:?} is not a number in {lo}-{hi}")),
    }
}

/// `*`, `a`, `a-b`, with an optional `/step`, as the values it covers.
fn parse_range(
    item: &str,
    spec: &FieldSpec,
) -> Result<std::iter::StepBy<std::ops::RangeInclusive<u32>>, String> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => {
            let span = spec.max - spec.min + 1;
            let step = step
                .parse::<u32>()
                .ok()
                .filter(|s| (1..=span).contains(s))
                .ok_or_else(|| format!("step {step:?} in {item:?} must be a number in 1-{span}"))?;
            (base, Some(step))
        }
        None => (item, None),
    };
    let (lo, hi) = if base == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = base.split_once('-') {
        let (lo, mut hi) = (parse_value(a, spec)?, parse_value(b, spec)?);
        // Vixie day-of-week has Sunday at both ends (0 and 7), so `FRI-SUN` means 5-7.
        if hi == 0 && lo > 0 && spec.max == 7 && spec.min == 0 {
            hi = 7;
        }
        if lo > hi {
            return Err(format!(
                "range {base:?} runs backwards (allowed {}); split it into two ranges",
                spec.allowed
            ));
        }
        (lo, hi)
    } else {
        let v = parse_value(base, spec)?;
        (v, if step.is_some() { spec.max } else { v })
    };
    Ok((lo..=hi).step_by(step.unwrap_or(1) as usize))
}

fn parse_set(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut bits = 0u64;
    for_each_item(text, spec, |item| {
        for v in parse_range(item, spec)? {
            bits |= 1 << v;
        }
        Ok(())
    })?;
    Ok(bits)
}

/// The day-of-month set and whether the field counts as unrestricted for the Vixie rule.
fn parse_dom(text: &str) -> Result<(DomSpec, bool), String> {
    if text == "?" {
        return Ok((DomSpec::full(), true));
    }
    let mut spec = DomSpec::default();
    for_each_item(text, &DAY_OF_MONTH, |item| {
        if item == "L" {
            spec.from_last |= 1;
        } else if item == "LW" {
            spec.last_weekday = true;
        } else if let Some(n) = item.strip_prefix("L-") {
            spec.from_last |= 1 << parse_number(n, 0, 30, "L-n")?;
        } else if let Some(n) = item.strip_suffix('W') {
            spec.nearest |= 1 << parse_number(n, 1, 31, "nW")?;
        } else if item.contains(['L', 'W', '#']) {
            return Err(format!(
                "{item:?} is not a day-of-month special (L, L-n, nW or LW)"
            ));
        } else {
            for v in parse_range(item, &DAY_OF_MONTH)? {
                spec.plain |= 1 << v;
            }
        }
        Ok(())
    })?;
    Ok((spec, text.starts_with('*')))
}

/// The day-of-week set and whether the field counts as unrestricted for the Vixie rule.
fn parse_dow(text: &str, syntax: Syntax) -> Result<(DowSpec, bool), String> {
    if text == "?" {
        return Ok((DowSpec::full(), true));
    }
    let (field, weekday): (&FieldSpec, fn(u32) -> u32) = match syntax {
        Syntax::Aws => (&DAY_OF_WEEK_AWS, |v| v - 1),
        Syntax::Cron5 | Syntax::Cron6 => (&DAY_OF_WEEK_VIXIE, |v| v % 7),
    };
    let mut spec = DowSpec::default();
    for_each_item(text, field, |item| {
        if item == "L" {
            spec.plain |= 1 << SATURDAY;
        } else if let Some((w, k)) = item.split_once('#') {
            let w = weekday(parse_value(w, field)?);
            let k = parse_number(k, 1, 5, "n#k")?;
            spec.nth[(k - 1) as usize] |= 1 << w;
        } else if let Some(w) = item.strip_suffix('L') {
            spec.last |= 1 << weekday(parse_value(w, field)?);
        } else {
            for v in parse_range(item, field)? {
                spec.plain |= 1 << weekday(v);
            }
        }
        Ok(())
    })?;
    Ok((spec, text.starts_with('*')))
}

fn parse_years(text: &str) -> Result<Option<[u64; 4]>, String> {
    if text == "*" {
        return Ok(None);
    }
    let mut bits = [0u64; 4];
    for_each_item(text, &YEAR, |item| {
        for v in parse_range(item, &YEAR)? {
            let i = v - YEAR.min;
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        Ok(())
    })?;
    // Every year in range is the same as `*` within the search range; normalise for group_key.
    let ones: u32 = bits.iter().map(|w| w.count_ones()).sum();
    Ok((ones != YEAR_COUNT).then_some(bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use chrono_tz::America::New_York;
    use chrono_tz::Australia::Lord_Howe;
    use chrono_tz::Europe::Berlin;
    use chrono_tz::UTC;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test timestamp")
    }

    fn sched(expr: &str, tz: Tz) -> Schedule {
        Schedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    /// The next `n` fires after `from`, as UTC RFC 3339 strings.
    fn fires(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        sched(expr, tz)
            .iter_after(utc(from))
            .take(n)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    /// The next `n` fires after `from`, as local wall-clock dates (for day-selection tests).
    fn fire_days(expr: &str, from: &str, n: usize) -> Vec<String> {
        sched(expr, UTC)
            .iter_after(utc(from))
            .take(n)
            .map(|t| t.format("%Y-%m-%d %a").to_string())
            .collect()
    }

    fn error(expr: &str) -> String {
        let err = Schedule::parse(expr, UTC).expect_err(expr).message;
        assert!(err.contains(ACCEPTED_FORMS), "{err}");
        assert!(err.contains(expr.trim()), "{err}");
        err
    }

    #[test]
    fn accessors_report_what_was_parsed() {
        let s = sched("  0 3 * * *  ", Berlin);
        assert_eq!(s.expression(), "0 3 * * *");
        assert_eq!(s.timezone(), Berlin);
        assert_eq!(s.syntax(), Syntax::Cron5);
        assert_eq!(sched("0 0 3 * * *", UTC).syntax(), Syntax::Cron6);
        assert_eq!(sched("cron(0 3 * * ? *)", UTC).syntax(), Syntax::Aws);
        assert_eq!(sched("CRON(0 3 * * ? *)", UTC).syntax(), Syntax::Aws);
    }

    #[test]
    fn five_field_daily() {
        assert_eq!(
            fires("0 3 * * *", UTC, "2026-01-01T03:00:00Z", 2),
            ["2026-01-02T03:00:00Z", "2026-01-03T03:00:00Z"]
        );
        // Strictly after, also with a sub-second instant.
        assert_eq!(
            fires("0 3 * * *", UTC, "2026-01-01T02:59:59.999Z", 1),
            ["2026-01-01T03:00:00Z"]
        );
        assert_eq!(
            fires("0 3 * * *", UTC, "2026-01-01T03:00:00.001Z", 1),
            ["2026-01-02T03:00:00Z"]
        );
    }

    #[test]
    fn six_field_seconds() {
        assert_eq!(
            fires("*/20 * * * * *", UTC, "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:40Z",
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:01:20Z"
            ]
        );
        assert_eq!(
            fires("30 15 10 * * *", UTC, "2026-01-01T12:00:00Z", 1),
            ["2026-01-02T10:15:30Z"]
        );
        assert_eq!(
            fires("* * * * * *", UTC, "2026-12-31T23:59:59Z", 1),
            ["2027-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn aws_form_with_weekdays_and_years() {
        assert_eq!(
            fires("cron(0 3 * * ? *)", UTC, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T03:00:00Z"]
        );
        // 2026-01-02 is a Friday; MON-FRI in AWS numbering is 2-6.
        assert_eq!(
            fires("cron(15 10 ? * MON-FRI *)", UTC, "2026-01-02T11:00:00Z", 2),
            ["2026-01-05T10:15:00Z", "2026-01-06T10:15:00Z"]
        );
        assert_eq!(
            fires("cron(15 10 ? * 2-6 *)", UTC, "2026-01-02T11:00:00Z", 2),
            fires("cron(15 10 ? * MON-FRI *)", UTC, "2026-01-02T11:00:00Z", 2)
        );
        // AWS 1 = Sunday; 2026-01-04 is a Sunday.
        assert_eq!(
            fire_days("cron(0 0 ? * 1 *)", "2026-01-01T00:00:00Z", 1),
            ["2026-01-04 Sun"]
        );
        let s = sched("cron(0 12 1 * ? 2026-2027)", UTC);
        assert_eq!(
            s.next_after(utc("2025-06-01T00:00:00Z")),
            Some(utc("2026-01-01T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2027-11-15T00:00:00Z")),
            Some(utc("2027-12-01T12:00:00Z"))
        );
        assert_eq!(s.next_after(utc("2027-12-01T12:00:00Z")), None);
        assert_eq!(s.iter_after(utc("2026-01-01T00:00:00Z")).count(), 24);
        // Year lists and steps.
        assert_eq!(
            fires(
                "cron(0 0 1 1 ? 2030,2040/50)",
                UTC,
                "2026-01-01T00:00:00Z",
                3
            ),
            [
                "2030-01-01T00:00:00Z",
                "2040-01-01T00:00:00Z",
                "2090-01-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn past_year_parses_but_never_fires_again() {
        let s = sched("cron(0 3 * * ? 2020)", UTC);
        assert_eq!(s.next_after(utc("2026-01-01T00:00:00Z")), None);
        assert_eq!(s.iter_after(utc("2026-01-01T00:00:00Z")).count(), 0);
        assert_eq!(
            s.latest_in(utc("2020-06-01T00:00:00Z"), utc("2026-01-01T00:00:00Z")),
            Some(utc("2020-12-31T03:00:00Z"))
        );
        assert_eq!(s.longest_gap(utc("2026-01-01T00:00:00Z"), 10), None);
    }

    #[test]
    fn sunday_is_0_and_7_in_vixie_and_names_are_case_insensitive() {
        let sunday = fire_days("0 0 * * 0", "2026-01-01T00:00:00Z", 2);
        assert_eq!(sunday, ["2026-01-04 Sun", "2026-01-11 Sun"]);
        assert_eq!(fire_days("0 0 * * 7", "2026-01-01T00:00:00Z", 2), sunday);
        assert_eq!(fire_days("0 0 * * sun", "2026-01-01T00:00:00Z", 2), sunday);
        assert_eq!(fire_days("0 0 * * Sun", "2026-01-01T00:00:00Z", 2), sunday);
        assert_eq!(
            fire_days("0 0 * * fri-sun", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-02 Fri",
                "2026-01-03 Sat",
                "2026-01-04 Sun",
                "2026-01-09 Fri"
            ]
        );
        assert_eq!(
            fire_days("0 0 * * 5-7", "2026-01-01T00:00:00Z", 4),
            fire_days("0 0 * * fri-sun", "2026-01-01T00:00:00Z", 4)
        );
        assert_eq!(
            fire_days("0 0 * * 5-0", "2026-01-01T00:00:00Z", 4),
            fire_days("0 0 * * fri-sun", "2026-01-01T00:00:00Z", 4)
        );
        assert_eq!(
            fire_days("0 0 * * SUN-SUN", "2026-01-01T00:00:00Z", 1),
            ["2026-01-04 Sun"]
        );
        assert_eq!(
            fire_days("0 0 1 jan,Jul *", "2026-01-01T00:00:00Z", 3),
            ["2026-07-01 Wed", "2027-01-01 Fri", "2027-07-01 Thu"]
        );
        assert_eq!(
            fire_days("cron(0 0 1 feb-apr ? *)", "2026-01-01T00:00:00Z", 3),
            ["2026-02-01 Sun", "2026-03-01 Sun", "2026-04-01 Wed"]
        );
    }

    #[test]
    fn steps_and_lists() {
        assert_eq!(
            fires("5/15 * * * *", UTC, "2026-01-01T00:00:00Z", 5),
            [
                "2026-01-01T00:05:00Z",
                "2026-01-01T00:20:00Z",
                "2026-01-01T00:35:00Z",
                "2026-01-01T00:50:00Z",
                "2026-01-01T01:05:00Z"
            ]
        );
        assert_eq!(
            fires("0 9-17/4 * * *", UTC, "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T09:00:00Z",
                "2026-01-01T13:00:00Z",
                "2026-01-01T17:00:00Z",
                "2026-01-02T09:00:00Z"
            ]
        );
        assert_eq!(
            fires("0 1,2,22-23 * * *", UTC, "2026-01-01T01:30:00Z", 4),
            [
                "2026-01-01T02:00:00Z",
                "2026-01-01T22:00:00Z",
                "2026-01-01T23:00:00Z",
                "2026-01-02T01:00:00Z"
            ]
        );
        // AWS `*/2` over 1-7 is SUN, TUE, THU, SAT.
        assert_eq!(
            fire_days("cron(0 0 ? * */2 *)", "2026-01-04T00:00:00Z", 4),
            [
                "2026-01-06 Tue",
                "2026-01-08 Thu",
                "2026-01-10 Sat",
                "2026-01-11 Sun"
            ]
        );
        // `*/60` minutes is just minute 0; `?` in Vixie is `*`.
        assert_eq!(
            fires("*/60 * ? * *", UTC, "2026-01-01T00:00:00Z", 1),
            fires("0 * * * *", UTC, "2026-01-01T00:00:00Z", 1)
        );
    }

    #[test]
    fn last_day_and_days_before_last() {
        assert_eq!(
            fire_days("0 0 L * *", "2026-01-01T00:00:00Z", 3),
            ["2026-01-31 Sat", "2026-02-28 Sat", "2026-03-31 Tue"]
        );
        assert_eq!(
            fire_days("0 0 L 2 *", "2027-03-01T00:00:00Z", 2),
            ["2028-02-29 Tue", "2029-02-28 Wed"]
        );
        assert_eq!(
            fire_days("cron(0 0 L-2 * ? *)", "2026-01-01T00:00:00Z", 3),
            ["2026-01-29 Thu", "2026-02-26 Thu", "2026-03-29 Sun"]
        );
        // L-30 only exists in 31-day months (day 1).
        assert_eq!(
            fire_days("0 0 L-30 * *", "2026-01-02T00:00:00Z", 2),
            ["2026-03-01 Sun", "2026-05-01 Fri"]
        );
    }

    #[test]
    fn nearest_weekday_stays_in_the_month() {
        // 2026-08-01 is a Saturday: 1W is Monday the 3rd, not Friday July 31.
        assert_eq!(
            fire_days("0 0 1W * *", "2026-07-15T00:00:00Z", 3),
            ["2026-08-03 Mon", "2026-09-01 Tue", "2026-10-01 Thu"]
        );
        // 2026-11-01 is a Sunday: Monday the 2nd.
        assert_eq!(
            fire_days("cron(0 0 1W * ? *)", "2026-10-15T00:00:00Z", 1),
            ["2026-11-02 Mon"]
        );
        // 31st on a Saturday -> Friday 30th; on a Sunday -> Friday 29th (not Monday next month);
        // months without a 31st do not fire.
        assert_eq!(
            fire_days("0 0 31W * *", "2026-01-01T00:00:00Z", 7),
            [
                "2026-01-30 Fri",
                "2026-03-31 Tue",
                "2026-05-29 Fri",
                "2026-07-31 Fri",
                "2026-08-31 Mon",
                "2026-10-30 Fri",
                "2026-12-31 Thu"
            ]
        );
        // Mid-month: Sunday 15th -> Monday 16th, Saturday 15th -> Friday 14th.
        assert_eq!(
            fire_days("0 0 15W * *", "2026-02-01T00:00:00Z", 1),
            ["2026-02-16 Mon"]
        );
        assert_eq!(
            fire_days("0 0 15W * *", "2026-08-01T00:00:00Z", 1),
            ["2026-08-14 Fri"]
        );
    }

    #[test]
    fn last_weekday_of_month() {
        assert_eq!(
            fire_days("0 0 LW * *", "2026-01-01T00:00:00Z", 5),
            [
                "2026-01-30 Fri",
                "2026-02-27 Fri",
                "2026-03-31 Tue",
                "2026-04-30 Thu",
                "2026-05-29 Fri"
            ]
        );
        assert_eq!(
            fire_days("cron(0 0 LW * ? *)", "2026-01-01T00:00:00Z", 5),
            fire_days("0 0 LW * *", "2026-01-01T00:00:00Z", 5)
        );
    }

    #[test]
    fn last_weekday_of_kind() {
        let last_friday = ["2026-01-30 Fri", "2026-02-27 Fri", "2026-03-27 Fri"];
        assert_eq!(
            fire_days("0 0 * * 5L", "2026-01-01T00:00:00Z", 3),
            last_friday
        );
        assert_eq!(
            fire_days("cron(0 0 ? * 6L *)", "2026-01-01T00:00:00Z", 3),
            last_friday
        );
        assert_eq!(
            fire_days("0 0 * * FRIL", "2026-01-01T00:00:00Z", 3),
            last_friday
        );
        // Bare L in day-of-week is Saturday.
        assert_eq!(
            fire_days("0 0 * * L", "2026-01-01T00:00:00Z", 2),
            ["2026-01-03 Sat", "2026-01-10 Sat"]
        );
        assert_eq!(
            fire_days("cron(0 0 ? * L *)", "2026-01-01T00:00:00Z", 1),
            ["2026-01-03 Sat"]
        );
    }

    #[test]
    fn nth_weekday() {
        let first_monday = ["2026-01-05 Mon", "2026-02-02 Mon", "2026-03-02 Mon"];
        assert_eq!(
            fire_days("0 0 * * 1#1", "2026-01-01T00:00:00Z", 3),
            first_monday
        );
        assert_eq!(
            fire_days("cron(0 0 ? * 2#1 *)", "2026-01-01T00:00:00Z", 3),
            first_monday
        );
        assert_eq!(
            fire_days("0 0 * * mon#1", "2026-01-01T00:00:00Z", 3),
            first_monday
        );
        // Fifth Friday: only months that have one.
        assert_eq!(
            fire_days("cron(0 0 ? * 6#5 *)", "2026-01-01T00:00:00Z", 3),
            ["2026-01-30 Fri", "2026-05-29 Fri", "2026-07-31 Fri"]
        );
        // Lists of specials.
        assert_eq!(
            fire_days("0 0 * * 2#2,4#4", "2026-01-01T00:00:00Z", 2),
            ["2026-01-13 Tue", "2026-01-22 Thu"]
        );
    }

    #[test]
    fn day_specials_agree_with_a_day_by_day_calendar() {
        // Independent oracle: walk every day of 1999-2031 with chrono and decide each special
        // from its definition, then compare with the days the schedules fire on.
        type Rule = fn(NaiveDate, u32, u32) -> bool; // (date, days in month, weekday from Sunday)
        let last_of = |d: NaiveDate| {
            (28..=31)
                .rev()
                .find(|&n| NaiveDate::from_ymd_opt(d.year(), d.month(), n).is_some())
                .expect("month length")
        };
        let cases: &[(&str, Rule)] = &[
            ("0 0 L * *", |d, len, _| d.day() == len),
            ("0 0 L-3 * *", |d, len, _| d.day() + 3 == len),
            ("0 0 LW * *", |d, len, w| {
                // A weekday with only weekend days after it in the month.
                let weekend = |x: NaiveDate| matches!(x.weekday(), Weekday::Sat | Weekday::Sun);
                (1..=5).contains(&w)
                    && (d.day() + 1..=len).all(|x| weekend(d.with_day(x).expect("day")))
            }),
            ("0 0 * * 5L", |d, len, w| w == 5 && d.day() + 7 > len),
            ("cron(0 0 ? * 6L *)", |d, len, w| {
                w == 5 && d.day() + 7 > len
            }),
            ("0 0 * * 5#5", |d, _, w| w == 5 && d.day() > 28),
            ("cron(0 0 ? * 2#3 *)", |d, _, w| {
                w == 1 && (15..=21).contains(&d.day())
            }),
            ("0 0 1W * *", |d, _, w| match d.day() {
                1 => (1..=5).contains(&w),
                2 => w == 1, // the 1st was a Sunday
                3 => w == 1, // the 1st was a Saturday
                _ => false,
            }),
            ("0 0 1 * MON", |d, _, w| d.day() == 1 || w == 1),
            ("0 0 */2 * MON", |d, _, w| d.day() % 2 == 1 && w == 1),
            ("0 0 L * FRI", |d, len, w| d.day() == len || w == 5),
            ("0 0 30W * *", |d, len, _| {
                let Some(day30) = d.with_day(30) else {
                    return false;
                };
                let target = match day30.weekday().num_days_from_sunday() {
                    6 => 29,
                    0 if len == 30 => 28,
                    0 => 31,
                    _ => 30,
                };
                d.day() == target
            }),
        ];
        for (expr, rule) in cases {
            let s = sched(expr, UTC);
            let mut fired = s.iter_after(utc("1998-12-31T12:00:00Z"));
            let mut day = NaiveDate::from_ymd_opt(1999, 1, 1).expect("date");
            let end = NaiveDate::from_ymd_opt(2032, 1, 1).expect("date");
            let mut expected = Vec::new();
            while day < end {
                if rule(day, last_of(day), day.weekday().num_days_from_sunday()) {
                    expected.push(day);
                }
                day = day.succ_opt().expect("date");
            }
            let actual: Vec<NaiveDate> = fired
                .by_ref()
                .map(|t| t.date_naive())
                .take_while(|&d| d < end)
                .collect();
            assert_eq!(actual, expected, "{expr}");
            // The backward search agrees at every boundary: between consecutive fires, the
            // latest slot is the earlier one, and an instant on a fire includes it.
            let instants: Vec<DateTime<Utc>> = s
                .iter_after(utc("1998-12-31T12:00:00Z"))
                .take_while(|t| t.date_naive() < end)
                .collect();
            for pair in instants.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let second = Duration::seconds(1);
                assert_eq!(s.latest_in(a - second, b - second), Some(a), "{expr} {a}");
                assert_eq!(s.latest_in(a, b), Some(b), "{expr} {b}");
                assert_eq!(s.latest_in(a, b - second), None, "{expr} {a}..{b}");
            }
        }
    }

    #[test]
    fn vixie_or_rule_when_both_day_fields_are_restricted() {
        // 1st of the month OR Mondays.
        assert_eq!(
            fire_days("0 0 1 * MON", "2026-08-31T00:00:00Z", 7),
            [
                "2026-09-01 Tue",
                "2026-09-07 Mon",
                "2026-09-14 Mon",
                "2026-09-21 Mon",
                "2026-09-28 Mon",
                "2026-10-01 Thu",
                "2026-10-05 Mon"
            ]
        );
        assert_eq!(
            fire_days("0 0 0 1 * MON", "2026-08-31T00:00:00Z", 7),
            fire_days("0 0 1 * MON", "2026-08-31T00:00:00Z", 7)
        );
        // A field starting with `*` counts as unrestricted (cron(5)): odd days AND Mondays.
        assert_eq!(
            fire_days("0 0 */2 * MON", "2026-08-31T00:00:00Z", 3),
            ["2026-09-07 Mon", "2026-09-21 Mon", "2026-10-05 Mon"]
        );
        // Only one side restricted: that side alone decides.
        assert_eq!(
            fire_days("0 0 * * MON", "2026-08-31T00:00:00Z", 1),
            ["2026-09-07 Mon"]
        );
        assert_eq!(
            fire_days("0 0 1 * *", "2026-08-31T00:00:00Z", 1),
            ["2026-09-01 Tue"]
        );
        // An explicit full day-of-month range is restricted, so OR makes every day match.
        assert_eq!(
            fire_days("0 0 1-31 * MON", "2026-08-31T00:00:00Z", 2),
            ["2026-09-01 Tue", "2026-09-02 Wed"]
        );
        // AWS never uses OR: `?` on one side.
        assert_eq!(
            fire_days("cron(0 0 ? * MON *)", "2026-08-31T00:00:00Z", 1),
            ["2026-09-07 Mon"]
        );
    }

    #[test]
    fn across_month_and_year_ends_and_leap_days() {
        assert_eq!(
            fires("59 23 31 12 *", UTC, "2026-12-31T23:59:00Z", 1),
            ["2027-12-31T23:59:00Z"]
        );
        assert_eq!(
            fires("0 0 1 * *", UTC, "2026-12-15T00:00:00Z", 2),
            ["2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"]
        );
        assert_eq!(
            fires("0 0 31 * *", UTC, "2026-01-31T00:00:00Z", 1),
            ["2026-03-31T00:00:00Z"]
        );
        assert_eq!(
            fires("0 0 29 2 *", UTC, "2026-01-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
        // 2100 is not a leap year.
        assert_eq!(
            fires("0 0 29 2 *", UTC, "2096-03-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00Z"]
        );
        // Nothing after the search range.
        assert_eq!(
            sched("0 0 29 2 *", UTC).next_after(utc("2196-03-01T00:00:00Z")),
            None
        );
        assert_eq!(
            sched("* * * * * *", UTC).next_after(utc("2199-12-31T23:59:59Z")),
            None
        );
        // Before 1970 the search starts in 1970.
        assert_eq!(
            sched("0 3 * * *", UTC).next_after(utc("1960-05-01T00:00:00Z")),
            Some(utc("1970-01-01T03:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_skips_the_missing_time() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        assert_eq!(
            fires("30 2 * * *", New_York, "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ]
        );
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        assert_eq!(
            fires("30 2 * * *", Berlin, "2026-03-28T00:00:00Z", 2),
            ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"]
        );
        // Lord Howe, 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11:00); 02:15 does not exist.
        // Fires: 10-03 02:15 local (+10:30), no 10-04, then 10-05 02:15 local (+11:00).
        assert_eq!(
            fires("15 2 * * *", Lord_Howe, "2026-10-02T00:00:00Z", 3),
            [
                "2026-10-02T15:45:00Z",
                "2026-10-04T15:15:00Z",
                "2026-10-05T15:15:00Z"
            ]
        );
        // An hourly schedule loses only the missing hour; no real time goes unscheduled.
        assert_eq!(
            fires("0 * * * *", New_York, "2026-03-08T05:30:00Z", 3),
            [
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z"
            ]
        );
        // A per-second schedule jumps over the gap without stepping through it.
        assert_eq!(
            fires("* * * * * *", New_York, "2026-03-08T06:59:59Z", 1),
            ["2026-03-08T07:00:00Z"]
        );
    }

    #[test]
    fn fall_back_fires_once_at_the_first_occurrence() {
        // New York, 2026-11-01: 01:00-02:00 happens in EDT (05:00Z-06:00Z) and again in EST.
        assert_eq!(
            fires("30 1 * * *", New_York, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // Asked from inside the second pass, the repeated time is not fired again.
        assert_eq!(
            fires("30 1 * * *", New_York, "2026-11-01T06:10:00Z", 1),
            ["2026-11-02T06:30:00Z"]
        );
        // Berlin, 2026-10-25: 02:00-03:00 happens in CEST (00:00Z-01:00Z) and again in CET.
        assert_eq!(
            fires("30 2 * * *", Berlin, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // Lord Howe, 2026-04-05: 01:30-02:00 happens at +11:00 and again at +10:30.
        assert_eq!(
            fires("45 1 * * *", Lord_Howe, "2026-04-04T00:00:00Z", 2),
            ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"]
        );
    }

    #[test]
    fn fall_back_consequence_hourly_fires_skip_the_repeated_hour() {
        // Documented behaviour: 01:00 EDT fires, 01:00 EST does not, so two real hours pass
        // between the 01:00 and 02:00 fires.
        let hourly = sched("0 * * * *", New_York);
        assert_eq!(
            fires("0 * * * *", New_York, "2026-11-01T03:30:00Z", 4),
            [
                "2026-11-01T04:00:00Z",
                "2026-11-01T05:00:00Z",
                "2026-11-01T07:00:00Z",
                "2026-11-01T08:00:00Z"
            ]
        );
        assert_eq!(
            hourly.longest_gap(utc("2026-10-31T00:00:00Z"), 72),
            Some(Duration::hours(2))
        );
        // And a per-minute schedule is silent for the repeated hour.
        assert_eq!(
            fires("* * * * *", New_York, "2026-11-01T05:58:00Z", 3),
            [
                "2026-11-01T05:59:00Z",
                "2026-11-01T07:00:00Z",
                "2026-11-01T07:01:00Z"
            ]
        );
        assert_eq!(
            fires("* * * * *", Berlin, "2026-10-25T00:59:00Z", 1),
            ["2026-10-25T02:00:00Z"]
        );
        assert_eq!(
            fires("*/15 * * * *", Lord_Howe, "2026-04-04T14:40:00Z", 3),
            [
                "2026-04-04T14:45:00Z",
                "2026-04-04T15:30:00Z",
                "2026-04-04T15:45:00Z"
            ]
        );
    }

    #[test]
    fn utc_has_no_transitions() {
        let s = sched("0 * * * *", UTC);
        assert_eq!(s.longest_gap(utc("2026-03-01T00:00:00Z"), 24 * 300), {
            Some(Duration::hours(1))
        });
        assert_eq!(
            fires("30 1 * * *", UTC, "2026-11-01T00:00:00Z", 2),
            ["2026-11-01T01:30:00Z", "2026-11-02T01:30:00Z"]
        );
    }

    #[test]
    fn group_key_is_equal_for_equivalent_schedules() {
        let key = |e: &str, tz: Tz| sched(e, tz).group_key().to_string();
        let daily = key("0 3 * * *", UTC);
        assert_eq!(daily, key("0 0 3 * * *", UTC));
        assert_eq!(daily, key("cron(0 3 * * ? *)", UTC));
        assert_eq!(daily, key("cron(0 3 ? * * *)", UTC));
        assert_eq!(daily, key("0 3 ? * 0-7", UTC));
        assert_eq!(daily, key("cron(0 3 * * ? 1970-2199)", UTC));
        assert_eq!(key("0 3 * * 1-5", UTC), key("cron(0 3 ? * MON-FRI *)", UTC));
        assert_eq!(key("0 0 * * 5L", UTC), key("cron(0 0 ? * 6L *)", UTC));
        assert_eq!(key("0 0 L * *", UTC), key("cron(0 0 L-0 * ? *)", UTC));
        assert_eq!(key("0 0 * * 0", UTC), key("0 0 * * 7", UTC));
        assert_ne!(daily, key("0 3 * * *", New_York));
        assert_ne!(key("0 3 * * *", Berlin), key("0 3 * * *", New_York));
        assert_ne!(daily, key("0 4 * * *", UTC));
        assert_ne!(daily, key("1 0 3 * * *", UTC));
        assert_ne!(key("0 0 1 * MON", UTC), key("cron(0 0 1 * ? *)", UTC));
        assert_ne!(daily, key("cron(0 3 * * ? 2026)", UTC));
    }

    #[test]
    fn latest_in_finds_the_most_recent_slot() {
        let daily = sched("0 3 * * *", UTC);
        assert_eq!(
            daily.latest_in(utc("2026-01-01T00:00:00Z"), utc("2026-01-05T12:00:00Z")),
            Some(utc("2026-01-05T03:00:00Z"))
        );
        // (after, until]: `until` itself counts, `after` does not.
        assert_eq!(
            daily.latest_in(utc("2026-01-04T03:00:00Z"), utc("2026-01-05T03:00:00Z")),
            Some(utc("2026-01-05T03:00:00Z"))
        );
        assert_eq!(
            daily.latest_in(utc("2026-01-05T03:00:00Z"), utc("2026-01-05T12:00:00Z")),
            None
        );
        assert_eq!(
            daily.latest_in(utc("2026-01-05T04:00:00Z"), utc("2026-01-05T12:00:00Z")),
            None
        );
        assert_eq!(
            daily.latest_in(utc("2026-01-05T12:00:00Z"), utc("2026-01-05T04:00:00Z")),
            None
        );
        let every_second = sched("* * * * * *", UTC);
        assert_eq!(
            every_second.latest_in(utc("2026-01-05T11:00:00Z"), utc("2026-01-05T12:00:00.5Z")),
            Some(utc("2026-01-05T12:00:00Z"))
        );
        assert_eq!(
            sched("0 0 29 2 *", UTC)
                .latest_in(utc("2020-01-01T00:00:00Z"), utc("2027-06-01T00:00:00Z")),
            Some(utc("2024-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn month_days_are_exactly_one_to_len() {
        for len in 28..=31 {
            let mask = month_days(len);
            assert_eq!(mask & 1, 0, "no day 0");
            assert_eq!(mask.count_ones(), len);
            assert_eq!(31 - mask.leading_zeros(), len);
        }
    }

    #[test]
    fn latest_in_crosses_month_starts_backwards() {
        let daily = sched("0 3 * * *", UTC);
        for (until, expected) in [
            ("2026-12-01T00:00:00Z", "2026-11-30T03:00:00Z"),
            ("2026-03-01T01:00:00Z", "2026-02-28T03:00:00Z"),
            ("2028-03-01T01:00:00Z", "2028-02-29T03:00:00Z"),
            ("2026-08-01T01:00:00Z", "2026-07-31T03:00:00Z"),
            ("2027-01-01T01:00:00Z", "2026-12-31T03:00:00Z"),
        ] {
            assert_eq!(
                daily.latest_in(utc("2026-01-01T00:00:00Z"), utc(until)),
                Some(utc(expected)),
                "{until}"
            );
        }
        assert_eq!(
            sched("30 2 * * *", New_York)
                .latest_in(utc("2026-10-30T08:59:03Z"), utc("2026-11-01T04:00:00Z")),
            Some(utc("2026-10-31T06:30:00Z"))
        );
    }

    #[test]
    fn latest_in_follows_the_daylight_saving_rule() {
        let hourly = sched("0 * * * *", New_York);
        // 06:30Z is 01:30 EST, the second pass: 01:00 EST was not a fire; 01:00 EDT was.
        assert_eq!(
            hourly.latest_in(utc("2026-11-01T00:00:00Z"), utc("2026-11-01T06:30:00Z")),
            Some(utc("2026-11-01T05:00:00Z"))
        );
        let minutely = sched("* * * * *", New_York);
        assert_eq!(
            minutely.latest_in(utc("2026-11-01T00:00:00Z"), utc("2026-11-01T06:30:00Z")),
            Some(utc("2026-11-01T05:59:00Z"))
        );
        assert_eq!(
            minutely.latest_in(utc("2026-11-01T00:00:00Z"), utc("2026-11-01T05:30:30Z")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // 02:30 did not exist on 2026-03-08.
        assert_eq!(
            sched("30 2 * * *", New_York)
                .latest_in(utc("2026-03-01T00:00:00Z"), utc("2026-03-08T12:00:00Z")),
            Some(utc("2026-03-07T07:30:00Z"))
        );
        assert_eq!(
            sched("* * * * * *", New_York)
                .latest_in(utc("2026-03-08T06:00:00Z"), utc("2026-03-08T07:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            sched("* * * * * *", New_York)
                .latest_in(utc("2026-03-08T06:00:00Z"), utc("2026-03-08T06:59:59.9Z")),
            Some(utc("2026-03-08T06:59:59Z"))
        );
    }

    #[test]
    fn extreme_arguments_are_clamped_to_the_search_range() {
        let daily = sched("0 3 * * *", New_York);
        assert_eq!(
            daily.next_after(DateTime::<Utc>::MIN_UTC),
            Some(utc("1970-01-01T08:00:00Z"))
        );
        assert_eq!(daily.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(
            daily.latest_in(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
            Some(utc("2199-12-31T08:00:00Z"))
        );
        let past = sched("cron(0 3 * * ? 2020)", Berlin);
        assert_eq!(
            past.latest_in(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
            Some(utc("2020-12-31T02:00:00Z"))
        );
    }

    #[test]
    fn longest_gap_over_samples() {
        let s = sched("0 9 * * MON-FRI", UTC);
        assert_eq!(
            s.longest_gap(utc("2026-01-01T00:00:00Z"), 10),
            Some(Duration::days(3))
        );
        assert_eq!(s.longest_gap(utc("2026-01-01T00:00:00Z"), 1), None);
        assert_eq!(s.longest_gap(utc("2026-01-01T00:00:00Z"), 0), None);
    }

    #[test]
    fn sparse_schedules_answer() {
        let feb29 = sched("0 0 29 2 *", UTC);
        assert_eq!(
            feb29.next_after(utc("2029-03-01T00:00:00Z")),
            Some(utc("2032-02-29T00:00:00Z"))
        );
        let fifth_friday = sched("cron(0 0 ? * 6#5 *)", New_York);
        assert!(
            fifth_friday
                .next_after(utc("2026-02-01T00:00:00Z"))
                .is_some()
        );
        let every_second = sched("* * * * * *", Lord_Howe);
        assert_eq!(
            every_second.next_after(utc("2026-04-04T14:59:59Z")),
            Some(utc("2026-04-04T15:30:00Z"))
        );
    }

    #[test]
    fn error_wrong_field_count() {
        assert!(error("0 3 * *").contains("got 4 fields"));
        assert!(error("0 0 3 * * * 2026").contains("7 fields"));
        assert!(error("cron(0 3 * * ?)").contains("AWS cron(...) takes 6 fields"));
        assert!(error("cron(0 3 * * ? *").contains("closing parenthesis"));
        assert!(error("   ").contains("empty"));
        assert!(error("every(1 day)").contains("unknown expression type"));
    }

    #[test]
    fn error_rate_and_at_are_explained() {
        let e = error("rate(1 hour)");
        assert!(e.contains("rate(...) schedules are not supported"), "{e}");
        assert!(e.contains("no fixed slots"), "{e}");
        assert!(error("at(2026-01-01T00:00:00)").contains("at(...)"));
    }

    #[test]
    fn error_out_of_range_names_field_value_and_range() {
        let e = error("60 3 * * *");
        assert!(
            e.contains("minute field \"60\": 60 is out of range (allowed 0-59)"),
            "{e}"
        );
        let e = error("0 24 * * *");
        assert!(
            e.contains("hour field \"24\": 24 is out of range (allowed 0-23)"),
            "{e}"
        );
        let e = error("0 3 32 * *");
        assert!(e.contains("day-of-month field \"32\""), "{e}");
        let e = error("0 3 * 13 *");
        assert!(
            e.contains("month field \"13\"") && e.contains("1-12 or JAN-DEC"),
            "{e}"
        );
        let e = error("0 3 * * 8");
        assert!(
            e.contains("day-of-week field \"8\"") && e.contains("0-7"),
            "{e}"
        );
        let e = error("cron(0 3 ? * 0 *)");
        assert!(
            e.contains("day-of-week field \"0\"") && e.contains("1 = SUN"),
            "{e}"
        );
        let e = error("cron(0 3 * * ? 2200)");
        assert!(
            e.contains("year field \"2200\"") && e.contains("1970-2199"),
            "{e}"
        );
        let e = error("60 0 3 * * *");
        assert!(e.contains("second field \"60\""), "{e}");
        let e = error("0 3 * * 99999999999999");
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn error_bad_tokens_ranges_and_steps() {
        let e = error("0 3 * * FUNDAY");
        assert!(e.contains("\"FUNDAY\" is not a valid value"), "{e}");
        let e = error("0 3 * JANUARY *");
        assert!(e.contains("\"JANUARY\" is not a valid value"), "{e}");
        let e = error("0 3L * * *");
        assert!(e.contains("only go in the day fields"), "{e}");
        let e = error("0 5-2 * * *");
        assert!(e.contains("runs backwards"), "{e}");
        let e = error("*/0 * * * *");
        assert!(e.contains("step \"0\""), "{e}");
        let e = error("*/61 * * * *");
        assert!(e.contains("must be a number in 1-60"), "{e}");
        let e = error("0 3 1,,2 * *");
        assert!(e.contains("empty list item"), "{e}");
        let e = error("0 3-- * * *");
        assert!(e.contains("hour field"), "{e}");
    }

    #[test]
    fn error_question_mark_placement() {
        let e = error("? 3 * * *");
        assert!(
            e.contains("minute field \"?\": ? is only allowed on its own"),
            "{e}"
        );
        let e = error("0 3 1,? * *");
        assert!(e.contains("day-of-month field"), "{e}");
    }

    #[test]
    fn error_aws_question_mark_rule() {
        let e = error("cron(0 3 ? * ? *)");
        assert!(e.contains("both ?"), "{e}");
        let e = error("cron(0 3 * * * *)");
        assert!(e.contains("exactly one of them to be ?"), "{e}");
        let e = error("cron(0 3 1 * MON *)");
        assert!(e.contains("exactly one of them to be ?"), "{e}");
    }

    #[test]
    fn error_bad_specials() {
        assert!(error("0 3 L-31 * *").contains("L-n: \"31\" is not a number in 0-30"));
        assert!(error("0 3 32W * *").contains("nW: \"32\" is not a number in 1-31"));
        assert!(error("0 3 0W * *").contains("nW"));
        assert!(error("0 3 WL * *").contains("not a day-of-month special"));
        assert!(error("0 3 1#2 * *").contains("not a day-of-month special"));
        assert!(error("0 3 * * 5#6").contains("n#k: \"6\" is not a number in 1-5"));
        assert!(error("0 3 * * 8L").contains("8 is out of range"));
        assert!(error("0 3 * * 1W").contains("not a valid value"));
    }

    #[test]
    fn error_never_fires() {
        let e = error("0 0 30 2 *");
        assert!(e.contains("matches no date"), "{e}");
        assert!(error("cron(0 0 31 4 ? *)").contains("matches no date"));
        // AWS-looking 6-field expression without the wrapper gets a hint.
        let e = error("0 3 * * ? 2026");
        assert!(e.contains("write cron(...) around it"), "{e}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// An expression and an independent statement of what it matches in local time.
        struct Case {
            expr: &'static str,
            matches: fn(&NaiveDateTime) -> bool,
            /// Brute-force step in seconds: 60 for minute schedules.
            step: i64,
            /// Window for the month-start sweep: long enough to reach the previous day's last slot.
            sweep_hours: i64,
        }

        fn weekday(l: &NaiveDateTime) -> u32 {
            l.weekday().num_days_from_sunday()
        }

        const CASES: &[Case] = &[
            Case {
                expr: "* * * * *",
                matches: |l| l.second() == 0,
                step: 60,
                sweep_hours: 1,
            },
            Case {
                expr: "*/15 9-17 * * MON-FRI",
                matches: |l| {
                    l.second() == 0
                        && l.minute() % 15 == 0
                        && (9..=17).contains(&l.hour())
                        && (1..=5).contains(&weekday(l))
                },
                step: 60,
                sweep_hours: 26,
            },
            Case {
                expr: "30 2 * * *",
                matches: |l| l.second() == 0 && l.minute() == 30 && l.hour() == 2,
                step: 60,
                sweep_hours: 26,
            },
            Case {
                expr: "0 * * * *",
                matches: |l| l.second() == 0 && l.minute() == 0,
                step: 60,
                sweep_hours: 26,
            },
            Case {
                expr: "cron(0/20 1-3 ? * SUN *)",
                matches: |l| {
                    l.second() == 0
                        && l.minute() % 20 == 0
                        && (1..=3).contains(&l.hour())
                        && weekday(l) == 0
                },
                step: 60,
                sweep_hours: 26,
            },
            Case {
                expr: "*/7 * 1-2 * * *",
                matches: |l| l.second() % 7 == 0 && (1..=2).contains(&l.hour()),
                step: 1,
                sweep_hours: 26,
            },
        ];

        const ZONES: &[Tz] = &[New_York, Berlin, Lord_Howe, UTC];

        /// Transition instants in 2026 for the zones above, to aim instants at.
        const TRANSITIONS: &[&str] = &[
            "2026-03-08T07:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-04-04T15:00:00Z",
            "2026-10-03T15:30:00Z",
        ];

        fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            let start = utc("2024-01-01T00:00:00Z").timestamp();
            let end = utc("2030-01-01T00:00:00Z").timestamp();
            let month_start = |y: i32, m: u32| {
                NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .expect("month start")
                    .and_utc()
            };
            prop_oneof![
                (start..end).prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range")),
                // Month and year ends, where the calendar search changes month.
                (
                    2024..2030,
                    1u32..=12,
                    -2 * SECONDS_PER_DAY..2 * SECONDS_PER_DAY
                )
                    .prop_map(move |(y, m, d)| month_start(y, m) + Duration::seconds(d)),
                // The first and last hours of a month, where a backward search has to step
                // from day 1 into the previous month.
                (2024..2030, 1u32..=12, -6 * 3600i64..18 * 3600)
                    .prop_map(move |(y, m, d)| month_start(y, m) + Duration::seconds(d)),
                (
                    0..TRANSITIONS.len(),
                    -2 * SECONDS_PER_DAY..2 * SECONDS_PER_DAY
                )
                    .prop_map(|(i, d)| utc(TRANSITIONS[i]) + Duration::seconds(d)),
            ]
        }

        /// Whether `at` is a fire instant: its local time matches and this is its first occurrence.
        fn is_fire(case: &Case, tz: Tz, at: DateTime<Utc>) -> bool {
            let local = at.with_timezone(&tz).naive_local();
            (case.matches)(&local)
                && tz
                    .from_local_datetime(&local)
                    .earliest()
                    .map(|e| e.to_utc())
                    == Some(at)
        }

        #[test]
        fn latest_in_agrees_with_iterating_around_every_month_start() {
            // Deterministic sweep of the narrow region where a backward search steps from day 1
            // into the previous month (random sampling rarely lands there).
            for case in CASES {
                for &tz in ZONES {
                    let schedule = sched(case.expr, tz);
                    for year in 2024..2028 {
                        for month in 1..=12 {
                            let start = NaiveDate::from_ymd_opt(year, month, 1)
                                .and_then(|d| d.and_hms_opt(0, 0, 0))
                                .and_then(|n| tz.from_local_datetime(&n).earliest())
                                .expect("local midnight exists in these zones")
                                .to_utc();
                            for minutes in (-60i64..=180).step_by(37) {
                                let until = start + Duration::minutes(minutes);
                                let after = until - Duration::hours(case.sweep_hours);
                                let expected = schedule
                                    .iter_after(after)
                                    .take_while(|&f| f <= until)
                                    .last();
                                assert_eq!(
                                    schedule.latest_in(after, until),
                                    expected,
                                    "{} in {tz} until {until}",
                                    case.expr
                                );
                            }
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn next_after_is_the_next_matching_instant(
                case in 0..CASES.len(),
                zone in 0..ZONES.len(),
                t in instant(),
                nanos in 0u32..1_000_000_000,
            ) {
                let case = &CASES[case];
                let tz = ZONES[zone];
                let t = t + Duration::nanoseconds(i64::from(nanos));
                let schedule = sched(case.expr, tz);
                let next = schedule.next_after(t).expect("a fire within the range");
                prop_assert!(next > t);
                prop_assert!(is_fire(case, tz, next), "{} is not a fire of {}", next, case.expr);
                // No fire strictly between t and next.
                let mut probe = t.timestamp() + 1;
                probe += (case.step - probe.rem_euclid(case.step)) % case.step;
                while probe < next.timestamp() {
                    let at = DateTime::from_timestamp(probe, 0).expect("in range");
                    prop_assert!(!is_fire(case, tz, at), "missed {} before {} ({})", at, next, case.expr);
                    probe += case.step;
                }
            }

            #[test]
            fn latest_in_agrees_with_iterating(
                case in 0..CASES.len(),
                zone in 0..ZONES.len(),
                until in instant(),
                window in 0i64..2 * SECONDS_PER_DAY,
            ) {
                let case = &CASES[case];
                let schedule = sched(case.expr, ZONES[zone]);
                let after = until - Duration::seconds(window);
                let expected = schedule.iter_after(after).take_while(|&f| f <= until).last();
                prop_assert_eq!(schedule.latest_in(after, until), expected);
            }
        }
    }
}
