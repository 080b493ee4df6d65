//! Copies for disaster recovery, as pure logic: a rule's `copy_to` destinations, the
//! idempotency token of each copy, the `CopyTo` member of the execution input, what the machine's
//! output says about the copies it started, and the life of one copy with the changes worth a
//! log line.
//!
//! The state machine starts the copies (StartCopyJob, after the backup job COMPLETED); the daemon
//! only reads: it learns each copy job's id from the execution's own record (or a ListCopyJobs
//! row that names the backup's recovery point and the destination), then follows the copy job.
//!
//! ```text
//! backup COMPLETED ─▶ awaiting ──(output: CopyJobId / listing)──▶ created ──▶ terminal copy state
//!                        │                                                     │
//!                        └──(output: StartCopyJob refused, or no copy)──▶ finished (FAILED)
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arn::BackupVaultArn;
use crate::aws::{CopyJobDetail, JobState};

/// One `copy_to` entry of a rule, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The destination vault (another region, another account, or both).
    pub vault: BackupVaultArn,
    /// The copy's `Lifecycle.DeleteAfterDays`.
    pub delete_after_days: u32,
}

/// What a backup's copies need to know of its rule: its name (for logs) and destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// The rule's name (the target's in the single-schedule form).
    pub rule: Arc<str>,
    /// Where the machine copies the backup to.
    pub destinations: Arc<[Destination]>,
    /// The machine that copies it (the rule's backup machine, `Action: copy`).
    pub state_machine: crate::arn::StateMachineArn,
}

/// Prefix of every copy idempotency token.
const TOKEN_PREFIX: &str = "copy-";
/// Hex digits of the token's hash (128 bits).
const TOKEN_HASH_LEN: usize = 32;

/// The StartCopyJob `IdempotencyToken` of the copy of `execution_name`'s backup to `vault_arn`:
/// stable (a retried task or a redriven execution sends the same one, so AWS Backup never
/// copies twice) and 37 characters, whatever the names' lengths.
pub fn idempotency_token(execution_name: &str, vault_arn: &str) -> String {
    let mut h = Sha256::new();
    h.update(execution_name.as_bytes());
    // A separator no execution name contains: ("a", "bc") and ("ab", "c") differ.
    h.update(b"\n");
    h.update(vault_arn.as_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(TOKEN_HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{TOKEN_PREFIX}{hex}")
}

/// `Lifecycle` of a copy, as StartCopyJob takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleInput {
    /// Days the copy is kept.
    pub delete_after_days: u32,
}

/// One element of the execution input's `CopyTo`: what the machine's StartCopyJob sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopyToInput {
    /// StartCopyJob `DestinationBackupVaultArn`.
    pub destination_backup_vault_arn: String,
    /// StartCopyJob `Lifecycle`.
    pub lifecycle: LifecycleInput,
    /// StartCopyJob `IdempotencyToken` ([`idempotency_token`]).
    pub idempotency_token: String,
}

/// The input of the execution that copies a COMPLETED backup (`copy-{BackupJobId}`, on the
/// backup machine): which job, whose instance, and where to (each destination's token derived
/// from the copy execution's name, so a retried task never copies twice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopyExecutionInput {
    /// Always `copy`: the machine's copy path.
    pub action: String,
    /// The backup job whose recovery point is copied (the machine checks it is COMPLETED, in
    /// the stack's vault, of this instance).
    pub backup_job_id: String,
    /// The target's name.
    pub target: String,
    /// The backed-up instance.
    pub resource_arn: String,
    /// One StartCopyJob per element.
    pub copy_to: Vec<CopyToInput>,
}

impl CopyExecutionInput {
    /// The copies of backup job `job_id` of `resource_arn` to `destinations`, by the execution
    /// named `execution_name`.
    pub fn new(
        execution_name: &str,
        job_id: &str,
        target: &str,
        resource_arn: &str,
        destinations: &[Destination],
    ) -> Self {
        CopyExecutionInput {
            action: "copy".to_string(),
            backup_job_id: job_id.to_string(),
            target: target.to_string(),
            resource_arn: resource_arn.to_string(),
            copy_to: destinations
                .iter()
                .map(|d| CopyToInput {
                    destination_backup_vault_arn: d.vault.to_string(),
                    lifecycle: LifecycleInput {
                        delete_after_days: d.delete_after_days,
                    },
                    idempotency_token: idempotency_token(execution_name, d.vault.as_str()),
                })
                .collect(),
        }
    }

    /// The input as the JSON text StartExecution carries.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("CopyExecutionInput always serialises")
    }

    /// True when `found`, the input of an execution found under this one's name, asks for the
    /// same copies.
    pub fn same_copies(&self, found: &str) -> bool {
        serde_json::from_str::<CopyExecutionInput>(found).is_ok_and(|other| other == *self)
    }
}

/// What the machine's output (`Copies`) says about the copy to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// StartCopyJob answered with this copy job id.
    Job(String),
    /// StartCopyJob was refused (after its retries): `Error: Cause`.
    Refused(String),
    /// The execution ended with no word on this destination (it failed, or the backup did).
    Missing,
}

/// The outcome for `destination` in an execution's output JSON.
pub fn outcome(output: Option<&str>, destination: &str) -> Outcome {
    let v: serde_json::Value = match output.map(serde_json::from_str) {
        Some(Ok(v)) => v,
        _ => return Outcome::Missing,
    };
    let Some(items) = v.get("Copies").and_then(|c| c.as_array()) else {
        return Outcome::Missing;
    };
    let text =
        |i: &serde_json::Value, k: &str| i.get(k).and_then(|x| x.as_str()).map(str::to_string);
    for item in items {
        if text(item, "DestinationBackupVaultArn").as_deref() != Some(destination) {
            continue;
        }
        if let Some(id) = text(item, "CopyJobId") {
            return Outcome::Job(id);
        }
        let error = text(item, "Error").unwrap_or_default();
        let cause = text(item, "Cause").unwrap_or_default();
        return Outcome::Refused(format!("StartCopyJob failed: {error}: {cause}"));
    }
    Outcome::Missing
}

/// The end of a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct CopySummary {
    /// The copy job's terminal state; `FAILED` also when no copy job was made.
    pub state: String,
    /// True only for COMPLETED.
    pub success: bool,
    /// From the backup's end (when the daemon started waiting for the copy) to now.
    pub duration_seconds: f64,
    /// The copy in the destination vault.
    pub destination_recovery_point_arn: Option<String>,
    /// What went wrong: the copy job's status message, or why no copy job was made.
    pub error: Option<String>,
}

/// A change worth one log line.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyChange {
    /// The copy job exists (`copy_job_created`).
    Created,
    /// The copy is over (`copy_finished`).
    Finished(CopySummary),
}

/// What the tracker knows about the copy of one backup to one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    /// The target's name.
    pub target: String,
    /// The rule's name (the target's in the single-schedule form).
    pub rule: Arc<str>,
    /// The source region: where the copy job was started and is asked about.
    pub region: String,
    /// The execution that starts it (recovered copies may lack it).
    pub execution_arn: Option<String>,
    /// The destination vault's ARN.
    pub destination_vault: Arc<str>,
    /// The backup's recovery point: what a ListCopyJobs row names as its source.
    pub source_recovery_point_arn: Option<String>,
    /// The copy job, once known.
    pub copy_job_id: Option<String>,
    /// Its last state.
    pub state: Option<JobState>,
    /// When the backup ended (or the copy job was found, for recovered copies).
    pub since: DateTime<Utc>,
    finished: bool,
}

impl Copy {
    /// A copy the machine is about to start: the backup just COMPLETED.
    pub fn awaiting(
        target: String,
        rule: Arc<str>,
        region: String,
        execution_arn: Option<String>,
        destination_vault: Arc<str>,
        source_recovery_point_arn: Option<String>,
        since: DateTime<Utc>,
    ) -> Self {
        Copy {
            target,
            rule,
            region,
            execution_arn,
            destination_vault,
            source_recovery_point_arn,
            copy_job_id: None,
            state: None,
            since,
            finished: false,
        }
    }

    /// True once `copy_finished` has been reported.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// True while the copy job's id is not known.
    pub fn awaits_job(&self) -> bool {
        !self.finished && self.copy_job_id.is_none()
    }

    /// True when the copy job still has to be asked about.
    pub fn needs_job(&self) -> bool {
        !self.finished && self.copy_job_id.is_some()
    }

    /// Learns the copy job id (from the output or a listing); a second id is ignored.
    pub fn on_job_id(&mut self, id: String) -> Vec<CopyChange> {
        if self.finished || self.copy_job_id.is_some() {
            return Vec::new();
        }
        self.copy_job_id = Some(id);
        vec![CopyChange::Created]
    }

    /// Learns what the closed execution says about this destination.
    pub fn on_outcome(&mut self, outcome: Outcome, now: DateTime<Utc>) -> Vec<CopyChange> {
        match outcome {
            Outcome::Job(id) => self.on_job_id(id),
            _ if self.finished || self.copy_job_id.is_some() => Vec::new(),
            Outcome::Refused(error) => self.finish("FAILED", None, Some(error), now),
            Outcome::Missing => self.finish(
                "FAILED",
                None,
                Some(
                    "no copy job was started: the execution ended without a StartCopyJob result \
                     for this destination"
                        .into(),
                ),
                now,
            ),
        }
    }

    /// Learns the copy job's state; a terminal one ends the copy.
    pub fn on_job(&mut self, j: &CopyJobDetail, now: DateTime<Utc>) -> Vec<CopyChange> {
        if self.finished || self.copy_job_id.as_deref() != Some(j.copy_job_id.as_str()) {
            return Vec::new();
        }
        self.state = Some(j.state.clone());
        if !j.state.is_terminal() {
            return Vec::new();
        }
        let error = (j.state != JobState::Completed).then(|| {
            j.status_message
                .clone()
                .unwrap_or_else(|| format!("copy job ended {}", j.state.as_str()))
        });
        let rp = j.destination_recovery_point_arn.clone();
        self.finish(j.state.as_str(), rp, error, now)
    }

    fn finish(
        &mut self,
        state: &str,
        destination_recovery_point_arn: Option<String>,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Vec<CopyChange> {
        self.finished = true;
        vec![CopyChange::Finished(CopySummary {
            state: state.to_string(),
            success: state == "COMPLETED",
            duration_seconds: (now - self.since).num_milliseconds().max(0) as f64 / 1000.0,
            destination_recovery_point_arn,
            error,
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
    const DR2: &str = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr";

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()
    }

    fn copy() -> Copy {
        Copy::awaiting(
            "web".into(),
            "daily".into(),
            "us-east-1".into(),
            Some("arn:exec".into()),
            DR.into(),
            Some("arn:aws:ec2:us-east-1::image/ami-1".into()),
            t0(),
        )
    }

    fn job(state: &str) -> CopyJobDetail {
        CopyJobDetail {
            copy_job_id: "c-1".into(),
            state: JobState::parse(state),
            status_message: (state == "FAILED").then(|| "destination refused".into()),
            resource_arn: None,
            source_recovery_point_arn: None,
            destination_vault_arn: Some(DR.into()),
            destination_recovery_point_arn: Some("arn:rp".into()),
            creation_date: None,
            completion_date: None,
        }
    }

    #[test]
    fn tokens_are_stable_short_and_differ_per_destination_and_execution() {
        let a = idempotency_token("web-20261129T030000Z", DR);
        assert_eq!(a, idempotency_token("web-20261129T030000Z", DR));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + TOKEN_HASH_LEN);
        assert_ne!(a, idempotency_token("web-20261129T030000Z", DR2));
        assert_ne!(a, idempotency_token("web-20261130T030000Z", DR));
        let long = "x".repeat(80);
        assert_eq!(idempotency_token(&long, DR).len(), a.len());
        // Pinned: a changed derivation would copy a retried execution's backup twice.
        assert_eq!(
            idempotency_token("web-20261129T030000Z", DR),
            "copy-6c0db98d17814cacd85e974f4e7722f8"
        );
    }

    #[test]
    fn a_copy_execution_names_its_job_and_each_destination_with_its_token() {
        let d = Destination {
            vault: BackupVaultArn::parse(DR).unwrap(),
            delete_after_days: 90,
        };
        let input = CopyExecutionInput::new("copy-J1", "J1", "web", "arn:i", &[d]);
        let v = serde_json::to_value(&input).unwrap();
        assert_eq!(v["Action"], "copy");
        assert_eq!(v["BackupJobId"], "J1");
        assert_eq!(v["ResourceArn"], "arn:i");
        assert_eq!(v["CopyTo"][0]["DestinationBackupVaultArn"], DR);
        assert_eq!(v["CopyTo"][0]["Lifecycle"]["DeleteAfterDays"], 90);
        assert_eq!(
            v["CopyTo"][0]["IdempotencyToken"],
            idempotency_token("copy-J1", DR)
        );
        assert!(input.same_copies(&input.to_json()));
        let mut other = input.clone();
        other.copy_to[0].destination_backup_vault_arn = DR2.into();
        assert!(!input.same_copies(&other.to_json()));
    }

    #[test]
    fn the_output_names_each_destination_s_outcome() {
        let out = format!(
            r#"{{"BackupJobId":"j","Copies":[{{"DestinationBackupVaultArn":"{DR}","CopyJobId":"c-1"}},
            {{"DestinationBackupVaultArn":"{DR2}","Error":"Backup.AccessDeniedException","Cause":"no"}}]}}"#
        );
        assert_eq!(outcome(Some(&out), DR), Outcome::Job("c-1".into()));
        assert_eq!(
            outcome(Some(&out), DR2),
            Outcome::Refused("StartCopyJob failed: Backup.AccessDeniedException: no".into())
        );
        assert_eq!(
            outcome(Some(r#"{"BackupJobId":"j"}"#), DR),
            Outcome::Missing
        );
        assert_eq!(outcome(None, DR), Outcome::Missing);
    }

    #[test]
    fn a_copy_is_created_once_and_finishes_once() {
        let mut c = copy();
        assert!(c.awaits_job());
        assert_eq!(c.on_job_id("c-1".into()), vec![CopyChange::Created]);
        assert!(c.on_job_id("c-2".into()).is_empty(), "one id");
        assert!(c.on_outcome(Outcome::Job("c-1".into()), t0()).is_empty());
        assert!(c.on_job(&job("RUNNING"), t0()).is_empty());
        let end = t0() + chrono::Duration::seconds(90);
        let changes = c.on_job(&job("COMPLETED"), end);
        let [CopyChange::Finished(s)] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert!(s.success);
        assert_eq!((s.state.as_str(), s.duration_seconds), ("COMPLETED", 90.0));
        assert_eq!(s.error, None);
        assert!(c.is_finished());
        assert!(c.on_job(&job("COMPLETED"), end).is_empty(), "logged once");
    }

    #[test]
    fn failed_refused_and_missing_copies_are_failures_with_their_reason() {
        let mut c = copy();
        c.on_job_id("c-1".into());
        let changes = c.on_job(&job("FAILED"), t0());
        let [CopyChange::Finished(s)] = changes.as_slice() else {
            panic!()
        };
        assert!(!s.success);
        assert_eq!(s.error.as_deref(), Some("destination refused"));

        let mut c = copy();
        let changes = c.on_outcome(Outcome::Refused("StartCopyJob failed: x: y".into()), t0());
        let [CopyChange::Finished(s)] = changes.as_slice() else {
            panic!()
        };
        assert_eq!((s.state.as_str(), s.success), ("FAILED", false));
        assert!(s.error.as_deref().unwrap().contains("StartCopyJob"));

        let mut c = copy();
        let changes = c.on_outcome(Outcome::Missing, t0());
        assert!(matches!(&changes[..], [CopyChange::Finished(s)] if !s.success));
    }
}
