//! The SSM side of the modelled state machine: the hook commands it sends (SendCommand /
//! GetCommandInvocation, in their real shapes), how long each runs and how it ends, when the
//! post hook goes out (the job's start, a downtime cap, or the job's end), and the knob that
//! scripts commands (`/_sandbox/ssm-rules`).
//!
//! Pure: no clock, no I/O; the world calls it with epoch milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::basics::{Millis, iso_millis, mentions_fail};

/// The document the machine uses for a raw command (`AllowRawCommands = true`).
pub(crate) const RUN_SHELL_SCRIPT: &str = "AWS-RunShellScript";

/// What the sandbox's machine is deployed with, and how fast it polls.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSettings {
    /// Stack parameter `HookDocumentPrefix` (resolved): other documents are refused.
    pub document_prefix: String,
    /// Stack parameter `AllowRawCommands`.
    pub allow_raw_commands: bool,
    /// The machine's poll of the job while the post hook waits for its start (10 s in AWS).
    pub start_poll: std::time::Duration,
    /// The machine's poll of the job with `PostHookWhen = completed` (300 s in AWS).
    pub end_poll: std::time::Duration,
    /// How long a command runs when no rule says otherwise.
    pub command_duration: std::time::Duration,
}

impl Default for HookSettings {
    fn default() -> Self {
        Self {
            document_prefix: "orchestrator-".to_string(),
            allow_raw_commands: false,
            start_poll: std::time::Duration::from_secs(10),
            end_poll: std::time::Duration::from_secs(300),
            command_duration: std::time::Duration::from_millis(200),
        }
    }
}

/// How commands matching it run: the first rule that matches wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CommandRule {
    /// The document name; `None` matches any.
    #[serde(default)]
    pub document: Option<String>,
    /// `pre` or `post`; `None` matches both.
    #[serde(default)]
    pub phase: Option<String>,
    /// Parameters that must all be present with these values (`{"action": "stop"}`).
    #[serde(default)]
    pub parameters: serde_json::Map<String, Value>,
    /// How long the command runs, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// SSM's final status: `Success` (default), `Failed`, `TimedOut`, `Cancelled`.
    #[serde(default)]
    pub status: Option<String>,
}

/// One command the machine sent, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    /// SSM's command id.
    pub command_id: String,
    /// The execution that sent it.
    pub execution_name: String,
    /// `pre` or `post`.
    pub phase: &'static str,
    /// SendCommand `DocumentName`.
    pub document_name: String,
    /// SendCommand `DocumentVersion`.
    pub document_version: String,
    /// SendCommand `Parameters`, exactly as sent.
    pub parameters: Value,
    /// The instance.
    pub instance_id: String,
    /// When SendCommand was called, epoch milliseconds.
    pub sent_at_ms: Millis,
    /// When the invocation reached its final status.
    pub ended_at_ms: Millis,
    /// The final status.
    pub status: String,
}

impl CommandRecord {
    /// The SendCommand request the machine's task sent (history `parameters`).
    pub(crate) fn request(&self) -> Value {
        json!({
            "DocumentName": self.document_name,
            "DocumentVersion": self.document_version,
            "Parameters": self.parameters,
            "InstanceIds": [self.instance_id],
            "Comment": format!("{} {}", self.execution_name, self.phase),
        })
    }

    /// SendCommand's response, as the task's output (what the machine reads).
    pub(crate) fn send_response(&self) -> Value {
        json!({ "Command": {
            "CommandId": self.command_id,
            "DocumentName": self.document_name,
            "DocumentVersion": self.document_version,
            "Parameters": self.parameters,
            "InstanceIds": [self.instance_id],
            "Status": "Pending",
            "RequestedDateTime": iso_millis(self.sent_at_ms),
        }})
    }

    /// GetCommandInvocation's final answer.
    pub(crate) fn invocation(&self) -> Value {
        let ok = self.status == "Success";
        json!({
            "CommandId": self.command_id,
            "InstanceId": self.instance_id,
            "DocumentName": self.document_name,
            "DocumentVersion": self.document_version,
            "Status": self.status,
            "StatusDetails": self.status,
            "ResponseCode": if ok { 0 } else { 1 },
            "ExecutionStartDateTime": iso_millis(self.sent_at_ms),
            "ExecutionEndDateTime": iso_millis(self.ended_at_ms),
            "StandardOutputContent": "",
            "StandardErrorContent": if ok { "" } else { "the sandbox failed this command" },
        })
    }
}

/// A hook as the execution input asks for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HookRequest {
    pub document_name: String,
    pub document_version: String,
    pub parameters: Value,
    /// The shell text, for a raw command.
    pub raw: Option<String>,
}

/// The hook members of an execution input.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Hooks {
    pub pre: Option<HookRequest>,
    pub post: Option<HookRequest>,
    pub when_completed: bool,
    pub max_downtime_ms: Millis,
    pub skip_on_pre_failure: bool,
}

/// What the modelled machine did about an execution's hooks.
#[derive(Debug)]
pub(crate) struct HookRun {
    /// The hook members of the (validated) input.
    pub request: Hooks,
    pub pre: Option<CommandRecord>,
    pub post: Option<CommandRecord>,
    /// The job state the machine saw when it sent the post hook.
    pub job_state_seen: Option<&'static str>,
    /// True when `HookMaxDowntimeSeconds` sent the post hook.
    pub capped: bool,
}

impl Hooks {
    /// Reads the hook members of an input `Validate` accepted, as the template's `Assign`
    /// does: documents go out at the stack's `version` (never the input's), raw commands as
    /// `AWS-RunShellScript` with the stack's `executionTimeout`; absent members take their
    /// defaults.
    pub fn read(input: &Value, version: &str, command_timeout_seconds: u64) -> Hooks {
        let raw = |member: &str| input.get(member).and_then(Value::as_str);
        let mut hooks = Hooks {
            when_completed: raw("PostHookWhen") == Some("completed"),
            max_downtime_ms: input
                .get("HookMaxDowntimeSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(900)
                .saturating_mul(1000),
            skip_on_pre_failure: raw("OnPreHookFailure") == Some("skip"),
            ..Hooks::default()
        };
        for (doc_member, cmd_member, slot) in [
            ("PreDocument", "PreCommand", &mut hooks.pre),
            ("PostDocument", "PostCommand", &mut hooks.post),
        ] {
            if let Some(doc) = input.get(doc_member) {
                *slot = Some(HookRequest {
                    document_name: doc["Name"].as_str().unwrap_or_default().to_string(),
                    document_version: version.to_string(),
                    parameters: doc.get("Parameters").cloned().unwrap_or_else(|| json!({})),
                    raw: None,
                });
            } else if let Some(text) = raw(cmd_member) {
                *slot = Some(HookRequest {
                    document_name: RUN_SHELL_SCRIPT.to_string(),
                    document_version: "$DEFAULT".to_string(),
                    parameters: json!({
                        "commands": [text],
                        "executionTimeout": [command_timeout_seconds.to_string()],
                    }),
                    raw: Some(text.to_string()),
                });
            }
        }
        hooks
    }

    /// True when the machine runs any hook.
    pub fn any(&self) -> bool {
        self.pre.is_some() || self.post.is_some()
    }
}

/// How a command of `phase` runs: (duration, final status).
pub(crate) fn outcome(
    rules: &[CommandRule],
    settings: &HookSettings,
    phase: &str,
    hook: &HookRequest,
) -> (Millis, String) {
    let default_ms = Millis::try_from(settings.command_duration.as_millis()).unwrap_or(0);
    let matching = rules.iter().find(|r| {
        r.document
            .as_deref()
            .is_none_or(|d| d == hook.document_name)
            && r.phase.as_deref().is_none_or(|p| p == phase)
            && r.parameters.iter().all(|(k, v)| {
                let sent = &hook.parameters[k];
                sent == v || sent.get(0) == Some(v)
            })
    });
    let status = match (matching.and_then(|r| r.status.clone()), &hook.raw) {
        (Some(s), _) => s,
        (None, Some(text)) if mentions_fail(text) => "Failed".to_string(),
        (None, _) => "Success".to_string(),
    };
    let ms = matching
        .and_then(|r| r.duration_ms)
        .map_or(default_ms, |d| Millis::try_from(d).unwrap_or(Millis::MAX));
    (ms, status)
}

/// When the post hook is sent, and whether the downtime cap sent it: the machine polls the job
/// every `start_poll` after StartBackupJob until it has left CREATED (or, when completed, every
/// `end_poll` until it has ended).
pub(crate) fn post_hook_time(
    hooks: &Hooks,
    settings: &HookSettings,
    requested: Millis,
    running_from: Millis,
    ends: Millis,
) -> (Millis, bool) {
    let ms = |d: std::time::Duration| {
        Millis::try_from(d.as_millis())
            .unwrap_or(Millis::MAX)
            .max(1)
    };
    let rounds = |wait: Millis, every: Millis| ((wait.max(1) + every - 1) / every).max(1);
    if hooks.when_completed {
        let every = ms(settings.end_poll);
        return (requested + rounds(ends - requested, every) * every, false);
    }
    let every = ms(settings.start_poll);
    let started = rounds(running_from - requested, every);
    let cap = rounds(hooks.max_downtime_ms, every);
    if started <= cap {
        (requested + started * every, false)
    } else {
        (requested + cap * every, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HookSettings {
        HookSettings {
            start_poll: std::time::Duration::from_secs(1),
            end_poll: std::time::Duration::from_secs(30),
            ..HookSettings::default()
        }
    }

    fn doc(action: &str) -> Value {
        json!({"Name": "orchestrator-systemd-unit", "Version": "$DEFAULT",
               "Parameters": {"action": [action], "unit": ["db"]}})
    }

    #[test]
    fn documents_go_out_at_the_stack_version_and_commands_as_shell_scripts() {
        let h = Hooks::read(
            &json!({"PreDocument": doc("stop"), "OnPreHookFailure": "skip",
                    "PostCommand": "systemctl start db"}),
            "3",
            600,
        );
        assert!(h.skip_on_pre_failure && !h.when_completed);
        assert_eq!(h.max_downtime_ms, 900_000);
        let pre = h.pre.unwrap();
        assert_eq!(
            (pre.document_version.as_str(), &pre.parameters["action"]),
            ("3", &json!(["stop"]))
        );
        let post = h.post.unwrap();
        assert_eq!(post.document_name, RUN_SHELL_SCRIPT);
        assert_eq!(post.parameters["executionTimeout"], json!(["600"]));
    }

    #[test]
    fn rules_script_commands_by_document_phase_and_parameters() {
        let s = settings();
        let rules = vec![CommandRule {
            parameters: serde_json::Map::from_iter([("action".to_string(), json!("stop"))]),
            duration_ms: Some(5_000),
            status: Some("Failed".into()),
            ..CommandRule::default()
        }];
        let h = Hooks::read(
            &json!({"PreDocument": doc("stop"), "PostDocument": doc("start")}),
            "$DEFAULT",
            600,
        );
        assert_eq!(
            outcome(&rules, &s, "pre", h.pre.as_ref().unwrap()),
            (5_000, "Failed".into())
        );
        assert_eq!(
            outcome(&rules, &s, "post", h.post.as_ref().unwrap()),
            (200, "Success".into())
        );
    }

    #[test]
    fn the_post_hook_follows_the_first_poll_after_the_start_or_the_cap() {
        let s = settings();
        let mut h = Hooks {
            max_downtime_ms: 10_000,
            ..Hooks::default()
        };
        // Requested at 0, RUNNING from 2.5 s: polls at 1, 2, 3 s → sent at 3 s.
        assert_eq!(post_hook_time(&h, &s, 0, 2_500, 14_500), (3_000, false));
        // Still CREATED at the cap: sent at 10 s, capped.
        assert_eq!(post_hook_time(&h, &s, 0, 60_000, 70_000), (10_000, true));
        h.when_completed = true;
        assert_eq!(post_hook_time(&h, &s, 0, 2_500, 14_500), (30_000, false));
    }
}
