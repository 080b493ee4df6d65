//! Hooks around a backup: the SSM documents (or raw commands) the state machine runs before and
//! after the backup job, their timing settings, and what an execution's history says about them.
//!
//! Pure: the config validates documents with [`check_document`]; the launcher puts
//! [`DocumentInput`] into the execution input; the tracker reads the closed execution's history
//! with [`read_history`] and logs one `hook_finished` line per phase plus the downtime.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::HistoryEvent;

/// The longest SSM document name (SSM's own limit; the pattern is `[a-zA-Z0-9_\-.]{3,128}`).
pub const MAX_DOCUMENT_NAME_LEN: usize = 128;
/// The most parameters one hook document may get from the config.
pub const MAX_PARAMETERS: usize = 20;
/// The longest parameter name (the state machine refuses longer ones).
pub const MAX_PARAMETER_NAME_LEN: usize = 64;
/// The longest parameter value the daemon sends (the machine bounds the whole hook input too).
pub const MAX_PARAMETER_VALUE_LEN: usize = 1024;
/// Default of `hook_max_downtime`.
pub const DEFAULT_MAX_DOWNTIME: Duration = Duration::from_secs(15 * 60);
/// The longest `hook_max_downtime`: the machine's 10-second start polls (about 14 history
/// events a round) must stay far below an execution's 25,000 events.
pub const MAX_MAX_DOWNTIME: Duration = Duration::from_secs(4 * 3600);
/// The smallest `hook_max_downtime`: one start poll of the machine.
pub const MIN_MAX_DOWNTIME: Duration = Duration::from_secs(10);

/// When the post hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PostHookWhen {
    /// As soon as the job has left CREATED (RUNNING or any end state), as DLM does.
    #[default]
    Started,
    /// After the job has ended (for applications that need the whole job).
    Completed,
}

/// What a failed pre hook means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnPreHookFailure {
    /// Back up anyway, crash-consistent (DLM's default); the post hook runs.
    #[default]
    Backup,
    /// No backup; the post hook still runs, then the execution fails `PreCommandFailed`.
    Skip,
}

/// An SSM document a target runs as a hook, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The document name (the stack only lets its role send names with its prefix).
    pub name: String,
    /// `$DEFAULT`, `$LATEST` or a version number; `None` is `$DEFAULT`.
    pub version: Option<String>,
    /// Document parameters, one string each.
    pub parameters: BTreeMap<String, String>,
}

/// A document hook as the execution input carries it: SendCommand's own shapes, so that the
/// machine passes `Parameters` through unchanged (each value a one-string list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentInput {
    /// SendCommand `DocumentName`.
    pub name: String,
    /// SendCommand `DocumentVersion`.
    pub version: String,
    /// SendCommand `Parameters`.
    pub parameters: BTreeMap<String, Vec<String>>,
}

impl From<&Document> for DocumentInput {
    fn from(d: &Document) -> Self {
        DocumentInput {
            name: d.name.clone(),
            version: d.version.clone().unwrap_or_else(|| "$DEFAULT".to_string()),
            parameters: d
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
        }
    }
}

/// What is wrong with a document's name, version or parameters (`Err((field, message))`, the
/// field relative to the document: `name`, `version`, `parameters.KEY`).
pub fn check_document(d: &Document) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let name_ok = (3..=MAX_DOCUMENT_NAME_LEN).contains(&d.name.len())
        && d.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        problems.push((
            "name".to_string(),
            format!(
                "`{}`: an SSM document name is 3-{MAX_DOCUMENT_NAME_LEN} of A-Z a-z 0-9 _ - . \
                 (no ARN: the stack only lets its role send documents named with its prefix)",
                d.name
            ),
        ));
    }
    if let Some(v) = &d.version {
        let numeric = !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) && !v.starts_with('0');
        if !(numeric || v == "$DEFAULT" || v == "$LATEST") {
            problems.push((
                "version".to_string(),
                format!("`{v}`: expected $DEFAULT, $LATEST or a version number like \"3\""),
            ));
        }
    }
    if d.parameters.len() > MAX_PARAMETERS {
        problems.push((
            "parameters".to_string(),
            format!(
                "{} parameters; at most {MAX_PARAMETERS}",
                d.parameters.len()
            ),
        ));
    }
    for (k, v) in &d.parameters {
        if k.is_empty()
            || k.len() > MAX_PARAMETER_NAME_LEN
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            problems.push((
                format!("parameters.{k}"),
                format!("a parameter name is 1-{MAX_PARAMETER_NAME_LEN} of A-Z a-z 0-9 _"),
            ));
        }
        if v.chars().count() > MAX_PARAMETER_VALUE_LEN {
            problems.push((
                format!("parameters.{k}"),
                format!("longer than {MAX_PARAMETER_VALUE_LEN} characters"),
            ));
        }
    }
    problems
}

/// Which hook a history event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the backup job.
    Pre,
    /// After it.
    Post,
}

impl Phase {
    /// `pre` or `post`, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }

    /// The phase of a task state of the template's machine, by its exact name (pinned by
    /// `tests/deploy_contract.rs`): any other state, Choice and Pass states whose names merely
    /// end alike included, belongs to no phase.
    fn of_state(state: &str) -> Option<Self> {
        match state {
            "SendPreHook" | "GetPreHook" | "SendPreCommand" | "GetPreCommand" => Some(Phase::Pre),
            "SendPostHook" | "GetPostHook" | "SendPostCommand" | "GetPostCommand" => {
                Some(Phase::Post)
            }
            _ => None,
        }
    }
}

/// The task states of a hook phase, as the template names them (pre phase first).
pub const HOOK_TASK_STATES: [&str; 8] = [
    "SendPreHook",
    "GetPreHook",
    "SendPreCommand",
    "GetPreCommand",
    "SendPostHook",
    "GetPostHook",
    "SendPostCommand",
    "GetPostCommand",
];

/// One hook's run, as the execution's history tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRun {
    /// Pre or post.
    pub phase: Phase,
    /// SSM's final invocation status (`Success`, `Failed`, `TimedOut`, ...), or the error name
    /// when the command could not be sent or followed.
    pub status: String,
    /// The SSM command id, once sent.
    pub command_id: Option<String>,
    /// When SendCommand was scheduled.
    pub started: DateTime<Utc>,
    /// The last event of the phase.
    pub ended: DateTime<Utc>,
}

impl HookRun {
    /// From SendCommand to the final status.
    pub fn duration(&self) -> Duration {
        (self.ended - self.started).to_std().unwrap_or_default()
    }

    /// True when SSM reported `Success`.
    pub fn succeeded(&self) -> bool {
        self.status == "Success"
    }
}

/// What the history of a hook execution says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HookReport {
    /// The pre hook, if it ran.
    pub pre: Option<HookRun>,
    /// The post hook, if it ran.
    pub post: Option<HookRun>,
    /// The job state the machine saw last before it sent the post hook.
    pub job_state_at_post: Option<String>,
}

impl HookReport {
    /// True when the post hook ran before the job had started (the downtime cap, or the job
    /// could not be followed): the backup goes on crash-consistent.
    pub fn post_before_job_started(&self) -> bool {
        self.post.is_some()
            && self
                .job_state_at_post
                .as_deref()
                .is_none_or(|s| matches!(s, "CREATED" | "PENDING"))
            && self.pre.as_ref().is_some_and(HookRun::succeeded)
    }

    /// The application's downtime: pre hook start to post hook end (both must have run).
    pub fn downtime(&self) -> Option<Duration> {
        let (pre, post) = (self.pre.as_ref()?, self.post.as_ref()?);
        (post.ended - pre.started).to_std().ok()
    }
}

/// Reads the hook phases from an execution's events (oldest first). States are the template's
/// task states of [`HOOK_TASK_STATES`]; every other state (Choice, Wait, Pass) ends a phase.
pub fn read_history(events: &[HistoryEvent]) -> HookReport {
    let mut report = HookReport::default();
    let mut phase: Option<Phase> = None;
    for ev in events {
        if ev.kind == "TaskSucceeded"
            && ev.resource.as_deref() == Some("describeBackupJob")
            && report.post.is_none()
        {
            report.job_state_at_post = parse(ev.output.as_deref())["State"]
                .as_str()
                .map(str::to_string);
        }
        if ev.kind.ends_with("StateEntered") {
            phase = ev.state_name.as_deref().and_then(Phase::of_state);
            continue;
        }
        let (Some(p), Some(at)) = (phase, ev.timestamp) else {
            continue;
        };
        let slot = match p {
            Phase::Pre => &mut report.pre,
            Phase::Post => &mut report.post,
        };
        let run = slot.get_or_insert_with(|| HookRun {
            phase: p,
            status: "NotSent".to_string(),
            command_id: None,
            started: at,
            ended: at,
        });
        run.ended = at;
        match (ev.kind.as_str(), ev.resource.as_deref()) {
            ("TaskSucceeded", Some("sendCommand")) => {
                let v = parse(ev.output.as_deref());
                run.command_id = v["Command"]["CommandId"].as_str().map(str::to_string);
                run.status = "Pending".to_string();
            }
            ("TaskSucceeded", Some("getCommandInvocation")) => {
                let v = parse(ev.output.as_deref());
                if let Some(s) = v["Status"].as_str() {
                    run.status = s.to_string();
                }
            }
            ("TaskFailed", _) => {
                run.status = ev.error.clone().unwrap_or_else(|| "TaskFailed".to_string());
            }
            _ => {}
        }
    }
    report
}

fn parse(text: Option<&str>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn doc(name: &str) -> Document {
        Document {
            name: name.into(),
            version: None,
            parameters: BTreeMap::from([("unit".to_string(), "postgresql".to_string())]),
        }
    }

    #[test]
    fn documents_are_checked() {
        assert!(check_document(&doc("orchestrator-systemd-unit")).is_empty());
        let arn = check_document(&doc("arn:aws:ssm:us-east-1::document/AWS-RunShellScript"));
        assert_eq!(arn[0].0, "name");
        let mut d = doc("ok-doc");
        d.version = Some("03".into());
        d.parameters
            .insert("bad key".into(), "x".repeat(MAX_PARAMETER_VALUE_LEN + 1));
        let fields: Vec<String> = check_document(&d).into_iter().map(|p| p.0).collect();
        assert_eq!(
            fields,
            ["version", "parameters.bad key", "parameters.bad key"]
        );
        d.version = Some("$LATEST".into());
        d.parameters.clear();
        assert!(check_document(&d).is_empty());
    }

    #[test]
    fn the_input_carries_send_command_shapes() {
        let v =
            serde_json::to_value(DocumentInput::from(&doc("orchestrator-systemd-unit"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Name": "orchestrator-systemd-unit", "Version": "$DEFAULT",
                               "Parameters": {"unit": ["postgresql"]}})
        );
    }

    fn at(s: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap())
    }

    fn ev(
        kind: &str,
        t: i64,
        state: Option<&str>,
        resource: Option<&str>,
        output: Option<&str>,
    ) -> HistoryEvent {
        HistoryEvent {
            kind: kind.into(),
            resource: resource.map(Into::into),
            output: output.map(Into::into),
            timestamp: at(t),
            state_name: state.map(Into::into),
            error: None,
        }
    }

    #[test]
    fn history_gives_each_phase_and_the_downtime() {
        let sent = r#"{"Command":{"CommandId":"c-pre"}}"#;
        let events = vec![
            ev("ExecutionStarted", 0, None, None, None),
            ev("TaskStateEntered", 0, Some("SendPreHook"), None, None),
            ev("TaskScheduled", 1, None, Some("sendCommand"), None),
            ev("TaskSucceeded", 1, None, Some("sendCommand"), Some(sent)),
            ev("TaskStateEntered", 11, Some("GetPreHook"), None, None),
            ev(
                "TaskSucceeded",
                12,
                None,
                Some("getCommandInvocation"),
                Some(r#"{"Status":"Success"}"#),
            ),
            ev("TaskStateEntered", 12, Some("StartBackupJob"), None, None),
            ev(
                "TaskSucceeded",
                13,
                None,
                Some("startBackupJob"),
                Some("{}"),
            ),
            ev("TaskStateEntered", 40, Some("SendPostHook"), None, None),
            ev("TaskScheduled", 40, None, Some("sendCommand"), None),
            ev(
                "TaskSucceeded",
                41,
                None,
                Some("sendCommand"),
                Some(r#"{"Command":{"CommandId":"c-post"}}"#),
            ),
            ev("TaskStateEntered", 51, Some("GetPostHook"), None, None),
            ev(
                "TaskSucceeded",
                52,
                None,
                Some("getCommandInvocation"),
                Some(r#"{"Status":"Failed"}"#),
            ),
            ev("ExecutionFailed", 52, None, None, None),
        ];
        let r = read_history(&events);
        let pre = r.pre.as_ref().unwrap();
        assert_eq!(
            (pre.status.as_str(), pre.command_id.as_deref()),
            ("Success", Some("c-pre"))
        );
        assert_eq!(pre.duration(), Duration::from_secs(11));
        let post = r.post.as_ref().unwrap();
        assert_eq!(
            (post.status.as_str(), post.command_id.as_deref()),
            ("Failed", Some("c-post"))
        );
        assert!(!post.succeeded());
        assert_eq!(r.downtime(), Some(Duration::from_secs(51)));
        assert_eq!(r.job_state_at_post, None);
        assert!(
            r.post_before_job_started(),
            "no job state seen: not known to have started"
        );
        let mut seen = events.clone();
        seen.insert(
            8,
            ev(
                "TaskSucceeded",
                39,
                None,
                Some("describeBackupJob"),
                Some(r#"{"State":"RUNNING"}"#),
            ),
        );
        let r = read_history(&seen);
        assert_eq!(r.job_state_at_post.as_deref(), Some("RUNNING"));
        assert!(!r.post_before_job_started());
    }

    /// One round of the template's machine with a pre and a post hook, every state as Step
    /// Functions emits it: Choice, Wait and Pass states between the tasks, and Choice states whose
    /// names end like a hook's (`PickPostHook`, `HasPostHook`) entered before the pre hook.
    #[test]
    fn choice_and_pass_states_belong_to_no_phase() {
        let entered = |t, state: &str, kind: &str| ev(kind, t, Some(state), None, None);
        let task = |t, resource: &str, output: &str| {
            ev("TaskSucceeded", t, None, Some(resource), Some(output))
        };
        let events = vec![
            ev("ExecutionStarted", 0, None, None, None),
            entered(0, "Validate", "ChoiceStateEntered"),
            entered(0, "PickPostHook", "ChoiceStateEntered"),
            entered(0, "HasPostHook", "ChoiceStateEntered"),
            entered(1, "SendPreHook", "TaskStateEntered"),
            task(1, "sendCommand", r#"{"Command":{"CommandId":"c-pre"}}"#),
            entered(1, "PreHookWait", "WaitStateEntered"),
            entered(6, "GetPreHook", "TaskStateEntered"),
            task(7, "getCommandInvocation", r#"{"Status":"Success"}"#),
            entered(7, "PreHookDone", "ChoiceStateEntered"),
            entered(7, "StartBackupJobThenPost", "TaskStateEntered"),
            task(8, "startBackupJob", r#"{"BackupJobId":"j"}"#),
            entered(8, "WaitForJob", "WaitStateEntered"),
            entered(18, "DescribeJob", "TaskStateEntered"),
            task(18, "describeBackupJob", r#"{"State":"CREATED"}"#),
            entered(18, "JobReady", "ChoiceStateEntered"),
            entered(18, "WaitForJob", "WaitStateEntered"),
            entered(28, "DescribeJob", "TaskStateEntered"),
            task(28, "describeBackupJob", r#"{"State":"RUNNING"}"#),
            entered(28, "JobReady", "ChoiceStateEntered"),
            entered(28, "SendPostHook", "TaskStateEntered"),
            task(29, "sendCommand", r#"{"Command":{"CommandId":"c-post"}}"#),
            entered(29, "PostHookWait", "WaitStateEntered"),
            entered(34, "GetPostHook", "TaskStateEntered"),
            task(35, "getCommandInvocation", r#"{"Status":"Success"}"#),
            entered(35, "PostHookDone", "ChoiceStateEntered"),
            entered(35, "Done", "PassStateEntered"),
            ev("ExecutionSucceeded", 35, None, None, None),
        ];
        let r = read_history(&events);
        let (pre, post) = (r.pre.clone().unwrap(), r.post.clone().unwrap());
        assert_eq!(pre.command_id.as_deref(), Some("c-pre"));
        assert_eq!(post.command_id.as_deref(), Some("c-post"));
        assert_eq!(
            pre.duration(),
            Duration::from_secs(6),
            "SendPreHook to GetPreHook"
        );
        assert_eq!(
            post.duration(),
            Duration::from_secs(6),
            "SendPostHook to GetPostHook"
        );
        assert_eq!(r.downtime(), Some(Duration::from_secs(34)));
        assert_eq!(r.job_state_at_post.as_deref(), Some("RUNNING"));
        assert!(
            !r.post_before_job_started(),
            "the job was RUNNING when the post hook went out: app-consistent, no warning"
        );
    }

    #[test]
    fn a_command_that_could_not_be_sent_is_named_by_its_error() {
        let mut failed = ev("TaskFailed", 2, None, Some("sendCommand"), None);
        failed.error = Some("Ssm.InvalidInstanceIdException".into());
        let events = vec![
            ev("TaskStateEntered", 0, Some("SendPreHook"), None, None),
            ev("TaskScheduled", 1, None, Some("sendCommand"), None),
            failed,
        ];
        let r = read_history(&events);
        assert_eq!(r.pre.unwrap().status, "Ssm.InvalidInstanceIdException");
        assert_eq!(r.post, None);
        assert_eq!(HookReport::default().downtime(), None);
    }
}
