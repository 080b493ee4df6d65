//! GetExecutionHistory events of the modelled state machine, in the shapes Step Functions uses.
//!
//! The machine: optional `PreCommand` (SSM), `StartBackupJob`, and for the hook variant
//! `WaitForBackupJob` plus optional `PostCommand`. Events are derived from the execution's
//! timestamps; those later than `now` have not happened yet and are left out, so ids stay stable
//! from one call to the next.

use serde_json::{Value, json};

use super::Millis;
use super::input::TaskInput;

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
        job_state: &'a str,
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

    fn fail_task(&mut self, at: Millis, integration: Integration, error: &str, cause: &str) {
        self.push(
            at,
            "TaskFailed",
            "taskFailedEventDetails",
            json!({
                "resourceType": integration.resource_type,
                "resource": integration.resource,
                "error": error,
                "cause": cause,
            }),
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

/// An SSM RunCommand step (PreCommand / PostCommand).
struct Command<'a> {
    state: &'static str,
    text: &'a str,
}

impl Command<'_> {
    fn begin(&self, events: &mut Events, at: Millis, line: &Timeline<'_>) {
        let instance = line
            .task
            .resource_arn
            .as_ref()
            .ok()
            .and_then(|arn| arn.rsplit_once('/'))
            .map_or("", |(_, id)| id);
        events.enter(at, self.state, line.input);
        events.schedule(
            at,
            SEND_COMMAND,
            line.region,
            json!({
                "DocumentName": "AWS-RunShellScript",
                "InstanceIds": [instance],
                "Parameters": { "commands": [self.text] },
            }),
        );
    }

    fn succeed(&self, events: &mut Events, at: Millis, line: &Timeline<'_>) {
        let output = json!({
            "Command": {
                "CommandId": format!("{}-{}", line.execution_name, self.state.to_lowercase()),
                "Status": "Success",
            }
        })
        .to_string();
        events.succeed(at, SEND_COMMAND, self.state, &output);
    }
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
    let pre = line.task.pre_command.map(|text| Command {
        state: "PreCommand",
        text,
    });
    let task_at = match &line.outcome {
        Outcome::Pending => None,
        Outcome::FailedBeforeJob { at, .. } | Outcome::Job { at, .. } => Some(*at),
    };
    // When StartBackupJob is entered: at once, or once the PreCommand has succeeded.
    let backup_entered = if let Some(pre) = &pre {
        pre.begin(&mut events, start, line);
        match (&line.outcome, task_at) {
            (Outcome::FailedBeforeJob { at, error, cause }, _) if *error == "PreCommandFailed" => {
                events.fail_task(*at, SEND_COMMAND, error, cause);
                events.fail_execution(*at, error, cause);
                return finish(events, now);
            }
            (_, Some(at)) => {
                pre.succeed(&mut events, at, line);
                Some(at)
            }
            (_, None) => return finish(events, now),
        }
    } else {
        Some(start)
    };
    let entered = backup_entered.unwrap_or(start);
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
    events.schedule(entered, START_BACKUP_JOB, line.region, parameters);
    let Outcome::Job {
        at,
        start_response,
        job_state,
        stop,
        post_failure,
        output,
    } = &line.outcome
    else {
        return finish(events, now);
    };
    events.succeed(*at, START_BACKUP_JOB, "StartBackupJob", start_response);
    if !line.task.hooked() {
        events.succeed_execution(*at, output);
        return finish(events, now);
    }
    events.enter(*at, "WaitForBackupJob", start_response);
    let job_id = serde_json::from_str::<Value>(start_response)
        .ok()
        .and_then(|v| v["BackupJobId"].as_str().map(str::to_string))
        .unwrap_or_default();
    events.schedule(
        *at,
        DESCRIBE_BACKUP_JOB,
        line.region,
        json!({ "BackupJobId": job_id }),
    );
    let waited = json!({ "BackupJobId": job_id, "State": job_state }).to_string();
    events.succeed(*stop, DESCRIBE_BACKUP_JOB, "WaitForBackupJob", &waited);
    if let Some(text) = line.task.post_command {
        let post = Command {
            state: "PostCommand",
            text,
        };
        post.begin(&mut events, *stop, line);
        if let Some(cause) = post_failure {
            events.fail_task(*stop, SEND_COMMAND, "PostCommandFailed", cause);
            events.fail_execution(*stop, "PostCommandFailed", cause);
            return finish(events, now);
        }
        post.succeed(&mut events, *stop, line);
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
