//! The restore machine's execution names. A test slot, an on-demand restore and a sweep each
//! map to one name, so Step Functions refuses a second start of the same thing.

use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};

use crate::execution::{MAX_EXECUTION_NAME_LEN, target_part};

/// A scheduled test: `test-{target}-{slot}`.
pub const TEST_PREFIX: &str = "test-";
/// An on-demand restore: `restore-{target}-{hash of its input}`.
pub const RESTORE_PREFIX: &str = "restore-";
/// A sweep: `sweep-{instance id}-{its expiry}`.
pub const SWEEP_PREFIX: &str = "sweep-";
const STAMP: &str = "%Y%m%dT%H%M%SZ";
const STAMP_LEN: usize = 16;
const HASH_LEN: usize = 8;

/// The name of `target`'s restore test at `slot`.
pub fn test_name(target: &str, slot: DateTime<Utc>) -> String {
    let max = MAX_EXECUTION_NAME_LEN - TEST_PREFIX.len() - 1 - STAMP_LEN;
    format!(
        "{TEST_PREFIX}{}-{}",
        target_part(target, max),
        slot.format(STAMP)
    )
}

/// The target part and slot of a test's name.
pub fn parse_test_name(name: &str) -> Option<(&str, DateTime<Utc>)> {
    let rest = name.strip_prefix(TEST_PREFIX)?;
    let (part, stamp) = rest.rsplit_once('-')?;
    let slot = NaiveDateTime::parse_from_str(stamp, STAMP).ok()?.and_utc();
    Some((part, slot))
}

/// The name of an on-demand restore of `target` with `input`: the same request, the same name.
pub fn restore_name(target: &str, input: &str) -> String {
    let max = MAX_EXECUTION_NAME_LEN - RESTORE_PREFIX.len() - 1 - HASH_LEN;
    let digest = Sha256::digest(input.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{RESTORE_PREFIX}{}-{hash}", target_part(target, max))
}

/// The name of the `attempt`th sweep (from 1) of `instance_id` expired at `expires`: one
/// sweep per leftover, another only after one that failed.
pub fn sweep_name(instance_id: &str, expires: DateTime<Utc>, attempt: u32) -> String {
    let suffix = if attempt > 1 {
        format!("-{attempt}")
    } else {
        String::new()
    };
    let max = MAX_EXECUTION_NAME_LEN - SWEEP_PREFIX.len() - 1 - STAMP_LEN - suffix.len();
    format!(
        "{SWEEP_PREFIX}{}-{}{suffix}",
        target_part(instance_id, max),
        expires.format(STAMP)
    )
}

/// The target part a test of `target` carries in its name.
pub fn test_part(target: &str) -> String {
    target_part(
        target,
        MAX_EXECUTION_NAME_LEN - TEST_PREFIX.len() - 1 - STAMP_LEN,
    )
}
