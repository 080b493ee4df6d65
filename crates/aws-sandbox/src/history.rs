//! GetExecutionHistory events of the modelled state machine, in the shapes Step Functions uses.
//!
//! The machine: optional `PreCommand` (SSM), `StartBackupJob`, and for the hook variant
//! `WaitForBackupJob` plus optional `PostCommand`. Events are derived from the execution's
//! timestamps; those later than `now` have not happened yet and are left out, so ids stay stable
//! from one call to the next.

use serde_json::{Value, json};

use super::basics::Millis;
use super::input::TaskInput;
use super::ssm::{CommandRecord, HookRun};

/// One AWS SDK integration, as history events name it.
#[derive(Debug, Clone, Copy)]
struct Integration {
    resource_type: &'static str,
    resource: &'static str,
}

const START_BACKUP_JOB: Integration = Integration {
    resource_type: "aws-sdk:backup",
    resource: "startBackupJob",
};
const DESCRIBE_BACKUP_JOB: Integration = Integration {
    resource_type: "aws-sdk:backup",
    resource: "describeBackupJob",
};
const SEND_COMMAND: Integration = Integration {
    resource_type: "aws-sdk:ssm",
    resource: "sendCommand",
};
const GET_COMMAND_INVOCATION: Integration = Integration {
    resource_type: "aws-sdk:ssm",
    resource: "getCommandInvocation",
};

/// How the execution went, as far as the world has decided.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// The task has not run yet.
    Pending,
    /// Failed at `at` before creating a job (PreCommandFailed, States.Runtime).
    FailedBeforeJob {
        at: Millis,
        error: &'a str,
        cause: &'a str,
    },
    /// The task created a job at `at`; the execution closes at `stop`.
    Job {
        at: Millis,
        start_response: String,
        stop: Millis,
        post_failure: Option<&'a str>,
        output: String,
    },
}

/// Everything the events are made from.
#[derive(Debug)]
pub(crate) struct Timeline<'a> {
    pub execution_name: &'a str,
    pub input: &'a str,
    pub task: &'a TaskInput<'a>,
    pub backup_role_arn: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub start: Millis,
    /// When StartBackupJob was entered (after the pre hook).
    pub task_at: Millis,
    pub hooks: Option<&'a HookRun>,
    pub outcome: Outcome<'a>,
}

#[derive(Default)]
struct Events {
    list: Vec<(Millis, &'static str, &'static str, Value)>,
}

impl Events {
    fn push(&mut self, at: Millis, kind: &'static str, key: &'static str, details: Value) {
        self.list.push((at, kind, key, details));
    }

    fn enter(&mut self, at: Millis, state: &str, input: &str) {
        self.push(
            at,
            "TaskStateEntered",
            "stateEnteredEventDetails",
            json!({ "name": state, "input": input, "inputDetails": { "truncated": false } }),
        );
    }

    fn schedule(&mut self, at: Millis, integration: Integration, region: &str, parameters: Value) {
        self.push(
            at,
            "TaskScheduled",
            "taskScheduledEventDetails",
            json!({
                "resourceType": integration.resource_type,
                "resource": integration.resource,
                "region": region,
                "parameters": parameters.to_string(),
            }),
        );
        self.push(
            at,
            "TaskStarted",
            "taskStartedEventDetails",
            json!({ "resourceType": integration.resource_type, "resource": integration.resource }),
        );
    }

    fn succeed(&mut self, at: Millis, integration: Integration, state: &str, output: &str) {
        self.push(
            at,
            "TaskSucceeded",
            "taskSucceededEventDetails",
            json!({
                "resourceType": integration.resource_type,
                "resource": integration.resource,
                "output": output,
                "outputDetails": { "truncated": false },
            }),
        );
        self.push(
            at,
            "TaskStateExited",
            "stateExitedEventDetails",
            json!({ "name": state, "output": output, "outputDetails": { "truncated": false } }),
        );
    }

    fn fail_execution(&mut self, at: Millis, error: &str, cause: &str) {
        self.push(
            at,
            "ExecutionFailed",
            "executionFailedEventDetails",
            json!({ "error": error, "cause": cause }),
        );
    }

    fn succeed_execution(&mut self, at: Millis, output: &str) {
        self.push(
            at,
            "ExecutionSucceeded",
            "executionSucceededEventDetails",
            json!({ "output": output, "outputDetails": { "truncated": false } }),
        );
    }
}

/// A hook command's two tasks, named as the template's states: SendCommand when it was sent,
/// then the GetCommandInvocation that saw its final status (the machine's earlier polls, which
/// saw it in progress, are left out).
fn command_events(
    events: &mut Events,
    c: &CommandRecord,
    send: &str,
    get: &str,
    line: &Timeline<'_>,
) {
    events.enter(c.sent_at_ms, send, line.input);
    events.schedule(c.sent_at_ms, SEND_COMMAND, line.region, c.request());
    events.succeed(
        c.sent_at_ms,
        SEND_COMMAND,
        send,
        &c.send_response().to_string(),
    );
    events.enter(c.ended_at_ms, get, line.input);
    events.schedule(
        c.ended_at_ms,
        GET_COMMAND_INVOCATION,
        line.region,
        json!({ "CommandId": c.command_id, "InstanceId": c.instance_id }),
    );
    events.succeed(
        c.ended_at_ms,
        GET_COMMAND_INVOCATION,
        get,
        &c.invocation().to_string(),
    );
}

/// The events of one execution that have happened by `now`, ready for the wire.
pub(crate) fn events(line: &Timeline<'_>, now: Millis) -> Vec<Value> {
    let mut events = Events::default();
    let start = line.start;
    events.push(
        start,
        "ExecutionStarted",
        "executionStartedEventDetails",
        json!({
            "input": line.input,
            "inputDetails": { "truncated": false },
            "roleArn": format!("arn:aws:iam::{}:role/backup-orchestrator-state-machine", line.account_id),
        }),
    );
    let hooks = line.hooks;
    if let Some(pre) = hooks.and_then(|h| h.pre.as_ref()) {
        command_events(&mut events, pre, "SendPreHook", "GetPreHook", line);
    }
    if let Outcome::FailedBeforeJob { at, error, cause } = &line.outcome
        && *error == "PreCommandFailed"
    {
        // Refused before sending, or the pre hook failed with skip (then the post hook ran).
        if let Some(post) = hooks.and_then(|h| h.post.as_ref()) {
            command_events(&mut events, post, "SendPostHook", "GetPostHook", line);
        }
        events.fail_execution(*at, error, cause);
        return finish(events, now);
    }
    let entered = line.task_at;
    events.enter(entered, "StartBackupJob", line.input);
    if let Outcome::FailedBeforeJob { at, error, cause } = &line.outcome {
        events.fail_execution(*at, error, cause);
        return finish(events, now);
    }
    if line.task.resource_arn.is_err() {
        return finish(events, now);
    }
    let mut parameters = json!({
        "BackupVaultName": line.task.vault,
        "IamRoleArn": line.backup_role_arn,
        "ResourceArn": line.task.resource_arn.as_ref().ok(),
        "IdempotencyToken": line.execution_name,
    });
    if let Some(minutes) = line.task.start_window_minutes {
        parameters["StartWindowMinutes"] = json!(minutes);
    }
    if let Some(minutes) = line.task.complete_window_minutes {
        parameters["CompleteWindowMinutes"] = json!(minutes);
    }
    if let Some(days) = line.task.delete_after_days {
        parameters["Lifecycle"] = json!({ "DeleteAfterDays": days });
    }
    if let Some(options) = line.task.backup_options {
        parameters["BackupOptions"] = options.clone();
    }
    events.schedule(entered, START_BACKUP_JOB, line.region, parameters);
    let Outcome::Job {
        at,
        start_response,
        stop,
        post_failure,
        output,
        ..
    } = &line.outcome
    else {
        return finish(events, now);
    };
    events.succeed(*at, START_BACKUP_JOB, "StartBackupJob", start_response);
    let post = hooks.and_then(|h| h.post.as_ref().map(|p| (h, p)));
    let Some((h, post)) = post else {
        // Plain: at once; with copies, once the machine has started them.
        events.succeed_execution(*stop, output);
        return finish(events, now);
    };
    // The poll that let the post hook go (the earlier ones saw CREATED and are left out).
    let poll = if h.request.as_ref().is_ok_and(|r| r.when_completed) {
        "DescribeBackupJob"
    } else {
        "DescribeJobForStart"
    };
    let job_id = serde_json::from_str::<Value>(start_response)
        .ok()
        .and_then(|v| v["BackupJobId"].as_str().map(str::to_string))
        .unwrap_or_default();
    events.enter(post.sent_at_ms, poll, start_response);
    events.schedule(
        post.sent_at_ms,
        DESCRIBE_BACKUP_JOB,
        line.region,
        json!({ "BackupJobId": job_id }),
    );
    let seen = json!({ "State": h.job_state_seen.unwrap_or("CREATED") }).to_string();
    events.succeed(post.sent_at_ms, DESCRIBE_BACKUP_JOB, poll, &seen);
    command_events(&mut events, post, "SendPostHook", "GetPostHook", line);
    if let Some(cause) = post_failure {
        events.fail_execution(*stop, "PostCommandFailed", cause);
        return finish(events, now);
    }
    events.succeed_execution(*stop, output);
    finish(events, now)
}

fn finish(events: Events, now: Millis) -> Vec<Value> {
    events
        .list
        .into_iter()
        .take_while(|(at, ..)| *at <= now)
        .enumerate()
        .map(|(i, (at, kind, key, details))| {
            let mut event = json!({
                "timestamp": at as f64 / 1000.0,
                "type": kind,
                "id": i + 1,
                "previousEventId": i,
            });
            event[key] = details;
            event
        })
        .collect()
}
