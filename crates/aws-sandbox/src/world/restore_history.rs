//! GetExecutionHistory of the restore machine: every state an execution went through, named as
//! the template names them (`Validate`, `DescribeRecoveryPoint`, `CheckRecoveryPoint`,
//! `GetRestoreMetadata`, `StartRestoreJob`, `WaitForRestoreJob`, `DescribeRestoreJob`,
//! `RestoreJobDone`, `TagRestored`, `WaitForInstance`, `DescribeInstanceStatus`,
//! `InstanceReady`, `AfterStatusChecks`, `SendValidation`, …, `TerminateRestored`, `Report`,
//! `Passed`; the sweep's `DescribeSweptInstance`, `CheckSweep`, …, `Swept`). Only the last round
//! of a poll loop is shown.

use serde_json::{Value, json};

use super::super::basics::{Millis, iso_millis};
use super::super::events::{
    CREATE_TAGS, DESCRIBE_INSTANCE_STATUS, DESCRIBE_INSTANCES, DESCRIBE_RECOVERY_POINT,
    DESCRIBE_RESTORE_JOB, Events, GET_COMMAND_INVOCATION, GET_RESTORE_METADATA, Outcome,
    PUT_RESTORE_VALIDATION, SEND_COMMAND, START_RESTORE_JOB, State, TERMINATE_INSTANCES,
};
use super::runs::{RestoreRun, SweepRun, TaskError};
use super::{Run, World};

fn failed(e: &TaskError) -> Outcome {
    Outcome::Failed {
        error: e.error.clone(),
        cause: e.cause.clone(),
    }
}

fn ok(v: &Value) -> Outcome {
    Outcome::Succeeded(v.to_string())
}

impl World {
    /// The events of restore machine execution `index` that have happened by `now`.
    pub(super) fn restore_history(&self, index: u32, now: Millis) -> Vec<Value> {
        let e = &self.executions[index as usize];
        let role = format!(
            "arn:aws:iam::{}:role/orchestrator-restore-state-machine",
            self.config.account_id
        );
        let mut ev = Events::started(e.start, &e.input, &role, &self.config.region);
        let data = e.input.to_string();
        match &e.run {
            Run::Refused { at, cause } => {
                ev.step(*at, State::Choice, "Validate", &data);
                ev.fail(*at, "InputRefused", &data, "InputRefused", cause);
            }
            Run::Restore(run) => {
                ev.step(run.at, State::Choice, "Validate", &data);
                self.restore_events(&mut ev, run, &data);
            }
            Run::Sweep(run) => {
                ev.step(run.at, State::Choice, "Validate", &data);
                self.sweep_events(&mut ev, run, &data);
            }
            _ => {}
        }
        ev.finish(now)
    }

    /// A restore test's or an on-demand restore's states after `Validate`.
    fn restore_events(&self, ev: &mut Events, run: &RestoreRun, data: &str) {
        let at = run.at;
        let input: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let vault = &self.config.stack.backup_vault_name;
        let rp = &input["RecoveryPointArn"];
        let where_ = json!({ "BackupVaultName": vault, "RecoveryPointArn": rp });
        let point = match &run.point {
            Err(e) => {
                ev.task(
                    (at, at),
                    "DescribeRecoveryPoint",
                    DESCRIBE_RECOVERY_POINT,
                    &where_,
                    (data, &failed(e)),
                );
                let cause = run.report.as_str().unwrap_or_default();
                ev.fail(at, "RecoveryPointRefused", data, "InputRefused", cause);
                return;
            }
            Ok(p) => p,
        };
        let described = json!({
            "RecoveryPointArn": point.arn, "BackupVaultName": point.backup_vault_name,
            "BackupVaultArn": point.backup_vault_arn, "ResourceArn": point.resource_arn,
            "ResourceType": point.resource_type, "Status": point.status,
            "CreationDate": iso_millis(point.creation_date.timestamp_millis()),
        });
        ev.task(
            (at, at),
            "DescribeRecoveryPoint",
            DESCRIBE_RECOVERY_POINT,
            &where_,
            (data, &ok(&described)),
        );
        ev.step(at, State::Choice, "CheckRecoveryPoint", data);
        if let Some(cause) = &run.refusal {
            ev.fail(at, "RecoveryPointNotUsable", data, "InputRefused", cause);
            return;
        }
        let original = json!({ "RestoreMetadata": run.original });
        ev.task(
            (at, at),
            "GetRestoreMetadata",
            GET_RESTORE_METADATA,
            &where_,
            (data, &ok(&original)),
        );
        let Some((metadata, started)) = &run.started else {
            return;
        };
        let request = json!({
            "RecoveryPointArn": rp, "IamRoleArn": super::restore::restore_role(&self.config.account_id),
            "IdempotencyToken": self.name_of(run), "ResourceType": "EC2",
            "CopySourceTagsToRestoredResource": false, "Metadata": metadata,
        });
        match started {
            Err(e) => {
                ev.task(
                    (at, at),
                    "StartRestoreJob",
                    START_RESTORE_JOB,
                    &request,
                    (data, &failed(e)),
                );
                self.report_events(ev, run, data);
                return;
            }
            Ok(r) => {
                let answer = json!({ "RestoreJobId": self.restores.id(*r) });
                ev.task(
                    (at, at),
                    "StartRestoreJob",
                    START_RESTORE_JOB,
                    &request,
                    (data, &ok(&answer)),
                );
            }
        }
        self.follow_events(ev, run, data);
        self.report_events(ev, run, data);
    }

    /// The execution name a restore run belongs to (its StartRestoreJob token).
    fn name_of(&self, run: &RestoreRun) -> String {
        run.started
            .as_ref()
            .and_then(|(_, s)| s.as_ref().ok())
            .and_then(|&r| self.restores.record(r, run.at).idempotency_token)
            .unwrap_or_default()
    }

    /// The restore job's end, the tags, the status checks, the validation, the termination.
    fn follow_events(&self, ev: &mut Events, run: &RestoreRun, data: &str) {
        let Some((Ok(r), Some((seen, status, created)))) = run
            .started
            .as_ref()
            .map(|(_, s)| (s.as_ref().map(|r| *r), run.seen.as_ref()))
        else {
            return;
        };
        let (seen, status) = (*seen, *status);
        let id = self.restores.id(r);
        ev.wait(run.at, seen, "WaitForRestoreJob", data);
        let mut job = json!({ "RestoreJobId": id, "Status": status });
        if let Some(c) = created {
            job["CreatedResourceArn"] = json!(c);
        }
        ev.task(
            (seen, seen),
            "DescribeRestoreJob",
            DESCRIBE_RESTORE_JOB,
            &json!({ "RestoreJobId": id }),
            (data, &ok(&job)),
        );
        ev.step(seen, State::Choice, "RestoreJobDone", data);
        let instance = created
            .as_deref()
            .and_then(|c| c.rsplit('/').next())
            .unwrap_or_default();
        if let Some((state, at)) = run.tagged {
            let tags: Vec<Value> = self
                .restores
                .tags(r, Millis::MAX)
                .iter()
                .map(|(k, v)| json!({ "Key": k, "Value": v }))
                .collect();
            let p = json!({ "Resources": [instance], "Tags": tags });
            ev.task((at, at), state, CREATE_TAGS, &p, (data, &ok(&json!({}))));
        }
        if let Some(c) = &run.checks {
            ev.wait(seen, c.at, "WaitForInstance", data);
            let statuses = json!({ "Statuses": [{
                "InstanceId": instance,
                "InstanceState": { "Name": c.seen.0 },
                "InstanceStatus": { "Status": c.seen.1 },
                "SystemStatus": { "Status": c.seen.1 },
            }]});
            let p = json!({ "InstanceIds": [instance], "IncludeAllInstances": true });
            ev.task(
                (c.at, c.at),
                "DescribeInstanceStatus",
                DESCRIBE_INSTANCE_STATUS,
                &p,
                (data, &ok(&statuses)),
            );
            ev.step(c.at, State::Choice, "InstanceReady", data);
            ev.step(c.at, State::Choice, "AfterStatusChecks", data);
        }
        self.validation_events(ev, run, r, data);
        if let Some((from, to)) = run.keep {
            ev.wait(from, to, "KeepRestored", data);
        }
        if let Some((at, result)) = &run.termination {
            let p = json!({ "InstanceIds": [instance] });
            let outcome = match result {
                Ok(()) => ok(&json!({ "TerminatingInstances": [{ "InstanceId": instance,
                    "CurrentState": { "Name": "shutting-down" },
                    "PreviousState": { "Name": "running" } }] })),
                Err(e) => failed(e),
            };
            ev.task(
                (*at, *at),
                "TerminateRestored",
                TERMINATE_INSTANCES,
                &p,
                (data, &outcome),
            );
        }
    }

    /// SendValidation, ValidationWait, GetValidation, ValidationDone, ReportValidation.
    fn validation_events(&self, ev: &mut Events, run: &RestoreRun, r: u32, data: &str) {
        let Some(c) = &run.validation else {
            return;
        };
        let sent = ok(&c.send_response());
        ev.task(
            (c.sent_at_ms, c.sent_at_ms),
            "SendValidation",
            SEND_COMMAND,
            &c.request(),
            (data, &sent),
        );
        ev.wait(c.sent_at_ms, c.ended_at_ms, "ValidationWait", data);
        let p = json!({ "CommandId": c.command_id, "InstanceId": c.instance_id });
        ev.task(
            (c.ended_at_ms, c.ended_at_ms),
            "GetValidation",
            GET_COMMAND_INVOCATION,
            &p,
            (data, &ok(&c.invocation())),
        );
        ev.step(c.ended_at_ms, State::Choice, "ValidationDone", data);
        if let Some((at, result)) = &run.reported {
            let record = self.restores.record(r, Millis::MAX);
            let p = json!({ "RestoreJobId": record.id,
                            "ValidationStatus": record.validation_status,
                            "ValidationStatusMessage": record.validation_status_message });
            let outcome = match result {
                Ok(()) => ok(&json!({})),
                Err(e) => failed(e),
            };
            ev.task(
                (*at, *at),
                "ReportValidation",
                PUT_RESTORE_VALIDATION,
                &p,
                (data, &outcome),
            );
        }
    }

    /// `Report`, then `Passed` or the failure.
    fn report_events(&self, ev: &mut Events, run: &RestoreRun, data: &str) {
        let report = run.report.to_string();
        ev.enter(run.end, State::Choice, "Report", data);
        ev.exit(run.end, State::Choice, "Report", &report);
        match run.error {
            None => {
                ev.enter(run.end, State::Succeed, "Passed", &report);
                ev.exit(run.end, State::Succeed, "Passed", &report);
                ev.succeed(run.end, &report);
            }
            Some(error) => ev.fail(run.end, "RestoreTestFailed", &report, error, &report),
        }
    }

    /// A sweep's states after `Validate`.
    fn sweep_events(&self, ev: &mut Events, run: &SweepRun, data: &str) {
        let at = run.at;
        let input: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let arn = input["ResourceArn"].as_str().unwrap_or_default();
        let id = arn.rsplit('/').next().unwrap_or_default();
        let p = json!({ "InstanceIds": [id] });
        let Some(r) = run.found else {
            let e = TaskError {
                error: "Ec2.Ec2Exception".to_string(),
                cause: format!("The instance ID '{id}' does not exist"),
            };
            ev.task(
                (at, at),
                "DescribeSweptInstance",
                DESCRIBE_INSTANCES,
                &p,
                (data, &failed(&e)),
            );
            ev.fail(
                at,
                "NotARestoredResource",
                data,
                "NotARestoredResource",
                &run.cause,
            );
            return;
        };
        let instance = self.restores.instance(r, at);
        let tags: Vec<Value> = self
            .restores
            .tags(r, at)
            .iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect();
        let described = json!({ "Reservations": [{ "Instances": [{
            "InstanceId": id,
            "ImageId": instance.as_ref().map(|i| i.image_arn.rsplit('/').next().unwrap_or_default().to_string()),
            "State": { "Name": instance.as_ref().map_or("terminated", |i| i.state) },
            "Tags": tags,
        }]}]});
        ev.task(
            (at, at),
            "DescribeSweptInstance",
            DESCRIBE_INSTANCES,
            &p,
            (data, &ok(&described)),
        );
        ev.step(at, State::Choice, "CheckSweep", data);
        if matches!(run.outcome, "NotARestoredResource" | "NotExpired") && run.point_ok.is_none() {
            ev.fail(at, run.outcome, data, run.outcome, &run.cause);
            return;
        }
        if !run.already_terminated && !self.sweep_terminate_events(ev, run, &p, data) {
            return;
        }
        let output = World::sweep_closing(run, data).unwrap_or_default();
        ev.enter(at, State::Pass, "Swept", data);
        ev.exit(at, State::Pass, "Swept", &output);
        ev.succeed(at, &output);
    }

    /// DescribeSweptRecoveryPoint and TerminateExpired; false when the sweep failed there.
    fn sweep_terminate_events(
        &self,
        ev: &mut Events,
        run: &SweepRun,
        p: &Value,
        data: &str,
    ) -> bool {
        let at = run.at;
        let id = p["InstanceIds"][0].as_str().unwrap_or_default();
        let instance = run.found.and_then(|r| self.restores.instance(r, at));
        let image = instance
            .as_ref()
            .map(|i| i.image_arn.clone())
            .unwrap_or_default();
        let q = json!({ "BackupVaultName": self.config.stack.backup_vault_name, "RecoveryPointArn": image });
        if run.point_ok == Some(false) {
            let e = TaskError {
                error: "Backup.ResourceNotFoundException".to_string(),
                cause: run.cause.clone(),
            };
            ev.task(
                (at, at),
                "DescribeSweptRecoveryPoint",
                DESCRIBE_RECOVERY_POINT,
                &q,
                (data, &failed(&e)),
            );
            ev.fail(
                at,
                "NotARestoredResource",
                data,
                "NotARestoredResource",
                &run.cause,
            );
            return false;
        }
        ev.task(
            (at, at),
            "DescribeSweptRecoveryPoint",
            DESCRIBE_RECOVERY_POINT,
            &q,
            (data, &ok(&json!({ "ResourceType": "EC2" }))),
        );
        let outcome = match &run.termination {
            Some(Err(e)) => failed(e),
            _ => ok(&json!({ "TerminatingInstances": [{ "InstanceId": id }] })),
        };
        ev.task(
            (at, at),
            "TerminateExpired",
            TERMINATE_INSTANCES,
            p,
            (data, &outcome),
        );
        if run.outcome == "SweepFailed" {
            ev.fail(at, "SweepFailed", data, "SweepFailed", &run.cause);
            return false;
        }
        true
    }
}
