//! The restore columns of `status`: each target's last restore test, read from the restore
//! machine's executions (`test-{target}-{slot}`), judged against its schedule and its
//! `max_restore_minutes` (like Audit Manager's "restore time for resources meet target").

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::arn::StateMachineArn;
use crate::aws::{ApiError, ExecutionStatus, StepFunctions};
use crate::model::RestoreTest;
use crate::pacing::TokenBucket;
use crate::restore::Report;
use crate::restore::names::{parse_test_name, test_part};

/// How far back the executions are read (AWS keeps closed executions 90 days).
const LOOKBACK_DAYS: i64 = 90;

/// One ended test as `status` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// When the execution stopped.
    pub at: DateTime<Utc>,
    /// SUCCEEDED or not.
    pub succeeded: bool,
    /// From the restore request to the instance passing its checks.
    pub restore_seconds: Option<f64>,
    /// The validation's status.
    pub validation: Option<String>,
}

/// A target's tests as read: the last one, and the last that succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The newest ended test.
    pub last: Option<Ran>,
    /// The newest SUCCEEDED test.
    pub last_success: Option<Ran>,
}

/// A target's restore test in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreTestView {
    /// The test's schedule.
    pub schedule: String,
    /// When a test last passed (its execution's end).
    pub last_success: Option<DateTime<Utc>>,
    /// That test's restore time.
    pub last_restore_seconds: Option<f64>,
    /// `max_restore_minutes` in seconds.
    pub max_restore_seconds: u64,
    /// That test's validation status.
    pub last_validation: Option<String>,
    /// The last test's result, passed or failed.
    pub last_result: Option<String>,
    /// The oldest a passed test may be (longest gap + max restore time + margin).
    pub allowed_age_seconds: Option<u64>,
    /// No test passed within the allowed age.
    pub overdue: bool,
    /// The last passed test restored slower than `max_restore_minutes`.
    pub too_slow: bool,
}

/// Judges a target's restore test.
pub fn assess(
    test: &RestoreTest,
    history: Option<&History>,
    now: DateTime<Utc>,
    margin: Duration,
) -> RestoreTestView {
    let gap = test
        .schedule
        .longest_gap(now - chrono::Duration::days(1), 8)
        .and_then(|g| g.to_std().ok());
    let allowed = gap.map(|g| g + test.max_restore() + margin);
    let ok = history.and_then(|h| h.last_success.as_ref());
    let overdue = test.enabled
        && allowed
            .is_some_and(|a| ok.is_none_or(|s| (now - s.at).to_std().unwrap_or_default() > a));
    let max = test.max_restore().as_secs();
    RestoreTestView {
        schedule: test.schedule.expression().to_string(),
        last_success: ok.map(|s| s.at),
        last_restore_seconds: ok.and_then(|s| s.restore_seconds),
        max_restore_seconds: max,
        last_validation: ok.and_then(|s| s.validation.clone()),
        last_result: history
            .and_then(|h| h.last.as_ref())
            .map(|l| if l.succeeded { "passed" } else { "failed" }.to_string()),
        allowed_age_seconds: allowed.map(|a| a.as_secs()),
        overdue,
        too_slow: ok
            .and_then(|s| s.restore_seconds)
            .is_some_and(|s| s > max as f64),
    }
}

/// Reads the restore machine's test executions of the last [`LOOKBACK_DAYS`] days: for each
/// of `targets` (their names) its last test and last passed test (one DescribeExecution
/// each). Returns them by target name, and the calls made.
pub async fn read<S: StepFunctions>(
    sfn: &S,
    machine: &StateMachineArn,
    targets: &[&str],
    now: DateTime<Utc>,
    bucket: &TokenBucket,
) -> Result<(HashMap<String, History>, u64), ApiError> {
    let by_part: HashMap<String, &str> = targets.iter().map(|t| (test_part(t), *t)).collect();
    let since = now - chrono::Duration::days(LOOKBACK_DAYS);
    // Newest first: the first of a target is its last test, the first SUCCEEDED its last pass.
    let mut last: HashMap<&str, String> = HashMap::new();
    let mut passed: HashMap<&str, String> = HashMap::new();
    let mut calls = 0;
    let mut token = None;
    'pages: loop {
        bucket.acquire().await;
        calls += 1;
        let page = sfn.list_executions(machine, None, token.take()).await?;
        for e in &page.items {
            if e.start_date < since {
                break 'pages;
            }
            let Some(target) = parse_test_name(&e.name).and_then(|(p, _)| by_part.get(p)) else {
                continue;
            };
            if e.status == ExecutionStatus::Running {
                continue;
            }
            last.entry(target)
                .or_insert_with(|| e.execution_arn.clone());
            if e.status == ExecutionStatus::Succeeded {
                passed
                    .entry(target)
                    .or_insert_with(|| e.execution_arn.clone());
            }
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
        if passed.len() == by_part.len() {
            break;
        }
    }
    // Every target with a passed test has a last one: describe the last, and the last passed
    // only when it is another execution.
    let mut out: HashMap<String, History> = HashMap::new();
    for (target, last_arn) in &last {
        let ran = ran_of(sfn, bucket, last_arn, &mut calls).await?;
        let last_success = match passed.get(target) {
            Some(p) if p == last_arn => Some(ran.clone()),
            Some(p) => Some(ran_of(sfn, bucket, p, &mut calls).await?),
            None => None,
        };
        out.insert(
            (*target).to_string(),
            History {
                last: Some(ran),
                last_success,
            },
        );
    }
    Ok((out, calls))
}

/// One ended test execution, described.
async fn ran_of<S: StepFunctions>(
    sfn: &S,
    bucket: &TokenBucket,
    arn: &str,
    calls: &mut u64,
) -> Result<Ran, ApiError> {
    bucket.acquire().await;
    *calls += 1;
    let d = sfn.describe_execution(arn).await?;
    let report = Report::of(&d);
    Ok(Ran {
        at: d.stop_date.unwrap_or(d.start_date),
        succeeded: d.status == ExecutionStatus::Succeeded,
        restore_seconds: report.as_ref().and_then(Report::restore_seconds),
        validation: report.and_then(|r| r.validation.status),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::model::{Pick, RestorePlacement};

    fn weekly(max_restore_minutes: u32) -> RestoreTest {
        RestoreTest {
            schedule: Arc::new(
                crate::schedule::Schedule::parse("0 3 * * 0", chrono_tz::Tz::UTC).unwrap(),
            ),
            pick: Pick::Latest,
            within_days: 7,
            max_restore_minutes,
            keep_minutes: 0,
            validate_document: None,
            placement: RestorePlacement::default(),
            enabled: true,
        }
    }

    fn ran(days_ago: i64, seconds: f64, now: DateTime<Utc>) -> Ran {
        Ran {
            at: now - chrono::Duration::days(days_ago),
            succeeded: true,
            restore_seconds: Some(seconds),
            validation: Some("SUCCESSFUL".into()),
        }
    }

    #[test]
    fn a_test_is_overdue_after_its_gap_and_slow_past_its_maximum() {
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        let margin = Duration::from_secs(7200);
        let never = assess(&weekly(60), None, now, margin);
        assert!(never.overdue && !never.too_slow && never.last_success.is_none());
        let h = History {
            last: Some(ran(2, 600.0, now)),
            last_success: Some(ran(2, 600.0, now)),
        };
        let fine = assess(&weekly(60), Some(&h), now, margin);
        assert!(!fine.overdue && !fine.too_slow);
        assert_eq!(fine.last_result.as_deref(), Some("passed"));
        assert!(assess(&weekly(5), Some(&h), now, margin).too_slow);
        let old = History {
            last: None,
            last_success: Some(ran(9, 60.0, now)),
        };
        assert!(assess(&weekly(60), Some(&old), now, margin).overdue);
    }
}
