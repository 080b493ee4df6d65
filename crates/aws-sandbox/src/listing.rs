//! What ListBackupJobs and ListCopyJobs do alike: the query keys they share (account, creation
//! and completion windows, page size, token), and paging newest first through jobs kept in
//! creation order. Each listing adds its own filters (resource, state, vault, …).

use super::basics::{ApiError, Millis, percent_decode};

/// The largest `maxResults` either listing accepts, and the page size when none is given.
pub(crate) const MAX_PAGE: usize = 1000;

/// The filters both listings share, and the page asked for.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub account_id: Option<String>,
    pub created_after: Option<Millis>,
    pub created_before: Option<Millis>,
    pub complete_after: Option<Millis>,
    pub complete_before: Option<Millis>,
    pub max: usize,
    pub token: Option<String>,
}

impl Default for Listing {
    fn default() -> Self {
        Listing {
            account_id: None,
            created_after: None,
            created_before: None,
            complete_after: None,
            complete_before: None,
            max: MAX_PAGE,
            token: None,
        }
    }
}

impl Listing {
    /// Reads a List*Jobs query string: the shared keys here, every other pair (percent-decoded)
    /// handed to `own`, which keeps the listing's own filters and ignores what it does not model.
    pub fn parse(query: &str, mut own: impl FnMut(&str, String)) -> Result<Self, ApiError> {
        let mut l = Listing::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "accountId" => l.account_id = Some(value),
                "createdAfter" => l.created_after = Some(query_time(key, &value)?),
                "createdBefore" => l.created_before = Some(query_time(key, &value)?),
                "completeAfter" => l.complete_after = Some(query_time(key, &value)?),
                "completeBefore" => l.complete_before = Some(query_time(key, &value)?),
                "maxResults" => l.max = page_size(&value)?,
                "nextToken" => l.token = Some(value),
                _ => own(key, value),
            }
        }
        Ok(l)
    }

    /// One page, newest first, of `len` jobs kept in creation order, in `account`: the indices
    /// of the jobs `created_at` places in the window and `matches` accepts, and the token of
    /// the next page (`{prefix}{index}`, as the previous page's token was).
    pub fn page(
        &self,
        len: usize,
        prefix: &str,
        account: &str,
        created_at: impl Fn(usize) -> Millis,
        mut matches: impl FnMut(usize) -> bool,
    ) -> Result<(Vec<usize>, Option<String>), ApiError> {
        let end = match &self.token {
            None => len,
            Some(token) => {
                let next: usize = token
                    .strip_prefix(prefix)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| ApiError {
                        code: "InvalidParameterValueException",
                        message: "Invalid NextToken".into(),
                    })?;
                (next + 1).min(len)
            }
        };
        if self.account_id.as_deref().is_some_and(|a| a != account) {
            return Ok((Vec::new(), None));
        }
        let mut found = (0..end)
            .rev()
            // Creation order: once older than `createdAfter`, all the rest are too.
            .take_while(|&i| {
                self.created_after
                    .is_none_or(|after| created_at(i) >= after)
            })
            .filter(|&i| self.created_before.is_none_or(|b| created_at(i) <= b) && matches(i));
        let page: Vec<usize> = found.by_ref().take(self.max).collect();
        let next = found.next().map(|i| format!("{prefix}{i}"));
        Ok((page, next))
    }

    /// True when a job that ended at `completed` (None: not ended) is in the completion window.
    pub fn completed_in_window(&self, completed: Option<Millis>) -> bool {
        self.complete_after
            .is_none_or(|a| completed.is_some_and(|c| c >= a))
            && self
                .complete_before
                .is_none_or(|b| completed.is_some_and(|c| c <= b))
    }
}

/// `maxResults`: 1 to [`MAX_PAGE`].
fn page_size(value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| ApiError {
            code: "InvalidParameterValueException",
            message: format!("maxResults must be 1 to {MAX_PAGE}, got {value}"),
        })
}

/// A query-string timestamp: ISO-8601 as the SDK sends it, or epoch seconds.
///
/// Rounded to the nearest millisecond: the SDK reads our `x.123` epoch seconds into a binary
/// float and may send back `x.122999906`, which must still mean the same instant.
fn query_time(key: &str, value: &str) -> Result<Millis, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| {
            t.timestamp() * 1000 + Millis::from((t.timestamp_subsec_nanos() + 500_000) / 1_000_000)
        })
        .ok()
        .or_else(|| {
            value
                .parse::<f64>()
                .ok()
                .map(|s| (s * 1000.0).round() as Millis)
        })
        .ok_or_else(|| ApiError {
            code: "InvalidParameterValueException",
            message: format!("{key} is not a timestamp: {value}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_times_are_iso_8601() {
        assert_eq!(
            query_time("createdAfter", "2026-11-29T09:14:59Z").unwrap(),
            1_795_943_699_000
        );
        assert_eq!(
            query_time("createdAfter", "2026-11-29T09:14:59.122999906Z").unwrap(),
            1_795_943_699_123
        );
        assert!(query_time("createdAfter", "yesterday").is_err());
    }

    #[test]
    fn shared_keys_are_read_and_the_rest_handed_on() {
        let mut own = Vec::new();
        let l = Listing::parse(
            "state=RUNNING&maxResults=2&createdBefore=10.5&nextToken=j7&resourceArn=a%3Ab",
            |k, v| own.push((k.to_string(), v)),
        )
        .unwrap();
        assert_eq!(
            (l.max, l.created_before, l.token.as_deref()),
            (2, Some(10_500), Some("j7"))
        );
        assert_eq!(
            own,
            vec![
                ("state".to_string(), "RUNNING".to_string()),
                ("resourceArn".to_string(), "a:b".to_string())
            ]
        );
        assert_eq!(
            Listing::parse("maxResults=0", |_, _| {}).unwrap_err().code,
            "InvalidParameterValueException"
        );
    }

    #[test]
    fn pages_go_newest_first_within_the_windows() {
        // Ten jobs created at 0, 10, …, 90; the odd ones match.
        let created = |i: usize| i as Millis * 10;
        let l = Listing {
            created_after: Some(20),
            created_before: Some(80),
            max: 2,
            ..Listing::default()
        };
        let (page, next) = l.page(10, "j", "acct", created, |i| i % 2 == 1).unwrap();
        assert_eq!((page, next.as_deref()), (vec![7, 5], Some("j3")));
        let l = Listing { token: next, ..l };
        let (page, next) = l.page(10, "j", "acct", created, |i| i % 2 == 1).unwrap();
        assert_eq!((page, next), (vec![3], None));
        let other = Listing {
            account_id: Some("other".into()),
            ..Listing::default()
        };
        assert_eq!(
            other.page(10, "j", "acct", created, |_| true).unwrap(),
            (vec![], None)
        );
        let bad = Listing {
            token: Some("c3".into()),
            ..Listing::default()
        };
        assert!(bad.page(10, "j", "acct", created, |_| true).is_err());
    }
}
