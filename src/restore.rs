//! Restores and restore tests, the pure part: the restore machine's execution names and input,
//! which recovery point a restore takes, where the instance goes, and what an execution's report
//! says. The running parts are [`crate::restore_tests`] (scheduled tests and the sweeper) and
//! `orchestrator restore` ([`crate::cli`]).
//!
//! The restore machine (`STACK-restore`, deploy/cloudformation) does the AWS work: it checks the
//! recovery point is a COMPLETED EC2 point of the stack's vault of the named instance, restores
//! it with an allow-listed metadata, tags what it created, waits for the status checks, runs the
//! validation document, and terminates the instance (tests), reporting each step. The daemon
//! only picks, starts and reads.

pub mod names;
pub mod report;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{Pick, RestorePlacement, RestoreTest, ValidateDocument};

pub use names::{restore_name, sweep_name, test_name};
pub use report::{Outcome, Report, outcome};

/// The tag whose value is the test execution's name (the sweeper looks for it).
pub const TAG_TEST: &str = "orchestrator:restore-test";
/// The tag whose value is the UTC time after which a restored instance may be swept.
pub const TAG_EXPIRES: &str = "orchestrator:restore-expires";

/// How long a validation document may take, beyond `max_restore_minutes`, in the expiry.
const VALIDATION_ALLOWANCE_MINUTES: i64 = 30;
/// Margin of the expiry over the longest a test can take (its termination's retries).
const EXPIRY_MARGIN_MINUTES: i64 = 10;

pub use crate::aws::RecoveryPoint;

/// The newest COMPLETED point at or before `at` (`Latest`), or one of those within
/// `within_days` chosen by `seed` (`Random`: the same seed picks the same point). Only points
/// created within `within_days` before `at` count when `within_days` is set.
pub fn pick<'a>(
    points: &'a [RecoveryPoint],
    at: DateTime<Utc>,
    within_days: Option<u32>,
    how: Pick,
    seed: &str,
) -> Option<&'a RecoveryPoint> {
    let oldest = within_days.map(|d| at - chrono::Duration::days(i64::from(d)));
    let mut usable: Vec<&RecoveryPoint> = points
        .iter()
        .filter(|p| p.status == "COMPLETED" && p.created <= at)
        .filter(|p| oldest.is_none_or(|o| p.created >= o))
        .collect();
    usable.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.arn.cmp(&b.arn)));
    match how {
        Pick::Latest => usable.first().copied(),
        Pick::Random if usable.is_empty() => None,
        Pick::Random => {
            let digest = Sha256::digest(seed.as_bytes());
            let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
            let i = usize::try_from(n % usable.len() as u64).expect("below len");
            Some(usable[i])
        }
    }
}

/// Where the restored instance goes: the placement's values over the recovery point's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// EC2 instance type.
    pub instance_type: String,
    /// Subnet.
    pub subnet_id: String,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// Keep the original instance profile (else none).
    pub keep_instance_profile: bool,
}

/// `placement` over `metadata` (GetRecoveryPointRestoreMetadata's, where `SecurityGroupIds` is
/// a JSON array in a string). An error names what neither gives.
pub fn resolve(
    placement: &RestorePlacement,
    metadata: &BTreeMap<String, String>,
) -> Result<Resolved, String> {
    let from_meta = |k: &str| metadata.get(k).filter(|v| !v.is_empty()).cloned();
    let instance_type = placement
        .instance_type
        .clone()
        .or_else(|| from_meta("InstanceType"))
        .ok_or("no instance type: set restore.instance_type (the recovery point has none)")?;
    let subnet_id = placement
        .subnet_id
        .clone()
        .or_else(|| from_meta("SubnetId"))
        .ok_or("no subnet: set restore.subnet_id (the recovery point has none)")?;
    let security_group_ids = match &placement.security_group_ids {
        Some(g) => g.clone(),
        None => from_meta("SecurityGroupIds")
            .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok())
            .filter(|g| !g.is_empty())
            .ok_or("no security groups: set restore.security_group_ids")?,
    };
    Ok(Resolved {
        instance_type,
        subnet_id,
        security_group_ids,
        keep_instance_profile: placement.keep_instance_profile.unwrap_or(false),
    })
}

/// What the machine is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A scheduled restore test: restore, check, validate, delete.
    Test,
    /// An on-demand restore: the instance is kept.
    Restore,
}

/// The validation document as the machine takes it (SendCommand's parameter shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValidateInput {
    /// Document name.
    pub name: String,
    /// Parameters, each a one-string list.
    pub parameters: BTreeMap<String, Vec<String>>,
}

impl From<&ValidateDocument> for ValidateInput {
    fn from(d: &ValidateDocument) -> Self {
        ValidateInput {
            name: d.name.clone(),
            parameters: d
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
        }
    }
}

/// The restore machine's input for a test or an on-demand restore (its `Validate` state
/// refuses any other member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreInput {
    /// test or restore.
    pub action: Action,
    /// The target's name (tagged on the instance).
    pub target: String,
    /// The backed-up instance.
    pub resource_arn: String,
    /// The recovery point to restore.
    pub recovery_point_arn: String,
    /// Instance type.
    pub instance_type: String,
    /// Subnet.
    pub subnet_id: String,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// Only when true (the stack must allow it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_instance_profile: Option<bool>,
    /// The slot (tests) or the request time (restores), UTC.
    pub scheduled_for: String,
    /// When the restored instance may be swept (tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The longest the restore may take until the instance passes its checks.
    pub max_restore_seconds: u64,
    /// How long a test keeps the instance after its checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_seconds: Option<u64>,
    /// A test's validation document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate_document: Option<ValidateInput>,
}

impl RestoreInput {
    /// The input JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }
}

/// A UTC time as the machine takes it: `2026-11-29T10:00:00Z`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// When a test's instance may be swept: the slot, plus the restore's maximum, the validation's
/// allowance, the time it is kept, and a margin.
pub fn expires_at(slot: DateTime<Utc>, test: &RestoreTest) -> DateTime<Utc> {
    slot + chrono::Duration::minutes(
        i64::from(test.max_restore_minutes)
            + VALIDATION_ALLOWANCE_MINUTES
            + i64::from(test.keep_minutes)
            + EXPIRY_MARGIN_MINUTES,
    )
}

/// The input of `target`'s test at `slot` restoring `point` into `place`.
pub fn test_input(
    target: &str,
    resource_arn: &str,
    point: &RecoveryPoint,
    place: &Resolved,
    test: &RestoreTest,
    slot: DateTime<Utc>,
) -> RestoreInput {
    let max = u64::from(test.max_restore_minutes) * 60;
    RestoreInput {
        expires_at: Some(utc(expires_at(slot, test))),
        keep_seconds: Some(u64::from(test.keep_minutes) * 60),
        validate_document: test.validate_document.as_ref().map(ValidateInput::from),
        ..restore_input(target, resource_arn, point, place, max, slot)
    }
    .with_action(Action::Test)
}

/// The input of an on-demand restore of `target` requested at `at`.
pub fn restore_input(
    target: &str,
    resource_arn: &str,
    point: &RecoveryPoint,
    place: &Resolved,
    max_restore_seconds: u64,
    at: DateTime<Utc>,
) -> RestoreInput {
    RestoreInput {
        action: Action::Restore,
        target: target.to_string(),
        resource_arn: resource_arn.to_string(),
        recovery_point_arn: point.arn.clone(),
        instance_type: place.instance_type.clone(),
        subnet_id: place.subnet_id.clone(),
        security_group_ids: place.security_group_ids.clone(),
        keep_instance_profile: place.keep_instance_profile.then_some(true),
        scheduled_for: utc(at),
        expires_at: None,
        max_restore_seconds,
        keep_seconds: None,
        validate_document: None,
    }
}

impl RestoreInput {
    fn with_action(self, action: Action) -> Self {
        RestoreInput { action, ..self }
    }
}

#[cfg(test)]
mod tests;
