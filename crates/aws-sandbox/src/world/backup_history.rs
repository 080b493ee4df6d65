//! GetExecutionHistory of the backup machine: the states an execution went through, named as
//! the template names them (`Validate`, `SendPreHook`, `PreHookWait`, `GetPreHook`,
//! `PreHookDone`, `StartBackupJobThenPost`, `WaitForJob`, `DescribeJob`, `JobReady`,
//! `SendPostHook`, …, `Done`; `DescribeCopySource`, `CheckCopySource`, `StartCopies` for a
//! copy), Choice, Pass and Wait states included, derived from the execution's timestamps when
//! somebody asks. Only the last round of a poll loop is shown (the documented wait rounds).

use serde_json::{Value, json};

use super::super::basics::{Millis, iso_millis};
use super::super::events::{
    DESCRIBE_BACKUP_JOB, Events, GET_COMMAND_INVOCATION, Outcome, SEND_COMMAND, START_BACKUP_JOB,
    START_COPY_JOB, State,
};
use super::super::ssm::{CommandRecord, HookRun};
use super::backup::backup_role;
use super::runs::{CopyRun, CopySource, ItemStep, Judged};
use super::{Execution, Run, World};

/// The four states of one hook command: send, wait, get, decide.
struct HookStates {
    send: &'static str,
    wait: &'static str,
    get: &'static str,
    done: &'static str,
}

const PRE_DOCUMENT: HookStates = HookStates {
    send: "SendPreHook",
    wait: "PreHookWait",
    get: "GetPreHook",
    done: "PreHookDone",
};
const PRE_COMMAND: HookStates = HookStates {
    send: "SendPreCommand",
    wait: "PreCommandWait",
    get: "GetPreCommand",
    done: "PreCommandDone",
};
const POST_DOCUMENT: HookStates = HookStates {
    send: "SendPostHook",
    wait: "PostHookWait",
    get: "GetPostHook",
    done: "PostHookDone",
};
const POST_COMMAND: HookStates = HookStates {
    send: "SendPostCommand",
    wait: "PostCommandWait",
    get: "GetPostCommand",
    done: "PostCommandDone",
};

impl World {
    /// The events of backup machine execution `index` that have happened by `now`.
    pub(super) fn backup_history(&self, index: u32, now: Millis) -> Vec<Value> {
        let e = &self.executions[index as usize];
        let role = format!(
            "arn:aws:iam::{}:role/orchestrator-state-machine",
            self.config.account_id
        );
        let mut ev = Events::started(e.start, &e.input, &role, &self.config.region);
        let judged = self.judge_backup(index);
        let data = judged.input.to_string();
        match &e.run {
            Run::Refused { at, cause } => {
                validate_events(&mut ev, *at, &judged, &e.input);
                ev.step(*at, State::Choice, "Explain", &data);
                ev.fail(*at, "InputRefused", &data, "InputRefused", cause);
            }
            Run::Copy(run) => {
                validate_events(&mut ev, e.task_at, &judged, &e.input);
                self.copy_events(&mut ev, e.task_at, run, &data);
            }
            Run::Restore(_) | Run::Sweep(_) => {}
            Run::Pending | Run::Failed { .. } | Run::Job { .. } => {
                let first = e
                    .hooks
                    .as_deref()
                    .and_then(|h| h.pre.as_ref())
                    .map_or(e.task_at, |p| p.sent_at_ms);
                validate_events(&mut ev, first, &judged, &e.input);
                self.backup_events(&mut ev, index, &judged.input, &data);
            }
        }
        ev.finish(now)
    }

    /// A backup's states after `Validate`: the pre hook, the job, the post hook, the end.
    fn backup_events(&self, ev: &mut Events, index: u32, input: &Value, data: &str) {
        let e = &self.executions[index as usize];
        let hooks = e.hooks.as_deref();
        if let Some(h) = hooks
            && let Some(pre) = &h.pre
        {
            command_events(ev, pre, hook_states(h, true), data);
            if pre.status != "Success" {
                ev.step(pre.ended_at_ms, State::Choice, "PreHookFailed", data);
            }
        }
        match &e.run {
            Run::Failed { at, error, cause } => {
                if let Some(post) = hooks.and_then(|h| h.post.as_ref()) {
                    ev.step(post.sent_at_ms, State::Pass, "SkipBackup", data);
                    ev.step(post.sent_at_ms, State::Choice, "SendPostNow", data);
                    command_events(ev, post, hook_states(h_of(hooks), false), data);
                }
                ev.fail(*at, "BackupSkipped", data, error, cause);
            }
            Run::Job {
                job,
                stop,
                post_failure,
            } => {
                let response = self.start_response_for_sfn(*job).to_string();
                let name = start_state(hooks, input);
                let parameters = self.start_parameters(e, input, hooks);
                let ok = Outcome::Succeeded(response);
                ev.task(
                    (e.task_at, e.task_at),
                    name,
                    START_BACKUP_JOB,
                    &parameters,
                    (data, &ok),
                );
                let Some(h) = hooks else {
                    ev.succeed(*stop, &self.backup_output(index, *job));
                    return;
                };
                if let Some(post) = &h.post {
                    self.post_events(ev, e.task_at, *job, h, post, data);
                }
                if let Some(cause) = post_failure {
                    ev.fail(*stop, "PostCommandFailed", data, "PostCommandFailed", cause);
                } else {
                    let output = self.backup_output(index, *job);
                    ev.enter(*stop, State::Pass, "Done", data);
                    ev.exit(*stop, State::Pass, "Done", &output);
                    ev.succeed(*stop, &output);
                }
            }
            _ => {}
        }
    }

    /// The job poll that let the post hook go, the downtime cap, and the post hook.
    fn post_events(
        &self,
        ev: &mut Events,
        requested: Millis,
        job: u32,
        h: &HookRun,
        post: &CommandRecord,
        data: &str,
    ) {
        let at = post.sent_at_ms;
        ev.wait(requested, at, "WaitForJob", data);
        let seen = json!({ "State": h.job_state_seen.unwrap_or("CREATED") }).to_string();
        ev.task(
            (at, at),
            "DescribeJob",
            DESCRIBE_BACKUP_JOB,
            &json!({ "BackupJobId": self.jobs.id(job) }),
            (data, &Outcome::Succeeded(seen)),
        );
        ev.step(at, State::Choice, "JobReady", data);
        if h.capped {
            ev.step(at, State::Pass, "DowntimeCapped", data);
            ev.step(at, State::Choice, "SendPostNow", data);
        }
        command_events(ev, post, hook_states(h, false), data);
    }

    /// StartBackupJob's parameters as the task sends them.
    fn start_parameters(&self, e: &Execution, input: &Value, hooks: Option<&HookRun>) -> Value {
        let consistent = hooks
            .and_then(|h| h.pre.as_ref())
            .is_some_and(|p| p.status == "Success");
        let mut parameters = json!({
            "BackupVaultName": self.config.stack.backup_vault_name,
            "IamRoleArn": backup_role(&self.config.account_id),
            "ResourceArn": input["ResourceArn"],
            "IdempotencyToken": &*e.name,
            "StartWindowMinutes": input["StartWindowMinutes"],
            "CompleteWindowMinutes": input["CompleteWindowMinutes"],
            "Lifecycle": { "DeleteAfterDays": input["DeleteAfterDays"] },
            "RecoveryPointTags": {
                "orchestrator:execution": &*e.name,
                "orchestrator:target": input["Target"],
                "orchestrator:scheduled-for": input["ScheduledFor"],
                "orchestrator:trigger": input["Trigger"],
                "orchestrator:app-consistent": if consistent { "true" } else { "false" },
            },
        });
        if let Some(options) = input.get("BackupOptions") {
            parameters["BackupOptions"] = options.clone();
        } else if hooks.is_some() {
            parameters["BackupOptions"] = json!({});
        }
        parameters
    }

    /// A copy execution's states after `Validate`.
    fn copy_events(&self, ev: &mut Events, at: Millis, run: &CopyRun, data: &str) {
        let id = serde_json::from_str::<Value>(data)
            .ok()
            .and_then(|v| v["BackupJobId"].as_str().map(str::to_string))
            .unwrap_or_default();
        let parameters = json!({ "BackupJobId": id });
        let job = match &run.source {
            CopySource::Unavailable(cause) => {
                let error = serde_json::from_str::<Value>(cause).unwrap_or(Value::Null);
                let failed = Outcome::Failed {
                    error: error["Error"].as_str().unwrap_or_default().to_string(),
                    cause: error["Cause"].as_str().unwrap_or_default().to_string(),
                };
                ev.task(
                    (at, at),
                    "DescribeCopySource",
                    DESCRIBE_BACKUP_JOB,
                    &parameters,
                    (data, &failed),
                );
                ev.fail(
                    at,
                    "CopySourceUnavailable",
                    data,
                    "CopySourceUnavailable",
                    cause,
                );
                return;
            }
            CopySource::Refused { job, .. } | CopySource::Found(job) => *job,
        };
        let described = Outcome::Succeeded(self.describe_for_sfn(job, at).to_string());
        ev.task(
            (at, at),
            "DescribeCopySource",
            DESCRIBE_BACKUP_JOB,
            &parameters,
            (data, &described),
        );
        ev.step(at, State::Choice, "CheckCopySource", data);
        if let CopySource::Refused { cause, .. } = &run.source {
            ev.fail(at, "CopySourceRefused", data, "InputRefused", cause);
            return;
        }
        self.map_events(ev, at, job, run, data);
    }

    /// The StartCopies Map state: one iteration per `CopyTo` element.
    fn map_events(&self, ev: &mut Events, at: Millis, job: u32, run: &CopyRun, data: &str) {
        let input: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let list = input["CopyTo"].as_array().map_or(&[][..], Vec::as_slice);
        ev.enter(at, State::Map, "StartCopies", data);
        ev.map_started(at, run.items.len());
        for (i, (item, d)) in run.items.iter().zip(list).enumerate() {
            let item_input = json!({ "Destination": d,
                                     "RecoveryPointArn": self.jobs.recovery_point_arn(job) })
            .to_string();
            let output = item.output.to_string();
            ev.iteration(at, "StartCopies", i, true);
            ev.step(at, State::Choice, "CheckCopyDestination", &item_input);
            match item.step {
                ItemStep::Refused => {
                    ev.enter(at, State::Pass, "CopyRefused", &item_input);
                    ev.exit(at, State::Pass, "CopyRefused", &output);
                }
                ItemStep::Started | ItemStep::NotStarted => {
                    let request = self.copy_request(d, job);
                    let parameters = json!({
                        "RecoveryPointArn": request.recovery_point_arn,
                        "SourceBackupVaultName": request.source_backup_vault_name,
                        "DestinationBackupVaultArn": request.destination_backup_vault_arn,
                        "IamRoleArn": request.iam_role_arn,
                        "IdempotencyToken": request.idempotency_token,
                        "Lifecycle": { "DeleteAfterDays": request.delete_after_days },
                    });
                    let outcome = if item.step == ItemStep::Started {
                        Outcome::Succeeded(
                            json!({ "CopyJobId": item.output["CopyJobId"] }).to_string(),
                        )
                    } else {
                        Outcome::Failed {
                            error: item.output["Error"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            cause: item.output["Cause"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        }
                    };
                    ev.task(
                        (at, at),
                        "StartCopyJob",
                        START_COPY_JOB,
                        &parameters,
                        (&item_input, &outcome),
                    );
                    if item.step == ItemStep::NotStarted {
                        ev.enter(at, State::Succeed, "CopyNotStarted", &output);
                        ev.exit(at, State::Succeed, "CopyNotStarted", &output);
                    }
                }
            }
            ev.iteration(at, "StartCopies", i, false);
        }
        ev.map_succeeded(at);
        let output = World::copy_output(run);
        ev.exit(at, State::Map, "StartCopies", &output);
        ev.succeed(at, &output);
    }

    /// DescribeBackupJob's answer as a task's output (ISO dates, as the SDK integrations do).
    fn describe_for_sfn(&self, job: u32, at: Millis) -> Value {
        let r = self.jobs.record(job, at);
        json!({
            "BackupJobId": r.id,
            "BackupVaultName": r.backup_vault_name,
            "ResourceArn": r.resource_arn,
            "ResourceType": r.resource_type,
            "State": r.state.as_str(),
            "RecoveryPointArn": r.recovery_point_arn,
            "CreationDate": iso_millis(r.creation_date.timestamp_millis()),
            "PercentDone": r.percent_done,
        })
    }
}

/// `Validate`, and for an input that missed defaults `Explain` and `ApplyDefaults` before
/// `Validate` judges it again.
fn validate_events(ev: &mut Events, at: Millis, judged: &Judged, raw: &str) {
    if judged.defaulted {
        ev.step(at, State::Choice, "Validate", raw);
        ev.step(at, State::Choice, "Explain", raw);
        let filled = judged.input.to_string();
        ev.enter(at, State::Pass, "ApplyDefaults", raw);
        ev.exit(at, State::Pass, "ApplyDefaults", &filled);
        ev.step(at, State::Choice, "Validate", &filled);
    } else {
        ev.step(at, State::Choice, "Validate", raw);
    }
}

/// A hook command's states: SendCommand when it was sent, the wait, then the
/// GetCommandInvocation that saw its final status (earlier polls, which saw it in progress,
/// are left out) and the Choice that read it.
fn command_events(ev: &mut Events, c: &CommandRecord, states: &HookStates, data: &str) {
    let sent = Outcome::Succeeded(c.send_response().to_string());
    ev.task(
        (c.sent_at_ms, c.sent_at_ms),
        states.send,
        SEND_COMMAND,
        &c.request(),
        (data, &sent),
    );
    ev.wait(c.sent_at_ms, c.ended_at_ms, states.wait, data);
    let got = Outcome::Succeeded(c.invocation().to_string());
    let parameters = json!({ "CommandId": c.command_id, "InstanceId": c.instance_id });
    ev.task(
        (c.ended_at_ms, c.ended_at_ms),
        states.get,
        GET_COMMAND_INVOCATION,
        &parameters,
        (data, &got),
    );
    ev.step(c.ended_at_ms, State::Choice, states.done, data);
}

/// The states of the pre (`pre`) or post hook: a document's, or a raw command's.
fn hook_states(h: &HookRun, pre: bool) -> &'static HookStates {
    let request = if pre { &h.request.pre } else { &h.request.post };
    match (pre, request.as_ref().is_some_and(|r| r.raw.is_some())) {
        (true, false) => &PRE_DOCUMENT,
        (true, true) => &PRE_COMMAND,
        (false, false) => &POST_DOCUMENT,
        (false, true) => &POST_COMMAND,
    }
}

/// The hooks of an execution that has sent a post hook.
fn h_of(hooks: Option<&HookRun>) -> &HookRun {
    hooks.expect("a post hook was sent, so the execution has hooks")
}

/// Which StartBackupJob task variant runs: with a post hook to follow, after a pre hook
/// only, Windows VSS, or plain.
fn start_state(hooks: Option<&HookRun>, input: &Value) -> &'static str {
    match hooks {
        Some(h) if h.request.post.is_some() => "StartBackupJobThenPost",
        Some(_) => "StartHookedBackupJob",
        None if input.get("BackupOptions").is_some() => "StartVssBackupJob",
        None => "StartBackupJob",
    }
}
