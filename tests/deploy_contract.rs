//! The contract between the daemon and `deploy/cloudformation/orchestrator.yaml`: the backup
//! machine's and the restore machine's inputs, the names the daemon reads from their
//! histories, their error names, and the IAM and vault statements that protect the backups.
//!
//! How the template's machines are read: JSONPath machines whose results go under new members
//! through `ResultPath` (`$.Backup`, `$.Run.…`), so a `$.Name` read anywhere is either a member
//! the machine wrote or an input member. The first state (`Validate`, JSONata) judges the whole
//! input against an allow-list of members written once, in a DefinitionSubstitution
//! (`BackupInputProblems`, `RestoreInputProblems`): this test reads those lists and checks
//! them against what the daemon sends, so a member added on either side fails here.
//!
//! Inputs are built from JSON through the daemon's own serde types, so this file compiles
//! whatever fields those types gain or lose; what they must (not) serialise is asserted.

use std::collections::BTreeSet;

use backup_orchestrator::copies::{CopyExecutionInput, CopyToInput};
use backup_orchestrator::execution::ExecutionInput;
use serde_json::{Value, json};

const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

const TEMPLATE: &str = include_str!("../deploy/cloudformation/orchestrator.yaml");
const START_BACKUP_JOB: &str = "arn:aws:states:::aws-sdk:backup:startBackupJob";
const START_RESTORE_JOB: &str = "arn:aws:states:::aws-sdk:backup:startRestoreJob";

/// The hook tasks, by phase: the names the daemon's `hooks::read_history` matches exactly.
const HOOK_TASKS: [&str; 8] = backup_orchestrator::hooks::HOOK_TASK_STATES;
const PRE_TASKS: [&str; 4] = [HOOK_TASKS[0], HOOK_TASKS[1], HOOK_TASKS[2], HOOK_TASKS[3]];
const POST_TASKS: [&str; 4] = [HOOK_TASKS[4], HOOK_TASKS[5], HOOK_TASKS[6], HOOK_TASKS[7]];

/// Members of a copy execution (the daemon starts `copy-{BackupJobId}` with exactly these).
const COPY_EXECUTION_MEMBERS: [&str; 5] =
    ["Action", "BackupJobId", "Target", "ResourceArn", "CopyTo"];
/// Members of a restore test / on-demand restore execution.
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
/// Members of a sweep execution.
const SWEEP_MEMBERS: [&str; 2] = ["Action", "ResourceArn"];
/// Backup members the stack fills in for an execution started by hand (`ApplyDefaults`).
const DEFAULTED: [&str; 6] = [
    "Target",
    "ScheduledFor",
    "Trigger",
    "StartWindowMinutes",
    "CompleteWindowMinutes",
    "DeleteAfterDays",
];
/// Accepted in a backup execution and ignored: an older daemon still sends it (copies are
/// their own execution now); the machine must not refuse its backups during an upgrade.
const IGNORED_BACKUP_MEMBERS: [&str; 1] = ["CopyTo"];

// --- the daemon's inputs, through its serde types -------------------------------------------

fn document(action: &str) -> Value {
    json!({"Name": "orchestrator-systemd-unit", "Version": "$DEFAULT", "Parameters": {"action": [action]}})
}

/// A backup input with every optional member set (raw commands and documents both, which the
/// machine refuses together: this is about member names, not a real execution).
fn full_backup_input() -> ExecutionInput {
    serde_json::from_value(json!({
        "ResourceArn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
        "Target": "web-1",
        "ScheduledFor": "2026-11-29T10:00:00Z",
        "Trigger": "schedule",
        "StartWindowMinutes": 60,
        "CompleteWindowMinutes": 10080,
        "DeleteAfterDays": 35,
        "PreCommand": "systemctl stop app",
        "PostCommand": "systemctl start app",
        "PreDocument": document("stop"),
        "PostDocument": document("start"),
        "PostHookWhen": "started",
        "HookMaxDowntimeSeconds": 900,
        "OnPreHookFailure": "backup",
        "BackupOptions": {"WindowsVSS": "enabled"},
    }))
    .expect("ExecutionInput deserialises the backup members")
}

fn members_of(json_text: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(json_text).expect("JSON");
    v.as_object().expect("an object").keys().cloned().collect()
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

// --- the template -------------------------------------------------------------------------

/// The template as JSON, `!Ref`/`!Sub`/`!If`... turned into `{"Fn::Name": ...}` maps.
fn template_json() -> Value {
    fn conv(v: &serde_yaml::Value) -> Value {
        use serde_yaml::Value as Y;
        match v {
            Y::Tagged(t) => {
                let tag = t.tag.to_string();
                let tag = tag.trim_start_matches('!');
                let name = if tag == "Ref" {
                    "Ref".to_string()
                } else {
                    format!("Fn::{tag}")
                };
                json!({ name: conv(&t.value) })
            }
            Y::Sequence(items) => Value::Array(items.iter().map(conv).collect()),
            Y::Mapping(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.as_str().expect("string keys").to_string(), conv(v)))
                    .collect(),
            ),
            Y::Null => Value::Null,
            Y::Bool(b) => Value::Bool(*b),
            Y::Number(n) => serde_json::to_value(n).expect("a number"),
            Y::String(s) => Value::String(s.clone()),
        }
    }
    conv(&serde_yaml::from_str(TEMPLATE).expect("orchestrator.yaml is YAML"))
}

struct Machine {
    definition: Value,
    /// DefinitionSubstitutions: name -> its text (`!Sub` bodies as written).
    substitutions: Vec<(String, Value)>,
}

impl Machine {
    fn of(name: &str) -> Machine {
        let t = template_json();
        let props = &t["Resources"][name]["Properties"];
        assert!(
            props.get("DefinitionString").is_none(),
            "{name}: write the machine as a YAML `Definition` map (this test reads that)"
        );
        let definition = props["Definition"].clone();
        assert!(
            !definition.to_string().contains("\"Fn::")
                && !definition.to_string().contains("\"Ref\""),
            "{name}: the definition must be plain data; put stack values in DefinitionSubstitutions"
        );
        let substitutions = props["DefinitionSubstitutions"]
            .as_object()
            .expect("DefinitionSubstitutions")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Machine {
            definition,
            substitutions,
        }
    }

    fn states(&self) -> &serde_json::Map<String, Value> {
        self.definition["States"].as_object().expect("States")
    }

    fn state(&self, name: &str) -> &Value {
        self.states()
            .get(name)
            .unwrap_or_else(|| panic!("no state {name}"))
    }

    /// The text of a substitution written as `!Sub` (first element with variables).
    fn sub_text(&self, name: &str) -> String {
        let (_, v) = self
            .substitutions
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no substitution {name}"));
        let sub = &v["Fn::Sub"];
        sub.as_str()
            .or_else(|| sub[0].as_str())
            .or_else(|| v.as_str())
            .unwrap_or_else(|| panic!("{name} is text or a !Sub"))
            .to_string()
    }
}

/// Every state of a definition, Map item processors included: (name, state).
fn all_states(def: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, s) in def["States"].as_object().expect("States") {
        out.push((name.clone(), s.clone()));
        if s["Type"] == "Map" {
            out.extend(all_states(&s["ItemProcessor"]));
        }
    }
    out
}

/// The string lists written `$extra($i, [...])` / `$members := [...]` in a JSONata text.
fn quoted_lists(text: &str) -> Vec<BTreeSet<String>> {
    let mut lists = Vec::new();
    for (i, _) in text.match_indices("['") {
        let rest = &text[i + 1..];
        let Some(end) = rest.find(']') else { continue };
        let items: BTreeSet<String> = rest[..end]
            .split(',')
            .map(|s| s.trim().trim_matches('\'').to_string())
            .collect();
        if items
            .iter()
            .all(|s| s.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            lists.push(items);
        }
    }
    lists
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Top-level members a text reads from the state input: JSONPath `$.X` and JSONata
/// `$states.input.X`.
fn input_reads(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("$.") {
        if i > 0 && text.as_bytes()[i - 1] == b'$' {
            continue; // $$.Execution...
        }
        let name = ident(&text[i + 2..]);
        if !name.is_empty() {
            out.insert(name);
        }
    }
    for (i, _) in text.match_indices("$states.input.") {
        out.insert(ident(&text[i + "$states.input.".len()..]));
    }
    out
}

fn actions(st: &Value) -> Vec<String> {
    match &st["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// The statements of a role's inline policies and of the RolePolicy resources attached to it:
/// `(condition the statement exists under, statement)`.
fn role_statements(t: &Value, role: &str) -> Vec<(Option<String>, Value)> {
    let resources = t["Resources"].as_object().expect("Resources");
    let mut out = Vec::new();
    let mut push = |cond: Option<String>, doc: &Value| {
        for st in doc["Statement"].as_array().expect("Statement list") {
            match st.get("Fn::If").and_then(Value::as_array) {
                Some(branches) => {
                    let c = branches[0].as_str().expect("condition").to_string();
                    for (c, b) in [(c.clone(), &branches[1]), (format!("!{c}"), &branches[2])] {
                        if b.get("Ref") != Some(&json!("AWS::NoValue")) {
                            out.push((Some(c), b.clone()));
                        }
                    }
                }
                None => out.push((cond.clone(), st.clone())),
            }
        }
    };
    for (name, r) in resources {
        let props = &r["Properties"];
        let cond = r
            .get("Condition")
            .and_then(Value::as_str)
            .map(str::to_string);
        if r["Type"] == "AWS::IAM::RolePolicy" && props["RoleName"] == json!({"Ref": role}) {
            push(cond, &props["PolicyDocument"]);
        } else if name == role {
            for p in props["Policies"].as_array().into_iter().flatten() {
                push(None, &p["PolicyDocument"]);
            }
        }
    }
    out
}

fn trust_requires_source_account(t: &Value, role: &str, service: &str) {
    let trust = &t["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    let trust = trust.as_array().expect("trust statements");
    assert_eq!(trust.len(), 1, "{role}");
    assert_eq!(trust[0]["Principal"], json!({"Service": service}), "{role}");
    assert_eq!(
        trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"],
        json!({"Ref": "AWS::AccountId"}),
        "{role}: the confused-deputy guard"
    );
}

// --- the backup machine's input ---------------------------------------------------------

/// The backup execution members the machine accepts (Validate's allow-list).
fn backup_allow_list(m: &Machine) -> BTreeSet<String> {
    let lists = quoted_lists(&m.sub_text("BackupInputProblems"));
    lists
        .into_iter()
        .filter(|l| l.contains("DeleteAfterDays") && l.contains("ResourceArn"))
        .max_by_key(BTreeSet::len)
        .expect("the backup allow-list in BackupInputProblems")
}

#[test]
fn the_backup_machine_accepts_exactly_the_members_the_daemon_sends() {
    let m = Machine::of("BackupStateMachine");
    let allowed = backup_allow_list(&m);
    let sent = members_of(&full_backup_input().to_json());
    let ignored = set(IGNORED_BACKUP_MEMBERS);
    let sent_without_ignored: BTreeSet<String> = sent.difference(&ignored).cloned().collect();
    let allowed_without_ignored: BTreeSet<String> = allowed.difference(&ignored).cloned().collect();
    assert_eq!(
        sent_without_ignored, allowed_without_ignored,
        "ExecutionInput (left) vs the members Validate accepts (right): a member the machine \
         does not know is refused (InputRefused) at the first slot"
    );
    assert!(
        ignored.is_subset(&allowed),
        "CopyTo from an older daemon must stay accepted (and ignored)"
    );
    // Every member read by a JSONPath or JSONata state is an accepted member or one the machine
    // wrote (ResultPath), in a backup execution or a copy execution.
    let mut written = BTreeSet::new();
    let mut reads = BTreeSet::new();
    for (name, s) in all_states(&m.definition) {
        if let Some(p) = s.get("ResultPath").and_then(Value::as_str) {
            written.insert(ident(p.trim_start_matches("$.")));
        }
        for c in s
            .get("Catch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = c.get("ResultPath").and_then(Value::as_str) {
                written.insert(ident(p.trim_start_matches("$.")));
            }
        }
        if [
            "CheckCopyDestination",
            "CopyRefused",
            "StartCopyJob",
            "CopyNotStarted",
        ]
        .contains(&name.as_str())
        {
            continue; // inside the Map, `$` is the item {Destination, RecoveryPointArn}
        }
        let mut s = s.clone();
        let o = s.as_object_mut().unwrap();
        o.remove("ResultSelector"); // reads the task's result, not `$`
        o.remove("ItemProcessor"); // its states were skipped above
        reads.extend(input_reads(&s.to_string()));
    }
    written.remove("");
    let copy = set(COPY_EXECUTION_MEMBERS);
    let unknown: Vec<_> = reads
        .iter()
        .filter(|r| !allowed.contains(*r) && !copy.contains(*r) && !written.contains(*r))
        .collect();
    assert!(
        unknown.is_empty(),
        "states read members that are neither input members nor written: {unknown:?}"
    );
    assert!(
        !reads.contains("CopyTo") || written.contains("Source"),
        "CopyTo is read by the copy path only"
    );
}

/// NEW contract (design §1): a backup execution's input carries no `CopyTo` (copies are their
/// own execution). Fails until the daemon's ExecutionInput drops the member.
#[test]
fn the_daemon_no_longer_sends_copy_to_in_a_backup_execution() {
    let mut v = serde_json::to_value(full_backup_input()).unwrap();
    v["CopyTo"] = json!([{"DestinationBackupVaultArn": "arn:aws:backup:us-west-2:123456789012:backup-vault:dr",
                         "Lifecycle": {"DeleteAfterDays": 90}, "IdempotencyToken": "copy-0"}]);
    let again: ExecutionInput = serde_json::from_value(v).unwrap();
    assert!(
        !members_of(&again.to_json()).contains("CopyTo"),
        "ExecutionInput still serialises CopyTo: start copies as their own execution \
         (Action copy, name copy-{{BackupJobId}}) instead"
    );
}

/// A target without copies, hooks or VSS sends what it always sent: an execution in flight
/// during an upgrade is found by name and input, not refused.
#[test]
fn the_input_of_a_plain_target_is_unchanged() {
    let plain: ExecutionInput = serde_json::from_value(json!({
        "ResourceArn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
        "Target": "web-1", "ScheduledFor": "2026-11-29T10:00:00Z", "Trigger": "schedule",
        "StartWindowMinutes": 60, "CompleteWindowMinutes": 10080, "DeleteAfterDays": 35}))
    .unwrap();
    assert_eq!(
        plain.to_json(),
        r#"{"ResourceArn":"arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0","Target":"web-1","ScheduledFor":"2026-11-29T10:00:00Z","Trigger":"schedule","StartWindowMinutes":60,"CompleteWindowMinutes":10080,"DeleteAfterDays":35}"#
    );
}

#[test]
fn validate_judges_the_input_first_and_refusals_are_input_refused() {
    for (machine, problems) in [
        ("BackupStateMachine", "BackupInputProblems"),
        ("RestoreStateMachine", "RestoreInputProblems"),
    ] {
        let m = Machine::of(machine);
        assert_eq!(m.definition["StartAt"], "Validate", "{machine}");
        let v = m.state("Validate");
        assert_eq!(
            (v["Type"].as_str(), v["QueryLanguage"].as_str()),
            (Some("Choice"), Some("JSONata"))
        );
        let first = &v["Choices"][0];
        assert_eq!(
            first["Condition"],
            format!("{{% $count(${{{problems}}}) > 0 %}}"),
            "{machine}: the first rule catches every problem"
        );
        let refused = m.state("InputRefused");
        assert_eq!(
            (refused["Type"].as_str(), refused["Error"].as_str()),
            (Some("Fail"), Some("InputRefused"))
        );
        assert_eq!(refused["Cause"], format!("{{% ${{{problems}}}[0] %}}"));
        let text = m.sub_text(problems);
        assert!(
            !text.contains('"') && !text.contains('\\'),
            "{problems}: no quote, no backslash"
        );
        assert!(
            text.contains("'InputRefused: "),
            "{problems}: causes start with InputRefused:"
        );
    }
    let m = Machine::of("BackupStateMachine");
    let text = m.sub_text("BackupInputProblems");
    for must in [
        "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance",
        "$int($i.DeleteAfterDays, ${MinRetentionDays}, ${MaxRetentionDays})",
        "$d.Version = '${HookDocumentVersion}'",
        "'${AllowRawCommands}' != 'true'",
    ] {
        assert!(text.contains(must), "BackupInputProblems checks {must}");
    }
    // The defaults of a hand-started execution: exactly the always-sent members, then judged again.
    let apply = m.state("ApplyDefaults")["Output"]
        .as_str()
        .unwrap()
        .to_string();
    for member in DEFAULTED {
        assert!(
            apply.contains(&format!("'{member}':")),
            "ApplyDefaults fills {member}"
        );
    }
    assert_eq!(m.state("ApplyDefaults")["Next"], "Validate");
    // Every `always` member of ExecutionInput is defaulted (the rest are optional).
    let plain: ExecutionInput = serde_json::from_value(json!({
        "ResourceArn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
        "Target": "t", "ScheduledFor": "2026-11-29T10:00:00Z", "Trigger": "manual",
        "StartWindowMinutes": 60, "CompleteWindowMinutes": 120, "DeleteAfterDays": 35}))
    .unwrap();
    let mut always = members_of(&plain.to_json());
    always.remove("ResourceArn");
    assert_eq!(always, set(DEFAULTED));
}

#[test]
fn the_plain_backup_is_validate_then_start_backup_job() {
    let m = Machine::of("BackupStateMachine");
    let rules = m.state("Validate")["Choices"].as_array().unwrap();
    let nexts: Vec<&str> = rules.iter().map(|r| r["Next"].as_str().unwrap()).collect();
    assert_eq!(
        &nexts[..4],
        [
            "Explain",
            "DescribeCopySource",
            "StartBackupJob",
            "StartVssBackupJob"
        ]
    );
    for end in ["StartBackupJob", "StartVssBackupJob"] {
        assert_eq!(m.state(end)["End"], true, "{end}: 2 transitions");
    }
    assert_eq!(
        m.state("StartVssBackupJob")["Parameters"]["BackupOptions"],
        json!({"WindowsVSS": "enabled"}),
        "a literal, never the input's map"
    );
}

#[test]
fn every_start_backup_job_is_idempotent_by_execution_name_and_its_response_is_the_output() {
    let m = Machine::of("BackupStateMachine");
    let tasks: Vec<_> = m
        .states()
        .iter()
        .filter(|(_, s)| s["Resource"] == START_BACKUP_JOB)
        .collect();
    let names: BTreeSet<&str> = tasks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "StartBackupJob",
            "StartVssBackupJob",
            "StartHookedBackupJob",
            "StartBackupJobThenPost"
        ]),
        "the daemon finds BackupJobId in the TaskSucceeded event of resource startBackupJob"
    );
    for (name, task) in tasks {
        let p = &task["Parameters"];
        assert_eq!(p["BackupVaultName"], "${BackupVaultName}", "{name}");
        assert_eq!(p["IamRoleArn"], "${BackupRoleArn}", "{name}");
        assert_eq!(p["IdempotencyToken.$"], "$$.Execution.Name", "{name}");
        assert_eq!(p["ResourceArn.$"], "$.ResourceArn", "{name}");
        assert_eq!(p["StartWindowMinutes.$"], "$.StartWindowMinutes", "{name}");
        assert_eq!(
            p["CompleteWindowMinutes.$"], "$.CompleteWindowMinutes",
            "{name}"
        );
        assert_eq!(
            p["Lifecycle"]["DeleteAfterDays.$"], "$.DeleteAfterDays",
            "{name}"
        );
        assert!(
            task.get("ResultSelector").is_none(),
            "{name}: keep the whole response"
        );
        for r in task["Retry"].as_array().unwrap() {
            let errors = r["ErrorEquals"].to_string();
            assert!(
                !errors.contains("TaskFailed")
                    && !errors.contains("States.ALL")
                    && !errors.contains("AccessDenied"),
                "{name}: retry only errors that can go away: {errors}"
            );
        }
    }
    // The hooked paths end in Done: the response plus the hook results.
    let done = m.state("Done");
    assert_eq!(
        done["Output"],
        "{% $merge([$states.input.Backup, $states.input.Run, {'AppConsistent': $appConsistent}]) %}"
    );
    assert_eq!(done["End"], true);
}

#[test]
fn the_daemon_reads_hook_phases_from_these_exact_task_names() {
    let m = Machine::of("BackupStateMachine");
    for (phase, names) in [("pre", PRE_TASKS), ("post", POST_TASKS)] {
        for name in names {
            let s = m.state(name);
            assert_eq!(s["Type"], "Task", "{name}");
            let want = if name.starts_with("Send") {
                "sendCommand"
            } else {
                "getCommandInvocation"
            };
            assert_eq!(
                s["Resource"],
                format!("arn:aws:states:::aws-sdk:ssm:{want}"),
                "{name}"
            );
            let comment = s["Parameters"]["Comment.$"].as_str().unwrap_or("");
            assert!(
                !name.starts_with("Send") || comment.contains(&format!("{{}} {phase}")),
                "{name}: the command's comment names its phase"
            );
        }
    }
    let exact: BTreeSet<&str> = PRE_TASKS.iter().chain(POST_TASKS.iter()).copied().collect();
    for name in m.states().keys() {
        let hookish = ["PreHook", "PostHook", "PreCommand", "PostCommand"]
            .iter()
            .any(|s| name.ends_with(s));
        assert!(
            !hookish || exact.contains(name.as_str()),
            "{name}: only the hook tasks end in PreHook/PostHook/PreCommand/PostCommand"
        );
    }
    // The documents sent: from the variables Validate sets, the version the stack's.
    let validate = m.state("Validate").to_string();
    assert!(validate.contains("'DocumentVersion': '${HookDocumentVersion}'"));
    for name in [
        "SendPreHook",
        "SendPreCommand",
        "SendPostHook",
        "SendPostCommand",
    ] {
        let p = &m.state(name)["Parameters"];
        let var = if name.contains("Pre") {
            "$pre"
        } else {
            "$post"
        };
        assert_eq!(p["DocumentName.$"], format!("{var}.DocumentName"), "{name}");
        assert_eq!(
            p["DocumentVersion.$"],
            format!("{var}.DocumentVersion"),
            "{name}"
        );
    }
}

#[test]
fn error_names_the_daemon_reports() {
    let fails = |machine: &str| -> BTreeSet<String> {
        all_states(&Machine::of(machine).definition)
            .into_iter()
            .filter(|(_, s)| s["Type"] == "Fail")
            .map(|(_, s)| s["Error"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        fails("BackupStateMachine"),
        set([
            "InputRefused",
            "PreCommandFailed",
            "PostCommandFailed",
            "StartBackupJobFailed",
            "CopySourceUnavailable"
        ])
    );
    assert_eq!(
        fails("RestoreStateMachine"),
        set([
            "InputRefused",
            "{% $states.input.Action = 'restore' ? 'RestoreFailed' : 'RestoreTestFailed' %}",
            "NotARestoredResource",
            "NotExpired",
            "SweepFailed"
        ])
    );
}

// --- copy executions --------------------------------------------------------------------

#[test]
fn a_copy_execution_has_these_members_and_each_copy_the_daemon_s_token() {
    let m = Machine::of("BackupStateMachine");
    let lists = quoted_lists(&m.sub_text("BackupInputProblems"));
    assert!(
        lists.contains(&set(COPY_EXECUTION_MEMBERS)),
        "the copy execution's allow-list: {lists:?}"
    );
    // What the daemon sends: exactly those members.
    let daemon = CopyExecutionInput::new("copy-J", "J", "web", "arn:i", &[]);
    assert_eq!(
        members_of(&daemon.to_json()),
        set(COPY_EXECUTION_MEMBERS),
        "the daemon's copy execution input"
    );
    // CopyTo elements: what the daemon's CopyToInput serialises.
    let element: CopyToInput = serde_json::from_value(json!({
        "DestinationBackupVaultArn": "arn:aws:backup:us-west-2:123456789012:backup-vault:dr",
        "Lifecycle": {"DeleteAfterDays": 90}, "IdempotencyToken": "copy-0"}))
    .unwrap();
    let sent = members_of(&serde_json::to_string(&element).unwrap());
    let item_lists = quoted_lists(&m.sub_text("CopyItemProblems"));
    assert!(
        item_lists.contains(&sent),
        "CopyTo element members {sent:?} vs {item_lists:?}"
    );
    assert!(
        m.sub_text("CopyItemProblems")
            .contains("${MinRetentionDays}, ${MaxRetentionDays}")
    );

    // Validate -> DescribeCopySource -> CheckCopySource -> StartCopies, no Wait on the way.
    assert_eq!(
        m.state("DescribeCopySource")["Resource"],
        "arn:aws:states:::aws-sdk:backup:describeBackupJob"
    );
    assert_eq!(m.state("DescribeCopySource")["Next"], "CheckCopySource");
    let check = m.state("CheckCopySource")["Choices"][0].clone();
    assert_eq!(check["Next"], "StartCopies");
    for must in [
        "'COMPLETED'",
        "'${BackupVaultName}'",
        "$states.input.Source.ResourceArn = $states.input.ResourceArn",
    ] {
        assert!(
            check["Condition"].as_str().unwrap().contains(must),
            "CheckCopySource: {must}"
        );
    }
    let map = m.state("StartCopies");
    assert_eq!(map["ItemsPath"], "$.CopyTo");
    assert_eq!(
        map["ResultSelector"],
        json!({"Copies.$": "$"}),
        "output {{\"Copies\": [...]}}"
    );
    let items = &map["ItemProcessor"]["States"];
    assert_eq!(map["ItemProcessor"]["StartAt"], "CheckCopyDestination");
    let task = &items["StartCopyJob"];
    assert_eq!(
        task["Resource"],
        "arn:aws:states:::aws-sdk:backup:startCopyJob"
    );
    assert_eq!(
        task["Arguments"]["IdempotencyToken"], "{% $states.input.Destination.IdempotencyToken %}",
        "the daemon's token, never one made in the machine"
    );
    assert_eq!(
        task["Arguments"]["SourceBackupVaultName"],
        "${BackupVaultName}"
    );
    let retried = task["Retry"].to_string();
    assert!(
        !retried.contains("TaskFailed") && !retried.contains("AccessDenied"),
        "{retried}"
    );
    let waits: Vec<String> = all_states(&m.definition)
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Wait")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        set(waits.iter().map(String::as_str)),
        set([
            "PreHookWait",
            "PreCommandWait",
            "WaitForJob",
            "PostHookWait",
            "PostCommandWait"
        ]),
        "waits serve hooks only"
    );
}

// --- the restore machine ---------------------------------------------------------------

#[test]
fn the_restore_machine_accepts_exactly_the_members_the_daemon_sends() {
    use backup_orchestrator::model::{Pick, RestorePlacement, RestoreTest, ValidateDocument};
    use backup_orchestrator::restore::{self, RecoveryPoint, Resolved};
    let point = RecoveryPoint {
        arn: "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0".into(),
        vault_name: "orchestrator".into(),
        resource_arn: EC2.into(),
        status: "COMPLETED".into(),
        created: chrono::Utc::now(),
    };
    let place = Resolved {
        instance_type: "t3.micro".into(),
        subnet_id: "subnet-0123456789abcdef0".into(),
        security_group_ids: vec!["sg-0123456789abcdef0".into()],
        keep_instance_profile: true,
    };
    let test = RestoreTest {
        schedule: std::sync::Arc::new(
            backup_orchestrator::schedule::Schedule::parse("0 4 * * 0", chrono_tz::Tz::UTC)
                .unwrap(),
        ),
        pick: Pick::Latest,
        within_days: 7,
        max_restore_minutes: 60,
        keep_minutes: 30,
        validate_document: Some(ValidateDocument {
            name: "orchestrator-validate".into(),
            parameters: [("command".to_string(), "true".to_string())].into(),
        }),
        placement: RestorePlacement::default(),
        enabled: true,
    };
    let now = chrono::Utc::now();
    let full = restore::test_input("web", EC2, &point, &place, &test, now).to_json();
    assert_eq!(members_of(&full), set(RESTORE_MEMBERS), "a full test input");
    let on_demand = restore::restore_input("web", EC2, &point, &place, 3600, now).to_json();
    assert!(members_of(&on_demand).is_subset(&set(RESTORE_MEMBERS)));
    assert!(!members_of(&on_demand).contains("KeepSeconds"));
    assert!(!members_of(&on_demand).contains("ValidateDocument"));
    let v: Value = serde_json::from_str(&full).unwrap();
    assert_eq!(
        members_of(&v["ValidateDocument"].to_string()),
        set(["Name", "Parameters"])
    );
    let m = Machine::of("RestoreStateMachine");
    let lists = quoted_lists(&m.sub_text("RestoreInputProblems"));
    assert!(lists.contains(&set(RESTORE_MEMBERS)), "{lists:?}");
}

#[test]
#[allow(clippy::too_many_lines)] // one contract, member by member, read top to bottom
fn the_restore_machine_s_inputs_and_what_it_restores() {
    let m = Machine::of("RestoreStateMachine");
    let lists = quoted_lists(&m.sub_text("RestoreInputProblems"));
    assert!(lists.contains(&set(RESTORE_MEMBERS)), "{lists:?}");
    assert!(lists.contains(&set(SWEEP_MEMBERS)), "{lists:?}");
    let text = m.sub_text("RestoreInputProblems");
    assert!(text.contains("'${AllowInstanceProfileRestore}' != 'true'"));
    assert!(text.contains("'arn:${AWS::Partition}:ec2:${AWS::Region}::image'"));

    // The recovery point is looked up in the stack's vault before anything else.
    assert_eq!(
        m.state("DescribeRecoveryPoint")["Parameters"]["BackupVaultName"],
        "${BackupVaultName}"
    );
    let start = m.state("StartRestoreJob");
    assert_eq!(
        start["Resource"], START_RESTORE_JOB,
        "the daemon reads RestoreJobId from its TaskSucceeded"
    );
    let a = &start["Arguments"];
    assert_eq!(
        a["IdempotencyToken"],
        "{% $states.context.Execution.Name %}"
    );
    assert_eq!(a["IamRoleArn"], "${RestoreRoleArn}");
    assert_eq!(a["ResourceType"], "EC2");
    assert_eq!(a["CopySourceTagsToRestoredResource"], false);
    assert_eq!(a["Metadata"], "{% ${RestoreMetadata} %}");
    let metadata = m.sub_text("RestoreMetadata");
    let keys: BTreeSet<String> = metadata
        .match_indices("{'")
        .chain(metadata.match_indices(", '"))
        .filter_map(|(i, _)| {
            let rest = &metadata[i..];
            let start = rest.find('\'')? + 1;
            let end = start + rest[start..].find('\'')?;
            rest[end..]
                .starts_with("':")
                .then(|| rest[start..end].to_string())
        })
        .collect();
    assert_eq!(
        keys,
        set([
            "InstanceType",
            "SubnetId",
            "SecurityGroupIds",
            "IamInstanceProfileName",
            "RequireIMDSv2",
            "DisableApiTermination",
            "BlockDeviceMappings",
            "Ebs",
            "DeleteOnTermination"
        ]),
        "metadata from an allow-list"
    );
    for never in ["UserData", "KeyName", "NetworkInterfaces", "Placement"] {
        assert!(
            !metadata.contains(never),
            "{never} never reaches StartRestoreJob"
        );
    }
    assert!(metadata.contains(
        "$keep and $type($o.IamInstanceProfileName) = 'string' ? $o.IamInstanceProfileName : ''"
    ));

    // Terminations: the restored instance (from the restore job) or a swept one after its checks.
    for (name, from) in [
        ("TerminateRestored", "$.RestoreJob.CreatedResourceArn"),
        ("TerminateExpired", "$.ResourceArn"),
    ] {
        let s = m.state(name);
        assert_eq!(
            s["Resource"],
            "arn:aws:states:::aws-sdk:ec2:terminateInstances"
        );
        assert!(
            s["Parameters"]["InstanceIds.$"]
                .as_str()
                .unwrap()
                .contains(from),
            "{name}"
        );
    }
    let predecessors: Vec<String> = all_states(&m.definition)
        .into_iter()
        .filter(|(_, s)| s.to_string().contains("\"Next\":\"TerminateExpired\""))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        predecessors,
        ["DescribeSweptRecoveryPoint"],
        "the sweep terminates only after every check"
    );
    let sweep = m.state("CheckSweep").to_string();
    for tag in [
        "orchestrator:restore-test",
        "orchestrator:restore-expires",
        "$states.context.Execution.StartTime",
    ] {
        assert!(sweep.contains(tag), "CheckSweep reads {tag}");
    }
    // Tags: the test's, the on-demand restore's.
    let tags = |name: &str| -> Vec<String> {
        m.state(name)["Parameters"]["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["Key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        tags("TagRestored"),
        [
            "orchestrator:restore-test",
            "orchestrator:restore-expires",
            "orchestrator:target"
        ]
    );
    assert_eq!(
        tags("TagOnDemandRestore"),
        ["orchestrator:restore", "orchestrator:target"]
    );
    // Validation results are best effort.
    let report = m.state("ReportValidation");
    assert_eq!(
        report["Resource"],
        "arn:aws:states:::aws-sdk:backup:putRestoreValidationResult"
    );
    assert_eq!(report["Catch"][0]["ErrorEquals"], json!(["States.ALL"]));
}

// --- IAM and the vaults ------------------------------------------------------------------

#[test]
fn the_vault_is_locked_and_denies_deletion_to_all_but_the_break_glass_role() {
    let t = template_json();
    let vault = &t["Resources"]["BackupVault"]["Properties"];
    let lock = &vault["LockConfiguration"];
    assert_eq!(lock["MinRetentionDays"], json!({"Ref": "MinRetentionDays"}));
    assert_eq!(lock["MaxRetentionDays"], json!({"Ref": "MaxRetentionDays"}));
    assert_eq!(
        lock["ChangeableForDays"],
        json!({"Fn::If": ["ComplianceLock", {"Ref": "VaultLockChangeableForDays"}, {"Ref": "AWS::NoValue"}]}),
        "governance by default; compliance only when asked"
    );
    assert_eq!(t["Parameters"]["VaultLockMode"]["Default"], "governance");
    assert_eq!(t["Parameters"]["BreakGlassPrincipalArn"]["Default"], "");
    let statements = vault["AccessPolicy"]["Statement"].as_array().unwrap();
    let deny_for = |sid: &str| -> &Value {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid}"))
    };
    for (sid, acts) in [
        (
            "DenyDeletingOrShorteningRecoveryPoints",
            vec![
                "backup:DeleteRecoveryPoint",
                "backup:UpdateRecoveryPointLifecycle",
                "backup:DisassociateRecoveryPoint",
            ],
        ),
        (
            "DenyChangingThisPolicyOrTheLock",
            vec![
                "backup:PutBackupVaultAccessPolicy",
                "backup:DeleteBackupVaultAccessPolicy",
                "backup:DeleteBackupVaultLockConfiguration",
                "backup:DeleteBackupVault",
            ],
        ),
    ] {
        let st = deny_for(sid);
        assert_eq!(
            (st["Effect"].as_str(), st["Principal"].as_str()),
            (Some("Deny"), Some("*")),
            "{sid}"
        );
        assert_eq!(actions(st), acts, "{sid}");
        assert_eq!(
            st["Condition"],
            json!({"Fn::If": ["HasBreakGlass",
                {"ArnNotEquals": {"aws:PrincipalArn": {"Ref": "BreakGlassPrincipalArn"}}},
                {"Ref": "AWS::NoValue"}]}),
            "{sid}: everyone but the break-glass role (nobody without one)"
        );
    }
    // Copies only to the listed vaults, where AWS evaluates it: CopyFromBackupVault on the source.
    let copy = statements
        .iter()
        .find_map(|s| s.get("Fn::If"))
        .expect("the copy deny switch");
    assert_eq!(copy[0], "CopiesAllowed");
    assert_eq!(copy[1]["Action"], "backup:CopyFromBackupVault");
    assert_eq!(copy[1]["Effect"], "Deny");
    let cond = &copy[1]["Condition"]["Fn::If"];
    for branch in [&cond[1], &cond[2]] {
        assert_eq!(
            branch["ForAnyValue:ArnNotLike"]["backup:CopyTargets"],
            json!({"Ref": "CopyDestinationVaultArns"})
        );
    }
    assert_eq!(
        copy[2]["Action"], "backup:CopyFromBackupVault",
        "no destinations: no copies"
    );
    // The DR vault: locked and protected the same way.
    let dr: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../deploy/cloudformation/dr-vault.yaml")).unwrap();
    let dr_props = &dr["Resources"]["DrVault"]["Properties"];
    for key in ["MinRetentionDays", "MaxRetentionDays", "ChangeableForDays"] {
        assert!(
            !dr_props["LockConfiguration"][key].is_null(),
            "DR vault lock: {key}"
        );
    }
    let dr_sids: Vec<&str> = dr_props["AccessPolicy"]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    assert_eq!(
        dr_sids,
        [
            "AllowCopyIntoFromTheSourceAccounts",
            "DenyDeletingOrShorteningRecoveryPoints",
            "DenyChangingThisPolicyOrTheLock"
        ]
    );
}

#[test]
fn aws_backup_works_with_ec2_only_roles_of_our_own_trusted_for_this_account() {
    let t = template_json();
    for role in ["BackupRole", "RestoreRole"] {
        trust_requires_source_account(&t, role, "backup.amazonaws.com");
        let props = &t["Resources"][role]["Properties"];
        assert!(
            props.get("ManagedPolicyArns").is_none(),
            "{role}: no AWS managed (all-services) policy"
        );
        for (cond, st) in role_statements(&t, role) {
            assert_eq!(st["Effect"], "Allow", "{role}");
            for a in actions(&st) {
                let ok = a.starts_with("ec2:")
                    || a.starts_with("kms:")
                    || a.starts_with("ssm:")
                    || a == "backup:DescribeBackupVault"
                    || a == "backup:CopyIntoBackupVault"
                    || (a == "iam:PassRole"
                        && cond.as_deref() == Some("InstanceProfileRestoreAllowed"));
                assert!(ok && !a.ends_with('*'), "{role}: {a} ({cond:?})");
            }
        }
    }
    for role in [
        "StateMachineRole",
        "RestoreStateMachineRole",
        "OrchestratorRole",
    ] {
        let service = if role == "OrchestratorRole" {
            "ecs-tasks.amazonaws.com"
        } else {
            "states.amazonaws.com"
        };
        trust_requires_source_account(&t, role, service);
    }
    // The backup role cannot touch another service's resources.
    let backup: Vec<String> = role_statements(&t, "BackupRole")
        .iter()
        .flat_map(|(_, st)| actions(st))
        .collect();
    for other in [
        "rds:",
        "dynamodb:",
        "elasticfilesystem:",
        "fsx:",
        "redshift:",
        "s3:",
    ] {
        assert!(backup.iter().all(|a| !a.starts_with(other)), "{other}");
    }
    assert!(backup.contains(&"ec2:CreateImage".to_string()));
}

#[test]
fn the_restore_machine_terminates_and_tags_only_what_it_may() {
    let t = template_json();
    let statements = role_statements(&t, "RestoreStateMachineRole");
    let find = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .filter(|(_, st)| actions(st).iter().any(|a| a == action))
            .map(|(_, st)| st)
            .collect()
    };
    let terminate = find("ec2:TerminateInstances");
    assert_eq!(terminate.len(), 1);
    assert_eq!(
        terminate[0]["Condition"],
        json!({"Null": {"aws:ResourceTag/orchestrator:restore-test": "false"}}),
        "only instances carrying the restore-test tag"
    );
    let tags = find("ec2:CreateTags");
    assert_eq!(tags.len(), 1);
    assert_eq!(
        tags[0]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        json!([
            "orchestrator:restore-test",
            "orchestrator:restore-expires",
            "orchestrator:restore",
            "orchestrator:target"
        ]),
        "never OrchestratorHooks or a selection's tag"
    );
    let pass = find("iam:PassRole");
    assert_eq!(pass.len(), 1);
    assert_eq!(
        pass[0]["Resource"],
        json!({"Fn::GetAtt": "RestoreRole.Arn"})
    );
    assert_eq!(
        pass[0]["Condition"]["StringEquals"]["iam:PassedToService"],
        "backup.amazonaws.com"
    );
    let sends = find("ssm:SendCommand");
    assert_eq!(sends.len(), 2);
    assert!(
        sends.iter().any(
            |st| st["Condition"]["Null"]["ssm:resourceTag/orchestrator:restore-test"] == "false"
        )
    );
    for (_, st) in &statements {
        assert!(
            actions(st)
                .iter()
                .all(|a| a != "ec2:RunInstances" && !a.ends_with('*')),
            "{st}"
        );
    }
}

#[test]
fn the_daemon_only_reads_and_starts_executions() {
    let t = template_json();
    let daemon = &t["Resources"]["OrchestratorPolicy"]["Properties"]["PolicyDocument"];
    let all: BTreeSet<String> = daemon["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(actions)
        .collect();
    assert_eq!(
        all,
        set([
            "states:StartExecution",
            "states:ListExecutions",
            "states:DescribeExecution",
            "states:GetExecutionHistory",
            "backup:DescribeBackupJob",
            "backup:ListBackupJobs",
            "backup:DescribeCopyJob",
            "backup:ListCopyJobs",
            "backup:ListRecoveryPointsByResource",
            "backup:ListRecoveryPointsByBackupVault",
            "backup:GetRecoveryPointRestoreMetadata",
            "backup:DescribeRestoreJob",
            "backup:ListRestoreJobs",
            "tag:GetResources",
        ])
    );
    let start = daemon["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| actions(s).contains(&"states:StartExecution".to_string()))
        .unwrap();
    assert_eq!(
        start["Resource"],
        json!([{"Ref": "BackupStateMachine"}, {"Ref": "RestoreStateMachine"}])
    );
}

#[test]
fn send_command_reaches_only_prefixed_documents_and_tagged_instances() {
    let t = template_json();
    let params = &t["Parameters"];
    assert_eq!(params["RequireHookTag"]["Default"], "true");
    assert_eq!(params["AllowRawCommands"]["Default"], "false");
    assert_eq!(params["HookDocumentVersion"]["Default"], "$DEFAULT");
    let sends: Vec<(Option<String>, Value)> = role_statements(&t, "StateMachineRole")
        .into_iter()
        .filter(|(_, st)| {
            actions(st)
                .iter()
                .any(|a| a == "ssm:SendCommand" || a == "ssm:*" || a == "*")
        })
        .collect();
    let (mut documents, mut instances) = (0, 0);
    for (cond, st) in &sends {
        assert_eq!(actions(st), ["ssm:SendCommand"]);
        let r = &st["Resource"]["Fn::Sub"];
        let text = r.as_str().or_else(|| r[0].as_str()).unwrap();
        if text.ends_with("document/AWS-RunShellScript") {
            assert_eq!(
                cond.as_deref(),
                Some("RawCommandsAllowed"),
                "raw shell only when opted in"
            );
        } else if text.contains(":document/") {
            assert_eq!(
                text,
                "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${Prefix}*"
            );
            documents += 1;
        } else {
            assert_eq!(
                text,
                "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
            );
            match cond.as_deref() {
                Some("HookTagRequired") => {
                    assert_eq!(
                        st["Condition"]["StringEquals"]["ssm:resourceTag/OrchestratorHooks"],
                        "enabled"
                    )
                }
                Some("!HookTagRequired") => assert!(st.get("Condition").is_none()),
                other => {
                    panic!("an instance statement outside the RequireHookTag switch ({other:?})")
                }
            }
            instances += 1;
        }
    }
    assert_eq!((documents, instances), (1, 2));
    // The example document: the stack's allow-list of units.
    let p = &t["Resources"]["SystemdUnitDocument"]["Properties"]["Content"]["parameters"];
    assert_eq!(p["action"]["allowedValues"], json!(["stop", "start"]));
    assert_eq!(p["unit"]["allowedValues"], json!({"Ref": "SystemdUnits"}));
}

#[test]
fn graphs_are_closed_and_substitutions_match() {
    for machine in ["BackupStateMachine", "RestoreStateMachine"] {
        let m = Machine::of(machine);
        fn check(def: &Value, at: &str) {
            let st = def["States"].as_object().unwrap();
            let start = def["StartAt"].as_str().unwrap();
            let mut seen = BTreeSet::from([start.to_string()]);
            let mut todo = vec![start.to_string()];
            while let Some(n) = todo.pop() {
                let s = st.get(&n).unwrap_or_else(|| panic!("{at}: no state {n}"));
                let mut next: Vec<String> = ["Next", "Default"]
                    .iter()
                    .filter_map(|k| s.get(*k).and_then(Value::as_str).map(str::to_string))
                    .collect();
                for list in ["Choices", "Catch"] {
                    for c in s.get(list).and_then(Value::as_array).into_iter().flatten() {
                        next.push(c["Next"].as_str().unwrap().to_string());
                    }
                }
                for t in next {
                    if seen.insert(t.clone()) {
                        todo.push(t);
                    }
                }
                if s["Type"] == "Map" {
                    check(&s["ItemProcessor"], &format!("{at}.{n}"));
                }
            }
            let all: BTreeSet<String> = st.keys().cloned().collect();
            assert_eq!(seen, all, "{at}: unreachable states");
        }
        check(&m.definition, machine);
        let text = m.definition.to_string();
        let used: BTreeSet<String> = text
            .split("${")
            .skip(1)
            .map(|s| s.split('}').next().unwrap().to_string())
            .collect();
        let defined: BTreeSet<String> = m.substitutions.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            used, defined,
            "{machine}: placeholders vs DefinitionSubstitutions"
        );
        // Numbers from stack parameters go through JSONata text or StringToJson, never as text
        // where the ASL wants a number.
        for (name, s) in all_states(&m.definition) {
            for key in ["Seconds", "IntervalSeconds", "MaxAttempts", "BackoffRate"] {
                if let Some(v) = s.get(key) {
                    assert!(v.is_number(), "{machine}.{name}.{key} = {v}");
                }
            }
            for r in s
                .get("Retry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for key in ["IntervalSeconds", "MaxAttempts", "BackoffRate"] {
                    assert!(r[key].is_number(), "{machine}.{name}.Retry.{key}");
                }
            }
        }
    }
}

#[test]
fn scanners_read_lists_and_paths() {
    assert_eq!(
        quoted_lists("$extra($i, ['Action', 'ResourceArn']) ... ['a b']"),
        vec![set(["Action", "ResourceArn"])]
    );
    assert_eq!(
        input_reads("States.Format('{}', $.A.B, $$.Execution.Name) & $states.input.C_1.x"),
        set(["A", "C_1"])
    );
}
