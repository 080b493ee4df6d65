//! What the machines' `Validate` states judge before any AWS call, rule by rule as the
//! template's JSONata does (`BackupInputProblems`, `CopyItemProblems`, `RestoreInputProblems`),
//! with the same causes: the first problem found is the `InputRefused` cause, naming the
//! member at fault. Pure.

use serde_json::{Map, Value, json};

use super::ssm::HookSettings;
use super::stack::StackParameters;

/// The members a backup execution may have (`CopyTo` is accepted and ignored: copies are
/// their own executions).
const BACKUP_MEMBERS: [&str; 16] = [
    "ResourceArn",
    "Target",
    "ScheduledFor",
    "Trigger",
    "StartWindowMinutes",
    "CompleteWindowMinutes",
    "DeleteAfterDays",
    "PreDocument",
    "PostDocument",
    "PreCommand",
    "PostCommand",
    "PostHookWhen",
    "HookMaxDowntimeSeconds",
    "OnPreHookFailure",
    "BackupOptions",
    "CopyTo",
];
/// The members a copy execution may have.
const COPY_MEMBERS: [&str; 5] = ["Action", "BackupJobId", "Target", "ResourceArn", "CopyTo"];
/// The members of a backup input the stack has defaults for (an execution started by hand).
const DEFAULTED: [&str; 6] = [
    "Target",
    "ScheduledFor",
    "Trigger",
    "StartWindowMinutes",
    "CompleteWindowMinutes",
    "DeleteAfterDays",
];
/// The members a restore test or an on-demand restore may have.
const RESTORE_MEMBERS: [&str; 13] = [
    "Action",
    "Target",
    "ResourceArn",
    "RecoveryPointArn",
    "InstanceType",
    "SubnetId",
    "SecurityGroupIds",
    "KeepInstanceProfile",
    "ScheduledFor",
    "ExpiresAt",
    "MaxRestoreSeconds",
    "KeepSeconds",
    "ValidateDocument",
];

/// What an input is judged against: the machine's partition, region and account (from its
/// ARN), the stack's parameters and its hook settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub stack: &'a StackParameters,
    pub hooks: &'a HookSettings,
}

impl Rules<'_> {
    /// True for `arn:P:ec2:R:A:instance/i-<8 to 17 hex>` of this partition, region and account.
    pub(crate) fn is_instance(&self, v: &Value) -> bool {
        let Some(arn) = text(v, 256) else {
            return false;
        };
        let parts: Vec<&str> = arn.split('/').collect();
        parts.len() == 2
            && parts[0]
                == format!(
                    "arn:{}:ec2:{}:{}:instance",
                    self.partition, self.region, self.account
                )
            && prefixed_id(parts[1], "i-")
    }

    fn instance_refusal(&self) -> String {
        format!(
            "InputRefused: ResourceArn must be an EC2 instance of this partition, region and \
             account (arn:{}:ec2:{}:{}:instance/i-...)",
            self.partition, self.region, self.account
        )
    }

    fn retention_refusal(&self) -> String {
        let s = self.stack;
        format!(
            "InputRefused: DeleteAfterDays must be a whole number between {} and {} (stack \
             parameters MinRetentionDays, MaxRetentionDays)",
            s.min_retention_days, s.max_retention_days
        )
    }
}

/// A whole number within `lo..=hi`.
fn int(v: &Value, lo: u64, hi: u64) -> bool {
    v.as_f64()
        .is_some_and(|f| f.fract() == 0.0 && f >= lo as f64 && f <= hi as f64)
}

/// A string of 1 to `max` characters.
fn text(v: &Value, max: usize) -> Option<&str> {
    v.as_str()
        .filter(|s| (1..=max).contains(&s.chars().count()))
}

/// The members of `o` outside `allowed`, in key order.
fn extra(o: &Map<String, Value>, allowed: &[&str]) -> Vec<String> {
    o.keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// `prefix` then 8 to 17 lower-case hex digits (`i-…`, `ami-…`, `subnet-…`, `sg-…`).
fn prefixed_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `2026-11-29T10:00:00Z`, optionally with a fraction of a second.
pub(crate) fn is_utc_time(v: &Value) -> bool {
    let Some(s) = text(v, 64) else {
        return false;
    };
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() < 20 || !s.ends_with('Z') {
        return false;
    }
    let fixed = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let rest = &b[19..b.len() - 1];
    fixed && (rest.is_empty() || (rest.len() > 1 && rest[0] == b'.' && digits(20..b.len() - 1)))
}

/// An SSM document name: 3 to 128 of `A-Z a-z 0-9 _ . -`, starting with the prefix.
fn document_name_ok(v: &Value, prefix: &str) -> bool {
    text(v, 128).is_some_and(|n| {
        n.len() >= 3
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && n.starts_with(prefix)
    })
}

/// Document parameters: at most 20 names (`[A-Za-z0-9_]{1,64}`), each a list of 1 or more
/// strings of at most 1024 characters.
fn params_ok(p: &Value) -> bool {
    let Some(map) = p.as_object() else {
        return false;
    };
    map.len() <= 20
        && map.iter().all(|(k, v)| {
            (1..=64).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && v.as_array().is_some_and(|list| {
                    !list.is_empty()
                        && list
                            .iter()
                            .all(|s| s.as_str().is_some_and(|s| s.chars().count() <= 1024))
                })
        })
}

/// A hook document's problem (`member`: `PreDocument` or `PostDocument`).
fn document_problem(d: &Value, member: &str, rules: &Rules<'_>) -> Option<String> {
    let Some(o) = d.as_object() else {
        return Some(format!(
            "InputRefused: {member} must be an object {{Name, Version, Parameters}}"
        ));
    };
    let extra = extra(o, &["Name", "Version", "Parameters"]);
    let prefix = &rules.hooks.document_prefix;
    let version = &rules.stack.hook_document_version;
    if !extra.is_empty() {
        Some(format!(
            "InputRefused: {member}.{} is not a member of a hook document",
            extra.join(", ")
        ))
    } else if !document_name_ok(&d["Name"], prefix) {
        Some(format!(
            "InputRefused: {member}.Name must be an SSM document name starting with {prefix} \
             (stack parameter HookDocumentPrefix)"
        ))
    } else if d["Version"].as_str() != Some(version.as_str()) {
        Some(format!(
            "InputRefused: {member}.Version must be {version} (stack parameter HookDocumentVersion)"
        ))
    } else if !params_ok(&d["Parameters"]) {
        Some(format!(
            "InputRefused: {member}.Parameters must map at most 20 names to lists of strings of \
             at most 1024 characters"
        ))
    } else {
        None
    }
}

/// The first problem of a backup machine input (a backup or a copy), as `BackupInputProblems`
/// finds it; None for a sound input.
pub(crate) fn backup_input_problem(input: &Value, rules: &Rules<'_>) -> Option<String> {
    let Some(o) = input.as_object() else {
        return Some("InputRefused: the input must be a JSON object".to_string());
    };
    match o.get("Action") {
        Some(a) if a == "copy" => copy_problem(input, o, rules),
        Some(_) => Some("InputRefused: Action must be absent (a backup) or copy".to_string()),
        None => backup_members_problem(input, o, rules)
            .or_else(|| hook_problem(input, rules))
            .or_else(|| {
                let options = input.get("BackupOptions")?;
                let vss = options.as_object().is_some_and(|m| m.len() == 1)
                    && options["WindowsVSS"] == "enabled";
                (!vss).then(|| {
                    "InputRefused: BackupOptions must be {WindowsVSS: enabled} or absent"
                        .to_string()
                })
            }),
    }
}

/// The schedule, window and retention members of a backup.
fn backup_members_problem(i: &Value, o: &Map<String, Value>, rules: &Rules<'_>) -> Option<String> {
    let extra = extra(o, &BACKUP_MEMBERS);
    let start = &i["StartWindowMinutes"];
    let complete = &i["CompleteWindowMinutes"];
    let s = rules.stack;
    if !extra.is_empty() {
        Some(format!(
            "InputRefused: {} is not a member of a backup execution",
            extra.join(", ")
        ))
    } else if !rules.is_instance(&i["ResourceArn"]) {
        Some(rules.instance_refusal())
    } else if text(&i["Target"], 256).is_none() {
        Some("InputRefused: Target must be a string of 1 to 256 characters".to_string())
    } else if !is_utc_time(&i["ScheduledFor"]) {
        Some("InputRefused: ScheduledFor must be a UTC time like 2026-11-29T10:00:00Z".to_string())
    } else if !matches!(
        i["Trigger"].as_str(),
        Some("schedule" | "catch-up" | "manual")
    ) {
        Some("InputRefused: Trigger must be schedule, catch-up or manual".to_string())
    } else if !int(start, 60, 10_080) {
        Some(
            "InputRefused: StartWindowMinutes must be a whole number between 60 and 10080"
                .to_string(),
        )
    } else if !(int(complete, 61, 43_200)
        && (!start.is_number() || complete.as_f64() > start.as_f64()))
    {
        Some(
            "InputRefused: CompleteWindowMinutes must be a whole number above \
             StartWindowMinutes and at most 43200"
                .to_string(),
        )
    } else if !int(
        &i["DeleteAfterDays"],
        s.min_retention_days,
        s.max_retention_days,
    ) {
        Some(rules.retention_refusal())
    } else {
        None
    }
}

/// The hook members of a backup: documents, raw commands, their timing and failure policy.
fn hook_problem(i: &Value, rules: &Rules<'_>) -> Option<String> {
    let has = |m: &str| i.get(m).is_some();
    if has("PreDocument") && has("PreCommand") {
        return Some("InputRefused: PreDocument and PreCommand exclude each other".to_string());
    }
    if has("PostDocument") && has("PostCommand") {
        return Some("InputRefused: PostDocument and PostCommand exclude each other".to_string());
    }
    for member in ["PreDocument", "PostDocument"] {
        if let Some(d) = i.get(member)
            && let Some(problem) = document_problem(d, member, rules)
        {
            return Some(problem);
        }
    }
    if (has("PreCommand") || has("PostCommand")) && !rules.hooks.allow_raw_commands {
        return Some(
            "InputRefused: PreCommand and PostCommand (raw shell) are off in this stack (stack \
             parameter AllowRawCommands = false); use PreDocument and PostDocument"
                .to_string(),
        );
    }
    for member in ["PreCommand", "PostCommand"] {
        if has(member) && text(&i[member], 4096).is_none() {
            return Some(format!(
                "InputRefused: {member} must be a string of 1 to 4096 characters"
            ));
        }
    }
    if has("PostHookWhen") && !matches!(i["PostHookWhen"].as_str(), Some("started" | "completed")) {
        return Some("InputRefused: PostHookWhen must be started or completed".to_string());
    }
    if has("HookMaxDowntimeSeconds") && !int(&i["HookMaxDowntimeSeconds"], 10, 14_400) {
        return Some(
            "InputRefused: HookMaxDowntimeSeconds must be a whole number between 10 and 14400"
                .to_string(),
        );
    }
    if has("OnPreHookFailure") && !matches!(i["OnPreHookFailure"].as_str(), Some("backup" | "skip"))
    {
        return Some("InputRefused: OnPreHookFailure must be backup or skip".to_string());
    }
    None
}

/// A copy execution's members (each `CopyTo` element is judged in the Map, one by one).
fn copy_problem(i: &Value, o: &Map<String, Value>, rules: &Rules<'_>) -> Option<String> {
    let extra = extra(o, &COPY_MEMBERS);
    let job_id_ok = text(&i["BackupJobId"], 100)
        .is_some_and(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let copy_to_ok = i["CopyTo"]
        .as_array()
        .is_some_and(|l| (1..=20).contains(&l.len()) && l.iter().all(Value::is_object));
    if !extra.is_empty() {
        Some(format!(
            "InputRefused: {} is not a member of a copy execution",
            extra.join(", ")
        ))
    } else if !job_id_ok {
        Some("InputRefused: BackupJobId must be an AWS Backup job id".to_string())
    } else if text(&i["Target"], 256).is_none() {
        Some("InputRefused: Target must be a string of 1 to 256 characters".to_string())
    } else if !rules.is_instance(&i["ResourceArn"]) {
        Some(rules.instance_refusal())
    } else if !copy_to_ok {
        Some(
            "InputRefused: CopyTo must be a list of 1 to 20 destinations \
             {DestinationBackupVaultArn, Lifecycle, IdempotencyToken}"
                .to_string(),
        )
    } else {
        None
    }
}

/// `arn:P:backup:REGION:ACCOUNT(12 digits):backup-vault:NAME(2-50 of A-Za-z0-9_.-)`.
fn is_vault_arn(v: &Value, partition: &str) -> bool {
    let Some(arn) = text(v, 256) else {
        return false;
    };
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && parts[1] == partition
        && parts[2] == "backup"
        && !parts[3].is_empty()
        && parts[3]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5] == "backup-vault"
        && (2..=50).contains(&parts[6].len())
        && parts[6]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The first problem of one `CopyTo` element, as `CopyItemProblems` finds it.
pub(crate) fn copy_item_problem(d: &Value, rules: &Rules<'_>) -> Option<String> {
    let Some(o) = d.as_object() else {
        return Some("InputRefused: a CopyTo element must be an object".to_string());
    };
    let arn = &d["DestinationBackupVaultArn"];
    let s = rules.stack;
    let lifecycle_ok = d["Lifecycle"].as_object().is_some_and(|l| l.len() == 1)
        && int(
            &d["Lifecycle"]["DeleteAfterDays"],
            s.min_retention_days,
            s.max_retention_days,
        );
    let token_ok = d["IdempotencyToken"].as_str().is_some_and(|t| {
        (1..=100).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    });
    if !extra(
        o,
        &["DestinationBackupVaultArn", "Lifecycle", "IdempotencyToken"],
    )
    .is_empty()
    {
        Some(
            "InputRefused: a CopyTo element has only DestinationBackupVaultArn, Lifecycle and \
             IdempotencyToken"
                .to_string(),
        )
    } else if !is_vault_arn(arn, rules.partition) {
        Some(format!(
            "InputRefused: DestinationBackupVaultArn must be a backup vault ARN \
             (arn:{}:backup:REGION:ACCOUNT:backup-vault:NAME)",
            rules.partition
        ))
    } else if let Some(a) = arn.as_str()
        && !s.copy_destination_allowed(a)
    {
        Some(format!(
            "InputRefused: DestinationBackupVaultArn {a} is not in this stack parameter \
             CopyDestinationVaultArns"
        ))
    } else if !lifecycle_ok {
        Some(format!(
            "InputRefused: Lifecycle must be {{DeleteAfterDays}} with a whole number between {} \
             and {} (stack parameters MinRetentionDays, MaxRetentionDays)",
            s.min_retention_days, s.max_retention_days
        ))
    } else if !token_ok {
        Some("InputRefused: IdempotencyToken must be 1 to 100 of A-Z a-z 0-9 _ -".to_string())
    } else {
        None
    }
}

/// True when a refused backup input is an object without `Action` that lacks a member the
/// stack has a default for: `Explain` then applies the defaults and judges it again.
pub(crate) fn misses_defaults(input: &Value) -> bool {
    input
        .as_object()
        .is_some_and(|o| !o.contains_key("Action") && DEFAULTED.iter().any(|k| !o.contains_key(*k)))
}

/// `ApplyDefaults`: the stack's defaults under the input (the input wins).
pub(crate) fn with_defaults(
    input: &Value,
    execution_name: &str,
    start_iso: &str,
    stack: &StackParameters,
) -> Value {
    let mut merged = json!({
        "Target": execution_name,
        "ScheduledFor": start_iso,
        "Trigger": "manual",
        "StartWindowMinutes": stack.default_start_window_minutes,
        "CompleteWindowMinutes": stack.default_complete_window_minutes,
        "DeleteAfterDays": stack.default_delete_after_days,
    });
    if let (Some(m), Some(o)) = (merged.as_object_mut(), input.as_object()) {
        for (k, v) in o {
            m.insert(k.clone(), v.clone());
        }
    }
    merged
}

/// The first problem of a restore machine input (test, restore or sweep), as
/// `RestoreInputProblems` finds it.
pub(crate) fn restore_input_problem(input: &Value, rules: &Rules<'_>) -> Option<String> {
    let Some(o) = input.as_object() else {
        return Some("InputRefused: the input must be a JSON object".to_string());
    };
    match o.get("Action").and_then(Value::as_str) {
        Some("sweep") => {
            let extra = extra(o, &["Action", "ResourceArn"]);
            if !extra.is_empty() {
                Some(format!(
                    "InputRefused: {} is not a member of a sweep execution",
                    extra.join(", ")
                ))
            } else if !rules.is_instance(&input["ResourceArn"]) {
                Some(rules.instance_refusal())
            } else {
                None
            }
        }
        Some(action @ ("test" | "restore")) => restore_members_problem(input, o, action, rules)
            .or_else(|| restore_options_problem(input, action, rules)),
        _ => Some("InputRefused: Action must be test, restore or sweep".to_string()),
    }
}

/// What to restore and where: the source, the recovery point, the instance's placement.
fn restore_members_problem(
    i: &Value,
    o: &Map<String, Value>,
    action: &str,
    rules: &Rules<'_>,
) -> Option<String> {
    let extra = extra(o, &RESTORE_MEMBERS);
    let rp_ok = text(&i["RecoveryPointArn"], 256).is_some_and(|rp| {
        let parts: Vec<&str> = rp.split('/').collect();
        parts.len() == 2
            && parts[0] == format!("arn:{}:ec2:{}::image", rules.partition, rules.region)
            && prefixed_id(parts[1], "ami-")
    });
    let type_ok = text(&i["InstanceType"], 64).is_some_and(|t| {
        t.split_once('.').is_some_and(|(family, size)| {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !size.is_empty()
                && size
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
    });
    let subnet_ok = text(&i["SubnetId"], 32).is_some_and(|s| prefixed_id(s, "subnet-"));
    let groups_ok = i["SecurityGroupIds"].as_array().is_some_and(|l| {
        (1..=5).contains(&l.len())
            && l.iter()
                .all(|g| text(g, 32).is_some_and(|g| prefixed_id(g, "sg-")))
    });
    if !extra.is_empty() {
        Some(format!(
            "InputRefused: {} is not a member of a {action} execution (never UserData, \
             KeyName, NetworkInterfaces, an instance profile or any other metadata)",
            extra.join(", ")
        ))
    } else if text(&i["Target"], 256).is_none() {
        Some("InputRefused: Target must be a string of 1 to 256 characters".to_string())
    } else if !rules.is_instance(&i["ResourceArn"]) {
        Some(rules.instance_refusal())
    } else if !rp_ok {
        Some(format!(
            "InputRefused: RecoveryPointArn must be an EC2 recovery point (AMI) of this \
             partition and region (arn:{}:ec2:{}::image/ami-...)",
            rules.partition, rules.region
        ))
    } else if !type_ok {
        Some("InputRefused: InstanceType must be an EC2 instance type like t3.micro".to_string())
    } else if !subnet_ok {
        Some("InputRefused: SubnetId must be a subnet id (subnet-...)".to_string())
    } else if !groups_ok {
        Some(
            "InputRefused: SecurityGroupIds must be a list of 1 to 5 security group ids (sg-...)"
                .to_string(),
        )
    } else {
        None
    }
}

/// How the restore runs: profile, times, validation document.
fn restore_options_problem(i: &Value, action: &str, rules: &Rules<'_>) -> Option<String> {
    let has = |m: &str| i.get(m).is_some();
    let keep = &i["KeepInstanceProfile"];
    let doc = &i["ValidateDocument"];
    let prefix = &rules.hooks.document_prefix;
    if has("KeepInstanceProfile") && !keep.is_boolean() {
        Some("InputRefused: KeepInstanceProfile must be true or false".to_string())
    } else if keep == true && !rules.stack.allow_instance_profile_restore {
        Some(
            "InputRefused: KeepInstanceProfile is off in this stack (stack parameter \
             AllowInstanceProfileRestore = false)"
                .to_string(),
        )
    } else if !is_utc_time(&i["ScheduledFor"]) {
        Some("InputRefused: ScheduledFor must be a UTC time like 2026-11-29T10:00:00Z".to_string())
    } else if (action == "test" || has("ExpiresAt")) && !is_utc_time(&i["ExpiresAt"]) {
        Some("InputRefused: ExpiresAt must be a UTC time like 2026-11-29T12:00:00Z".to_string())
    } else if !int(&i["MaxRestoreSeconds"], 60, 86_400) {
        Some(
            "InputRefused: MaxRestoreSeconds must be a whole number between 60 and 86400"
                .to_string(),
        )
    } else if has("KeepSeconds") && !int(&i["KeepSeconds"], 0, 86_400) {
        Some("InputRefused: KeepSeconds must be a whole number between 0 and 86400".to_string())
    } else if action == "restore" && (has("KeepSeconds") || has("ValidateDocument")) {
        Some(
            "InputRefused: KeepSeconds and ValidateDocument belong to restore tests (Action test)"
                .to_string(),
        )
    } else if has("ValidateDocument")
        && !doc
            .as_object()
            .is_some_and(|d| extra(d, &["Name", "Parameters"]).is_empty())
    {
        Some("InputRefused: ValidateDocument must be {Name, Parameters}".to_string())
    } else if has("ValidateDocument") && !document_name_ok(&doc["Name"], prefix) {
        Some(format!(
            "InputRefused: ValidateDocument.Name must be an SSM document name starting with \
             {prefix} (stack parameter HookDocumentPrefix)"
        ))
    } else if has("ValidateDocument") && !params_ok(&doc["Parameters"]) {
        Some(
            "InputRefused: ValidateDocument.Parameters must map at most 20 names to lists of \
             strings of at most 1024 characters"
                .to_string(),
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

    fn rules<'a>(stack: &'a StackParameters, hooks: &'a HookSettings) -> Rules<'a> {
        Rules {
            partition: "aws",
            region: "us-east-1",
            account: "123456789012",
            stack,
            hooks,
        }
    }

    fn backup() -> Value {
        json!({"ResourceArn": EC2, "Target": "web", "ScheduledFor": "2026-11-29T10:00:00Z",
               "Trigger": "schedule", "StartWindowMinutes": 60, "CompleteWindowMinutes": 10080,
               "DeleteAfterDays": 35})
    }

    /// One change to a sound input.
    type Change = Box<dyn FnOnce(&mut Value)>;

    fn judge(change: impl FnOnce(&mut Value)) -> Option<String> {
        let (s, h) = (StackParameters::default(), HookSettings::default());
        let mut i = backup();
        change(&mut i);
        backup_input_problem(&i, &rules(&s, &h))
    }

    #[test]
    fn a_sound_backup_passes_and_each_refusal_names_its_member() {
        assert_eq!(judge(|_| {}), None);
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|i| i["ResourceArn"] = json!("arn:aws:rds:us-east-1:123456789012:db:x")),
                "ResourceArn must be an EC2 instance",
            ),
            (
                Box::new(|i| {
                    i["ResourceArn"] =
                        json!("arn:aws:ec2:us-east-1:210987654321:instance/i-0123456789abcdef0");
                }),
                "ResourceArn",
            ),
            (
                Box::new(|i| {
                    i["ResourceArn"] =
                        json!("arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0");
                }),
                "ResourceArn",
            ),
            (
                Box::new(|i| i["DeleteAfterDays"] = json!(1)),
                "DeleteAfterDays must be a whole number between 7 and 36500",
            ),
            (
                Box::new(|i| i["DeleteAfterDays"] = json!(7.5)),
                "DeleteAfterDays",
            ),
            (
                Box::new(|i| i["StartWindowMinutes"] = json!(59)),
                "StartWindowMinutes",
            ),
            (
                Box::new(|i| i["CompleteWindowMinutes"] = json!(60)),
                "CompleteWindowMinutes",
            ),
            (Box::new(|i| i["Trigger"] = json!("cron")), "Trigger"),
            (
                Box::new(|i| i["ScheduledFor"] = json!("tomorrow")),
                "ScheduledFor",
            ),
            (
                Box::new(|i| i["BackupOptions"] = json!({"WindowsVSS": "disabled"})),
                "BackupOptions",
            ),
            (
                Box::new(|i| i["IamRoleArn"] = json!("x")),
                "IamRoleArn is not a member",
            ),
            (
                Box::new(|i| {
                    i["PreDocument"] = json!({"Name": "orchestrator-x", "Version": "7",
                                              "Parameters": {"a": ["b"]}});
                }),
                "PreDocument.Version must be $DEFAULT",
            ),
            (
                Box::new(|i| {
                    i["PostDocument"] = json!({"Name": "AWS-RunShellScript", "Version": "$DEFAULT",
                                               "Parameters": {"a": ["b"]}});
                }),
                "HookDocumentPrefix",
            ),
            (
                Box::new(|i| i["PreCommand"] = json!("true")),
                "AllowRawCommands",
            ),
            (
                Box::new(|i| i["Action"] = json!("restore")),
                "Action must be absent",
            ),
        ];
        for (change, says) in cases {
            let problem = judge(change).expect("refused");
            assert!(problem.starts_with("InputRefused: "), "{problem}");
            assert!(problem.contains(says), "{problem} should say {says}");
        }
        assert_eq!(
            judge(|i| i["BackupOptions"] = json!({"WindowsVSS": "enabled"})),
            None
        );
    }

    #[test]
    fn copies_and_their_elements_are_judged_apart() {
        let (s, h) = (StackParameters::default(), HookSettings::default());
        let r = rules(&s, &h);
        let item = json!({"DestinationBackupVaultArn":
                          "arn:aws:backup:us-west-2:123456789012:backup-vault:dr",
                          "Lifecycle": {"DeleteAfterDays": 90}, "IdempotencyToken": "t-1"});
        let copy = json!({"Action": "copy", "BackupJobId": "AB-12", "Target": "web",
                          "ResourceArn": EC2, "CopyTo": [item]});
        assert_eq!(backup_input_problem(&copy, &r), None);
        assert_eq!(copy_item_problem(&item, &r), None);
        let mut short = item.clone();
        short["Lifecycle"]["DeleteAfterDays"] = json!(1);
        assert!(copy_item_problem(&short, &r).unwrap().contains("Lifecycle"));
        let mut bad = item;
        bad["DestinationBackupVaultArn"] = json!("dr");
        assert!(
            copy_item_problem(&bad, &r)
                .unwrap()
                .contains("DestinationBackupVaultArn")
        );
        let mut no_list = copy;
        no_list["CopyTo"] = json!([]);
        assert!(
            backup_input_problem(&no_list, &r)
                .unwrap()
                .contains("CopyTo")
        );
    }

    #[test]
    fn defaults_fill_a_hand_started_input_under_its_own_members() {
        let hand = json!({"ResourceArn": EC2, "DeleteAfterDays": 90});
        assert!(misses_defaults(&hand));
        assert!(!misses_defaults(&backup()));
        let s = StackParameters::default();
        let full = with_defaults(&hand, "try-1", "2026-11-29T10:00:00.123Z", &s);
        assert_eq!(full["DeleteAfterDays"], 90);
        assert_eq!(full["StartWindowMinutes"], 60);
        assert_eq!(full["Target"], "try-1");
        let h = HookSettings::default();
        assert_eq!(backup_input_problem(&full, &rules(&s, &h)), None);
    }

    #[test]
    fn restore_inputs_are_judged_by_action() {
        let (s, h) = (StackParameters::default(), HookSettings::default());
        let r = rules(&s, &h);
        let test = json!({"Action": "test", "Target": "web", "ResourceArn": EC2,
            "RecoveryPointArn": "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0",
            "InstanceType": "t3.micro", "SubnetId": "subnet-0123456789abcdef0",
            "SecurityGroupIds": ["sg-0123456789abcdef0"], "ScheduledFor": "2026-11-29T10:00:00Z",
            "ExpiresAt": "2026-11-29T12:00:00Z", "MaxRestoreSeconds": 3600});
        assert_eq!(restore_input_problem(&test, &r), None);
        let mut profile = test.clone();
        profile["IamInstanceProfileName"] = json!("admin");
        assert!(
            restore_input_problem(&profile, &r)
                .unwrap()
                .contains("IamInstanceProfileName is not a member")
        );
        let mut other = test.clone();
        other["RecoveryPointArn"] = json!("arn:aws:ec2:eu-west-1::image/ami-0123456789abcdef0");
        assert!(
            restore_input_problem(&other, &r)
                .unwrap()
                .contains("RecoveryPointArn")
        );
        let mut keep = test.clone();
        keep["KeepInstanceProfile"] = json!(true);
        assert!(
            restore_input_problem(&keep, &r)
                .unwrap()
                .contains("AllowInstanceProfileRestore")
        );
        let sweep = json!({"Action": "sweep", "ResourceArn": EC2});
        assert_eq!(restore_input_problem(&sweep, &r), None);
        let untyped = json!({"ResourceArn": EC2});
        assert!(
            restore_input_problem(&untyped, &r)
                .unwrap()
                .contains("Action")
        );
    }

    #[test]
    fn utc_times_follow_the_template_pattern() {
        assert!(is_utc_time(&json!("2026-11-29T10:00:00Z")));
        assert!(is_utc_time(&json!("2026-11-29T10:00:00.123Z")));
        assert!(!is_utc_time(&json!("2026-11-29T10:00:00+01:00")));
        assert!(!is_utc_time(&json!("2026-11-29T10:00:00.Z")));
        assert!(!is_utc_time(&json!(5)));
    }
}
