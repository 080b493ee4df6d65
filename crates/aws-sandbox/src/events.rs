//! GetExecutionHistory events in the shapes Step Functions writes them: one per state entered
//! and exited (`TaskStateEntered`, `ChoiceStateExited`, …), the task's scheduled, started,
//! succeeded or failed events with the SDK integration's resource, the Map state's iterations,
//! and the execution's start and end. The modelled machines push events in time order; those
//! later than `now` have not happened yet and are left out, so ids stay stable from one call to
//! the next. Pure.

use serde_json::{Value, json};

use super::basics::{Millis, epoch_seconds};

/// One AWS SDK integration, as history events name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Integration {
    pub resource_type: &'static str,
    pub resource: &'static str,
}

impl Integration {
    const fn new(resource_type: &'static str, resource: &'static str) -> Self {
        Self {
            resource_type,
            resource,
        }
    }
}

pub(crate) const START_BACKUP_JOB: Integration =
    Integration::new("aws-sdk:backup", "startBackupJob");
pub(crate) const DESCRIBE_BACKUP_JOB: Integration =
    Integration::new("aws-sdk:backup", "describeBackupJob");
pub(crate) const START_COPY_JOB: Integration = Integration::new("aws-sdk:backup", "startCopyJob");
pub(crate) const SEND_COMMAND: Integration = Integration::new("aws-sdk:ssm", "sendCommand");
pub(crate) const GET_COMMAND_INVOCATION: Integration =
    Integration::new("aws-sdk:ssm", "getCommandInvocation");
pub(crate) const DESCRIBE_RECOVERY_POINT: Integration =
    Integration::new("aws-sdk:backup", "describeRecoveryPoint");
pub(crate) const GET_RESTORE_METADATA: Integration =
    Integration::new("aws-sdk:backup", "getRecoveryPointRestoreMetadata");
pub(crate) const START_RESTORE_JOB: Integration =
    Integration::new("aws-sdk:backup", "startRestoreJob");
pub(crate) const DESCRIBE_RESTORE_JOB: Integration =
    Integration::new("aws-sdk:backup", "describeRestoreJob");
pub(crate) const PUT_RESTORE_VALIDATION: Integration =
    Integration::new("aws-sdk:backup", "putRestoreValidationResult");
pub(crate) const CREATE_TAGS: Integration = Integration::new("aws-sdk:ec2", "createTags");
pub(crate) const DESCRIBE_INSTANCE_STATUS: Integration =
    Integration::new("aws-sdk:ec2", "describeInstanceStatus");
pub(crate) const DESCRIBE_INSTANCES: Integration =
    Integration::new("aws-sdk:ec2", "describeInstances");
pub(crate) const TERMINATE_INSTANCES: Integration =
    Integration::new("aws-sdk:ec2", "terminateInstances");

/// The kinds of states, as their events are named (`ChoiceStateEntered`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Task,
    Choice,
    Pass,
    Wait,
    Map,
    Fail,
    Succeed,
}

impl State {
    fn entered(self) -> &'static str {
        match self {
            Self::Task => "TaskStateEntered",
            Self::Choice => "ChoiceStateEntered",
            Self::Pass => "PassStateEntered",
            Self::Wait => "WaitStateEntered",
            Self::Map => "MapStateEntered",
            Self::Fail => "FailStateEntered",
            Self::Succeed => "SucceedStateEntered",
        }
    }

    fn exited(self) -> &'static str {
        match self {
            Self::Task => "TaskStateExited",
            Self::Choice => "ChoiceStateExited",
            Self::Pass => "PassStateExited",
            Self::Wait => "WaitStateExited",
            Self::Map => "MapStateExited",
            Self::Fail => "FailStateExited",
            Self::Succeed => "SucceedStateExited",
        }
    }
}

/// How a task ended: its output, or an error and a cause.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Succeeded(String),
    Failed { error: String, cause: String },
}

/// The events of one execution, pushed in time order.
#[derive(Debug)]
pub(crate) struct Events {
    list: Vec<(Millis, &'static str, &'static str, Value)>,
    region: String,
}

impl Events {
    /// An execution that started at `at` with `input`, its machine's role being `role_arn`.
    pub(crate) fn started(at: Millis, input: &str, role_arn: &str, region: &str) -> Self {
        let mut events = Self {
            list: Vec::new(),
            region: region.to_string(),
        };
        events.push(
            at,
            "ExecutionStarted",
            "executionStartedEventDetails",
            json!({
                "input": input,
                "inputDetails": { "truncated": false },
                "roleArn": role_arn,
            }),
        );
        events
    }

    fn push(&mut self, at: Millis, kind: &'static str, key: &'static str, details: Value) {
        self.list.push((at, kind, key, details));
    }

    /// A state entered.
    pub(crate) fn enter(&mut self, at: Millis, state: State, name: &str, input: &str) {
        self.push(
            at,
            state.entered(),
            "stateEnteredEventDetails",
            json!({ "name": name, "input": input, "inputDetails": { "truncated": false } }),
        );
    }

    /// A state exited.
    pub(crate) fn exit(&mut self, at: Millis, state: State, name: &str, output: &str) {
        self.push(
            at,
            state.exited(),
            "stateExitedEventDetails",
            json!({ "name": name, "output": output, "outputDetails": { "truncated": false } }),
        );
    }

    /// A Choice or Pass state, entered and left at `at`.
    pub(crate) fn step(&mut self, at: Millis, state: State, name: &str, data: &str) {
        self.enter(at, state, name, data);
        self.exit(at, state, name, data);
    }

    /// A Wait state from `from` to `to`.
    pub(crate) fn wait(&mut self, from: Millis, to: Millis, name: &str, data: &str) {
        self.enter(from, State::Wait, name, data);
        self.exit(to, State::Wait, name, data);
    }

    /// A Task state: entered and its call scheduled at `from`, answered at `to`. A failed task
    /// is left as it is (its Catch leads on); a succeeded one exits with its output.
    pub(crate) fn task(
        &mut self,
        (from, to): (Millis, Millis),
        name: &str,
        integration: Integration,
        parameters: &Value,
        (input, outcome): (&str, &Outcome),
    ) {
        self.enter(from, State::Task, name, input);
        let (resource_type, resource) = (integration.resource_type, integration.resource);
        let region = self.region.clone();
        self.push(
            from,
            "TaskScheduled",
            "taskScheduledEventDetails",
            json!({
                "resourceType": resource_type,
                "resource": resource,
                "region": region,
                "parameters": parameters.to_string(),
            }),
        );
        self.push(
            from,
            "TaskStarted",
            "taskStartedEventDetails",
            json!({ "resourceType": resource_type, "resource": resource }),
        );
        match outcome {
            Outcome::Succeeded(output) => {
                self.push(
                    to,
                    "TaskSucceeded",
                    "taskSucceededEventDetails",
                    json!({
                        "resourceType": resource_type,
                        "resource": resource,
                        "output": output,
                        "outputDetails": { "truncated": false },
                    }),
                );
                self.exit(to, State::Task, name, output);
            }
            Outcome::Failed { error, cause } => self.push(
                to,
                "TaskFailed",
                "taskFailedEventDetails",
                json!({
                    "resourceType": resource_type,
                    "resource": resource,
                    "error": error,
                    "cause": cause,
                }),
            ),
        }
    }

    /// A Map state's start with `length` items.
    pub(crate) fn map_started(&mut self, at: Millis, length: usize) {
        self.push(
            at,
            "MapStateStarted",
            "mapStateStartedEventDetails",
            json!({ "length": length }),
        );
    }

    /// One Map iteration starting (`started`) or done.
    pub(crate) fn iteration(&mut self, at: Millis, name: &str, index: usize, started: bool) {
        let (kind, key) = if started {
            ("MapIterationStarted", "mapIterationStartedEventDetails")
        } else {
            ("MapIterationSucceeded", "mapIterationSucceededEventDetails")
        };
        self.push(at, kind, key, json!({ "name": name, "index": index }));
    }

    /// The Map state's end.
    pub(crate) fn map_succeeded(&mut self, at: Millis) {
        self.push(
            at,
            "MapStateSucceeded",
            "mapStateSucceededEventDetails",
            json!({}),
        );
    }

    /// A Fail state, and the execution failing with its error and cause.
    pub(crate) fn fail(&mut self, at: Millis, name: &str, input: &str, error: &str, cause: &str) {
        self.enter(at, State::Fail, name, input);
        self.push(
            at,
            "ExecutionFailed",
            "executionFailedEventDetails",
            json!({ "error": error, "cause": cause }),
        );
    }

    /// The execution succeeding with `output`.
    pub(crate) fn succeed(&mut self, at: Millis, output: &str) {
        self.push(
            at,
            "ExecutionSucceeded",
            "executionSucceededEventDetails",
            json!({ "output": output, "outputDetails": { "truncated": false } }),
        );
    }

    /// The events that have happened by `now`, numbered, ready for the wire.
    pub(crate) fn finish(self, now: Millis) -> Vec<Value> {
        self.list
            .into_iter()
            .take_while(|(at, ..)| *at <= now)
            .enumerate()
            .map(|(i, (at, kind, key, details))| {
                let mut event = json!({
                    "timestamp": epoch_seconds(at),
                    "type": kind,
                    "id": i + 1,
                    "previousEventId": i,
                });
                event[key] = details;
                event
            })
            .collect()
    }
}

/// How many state transitions (states entered) `events` show: what Standard workflows bill.
pub(crate) fn transitions(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("StateEntered"))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_in_time_order_and_cut_at_now() {
        let mut e = Events::started(0, "{}", "arn:aws:iam::1:role/r", "us-east-1");
        e.step(10, State::Choice, "Validate", "{}");
        let ok = Outcome::Succeeded("{\"BackupJobId\":\"J\"}".into());
        e.task(
            (10, 20),
            "StartBackupJob",
            START_BACKUP_JOB,
            &json!({}),
            ("{}", &ok),
        );
        e.succeed(20, "{}");
        let all = Events::finish(e, 20);
        assert_eq!(all.len(), 9);
        assert_eq!(transitions(&all), 2);
        assert_eq!(all[1]["type"], "ChoiceStateEntered");
        assert_eq!(all[1]["stateEnteredEventDetails"]["name"], "Validate");
        assert_eq!(
            all[6]["taskSucceededEventDetails"]["resource"],
            "startBackupJob"
        );
        assert_eq!(all[8]["previousEventId"], 8);
    }
}
