//! The restore machine (`RestoreStateMachine`, design.md §2) as the template runs it: `Validate`
//! first; a restore test or an on-demand restore (the recovery point of the stack's vault,
//! its metadata, StartRestoreJob with an allow-listed metadata, the job followed to its end,
//! the instance tagged and followed to its status checks, the validation document, the result
//! reported, the instance deleted, the report); or the sweep of one expired restore-test
//! instance. The whole path is decided when the first task runs, with the time of each step;
//! what other callers see (the job, the tags, the validation result, the termination) carries
//! those times, so it appears when it happens.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::basics::{ApiError, Millis, duration_ms, iso_millis};
use super::super::restores::{RestoreJobs, RestoreRequest, RestoreSource};
use super::super::ssm::HookRequest;
use super::super::validate::{is_utc_time, restore_input_problem};
use super::runs::{Checks, Place, RecoveryPointRecord, RestoreRun, SweepRun, TaskError};
use super::{Run, World};

/// The role AWS Backup assumes for the machine's restores (the stack's `RestoreRole`).
pub(crate) fn restore_role(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/orchestrator-RestoreRole")
}

/// The first poll at or after `t` of a loop that waits `every` from `from` (at least one).
fn first_poll(from: Millis, every: Millis, t: Millis) -> Millis {
    let every = every.max(1);
    let rounds = ((t - from).max(1) + every - 1) / every;
    from + rounds.max(1) * every
}

/// StartRestoreJob's metadata from an allow-list (`RestoreMetadata` in the template): type,
/// subnet and groups from the input; the original instance profile only when kept and the
/// stack allows it; IMDSv2; the original block devices, deleted with the instance.
pub(crate) fn allowed_metadata(
    original: &BTreeMap<String, String>,
    input: &Value,
    allow_profile: bool,
) -> BTreeMap<String, String> {
    let keep = input["KeepInstanceProfile"] == true && allow_profile;
    let text = |k: &str| input[k].as_str().unwrap_or_default().to_string();
    let mut m = BTreeMap::from([
        ("InstanceType".to_string(), text("InstanceType")),
        ("SubnetId".to_string(), text("SubnetId")),
        (
            "SecurityGroupIds".to_string(),
            input["SecurityGroupIds"].to_string(),
        ),
        (
            "IamInstanceProfileName".to_string(),
            if keep {
                original
                    .get("IamInstanceProfileName")
                    .cloned()
                    .unwrap_or_default()
            } else {
                String::new()
            },
        ),
        ("RequireIMDSv2".to_string(), "true".to_string()),
        ("DisableApiTermination".to_string(), "false".to_string()),
    ]);
    if let Some(Ok(Value::Array(devices))) = original
        .get("BlockDeviceMappings")
        .map(|b| serde_json::from_str::<Value>(b))
    {
        let deleted: Vec<Value> = devices
            .into_iter()
            .map(|mut d| {
                if d.get("Ebs").is_some() {
                    d["Ebs"]["DeleteOnTermination"] = json!(true);
                }
                d
            })
            .collect();
        m.insert(
            "BlockDeviceMappings".to_string(),
            Value::Array(deleted).to_string(),
        );
    }
    m
}

impl World {
    /// True when `machine` is a restore machine (its name ends in `restore`, as the stack's
    /// `${AWS::StackName}-restore` does); every other machine runs the backup machine.
    pub(super) fn is_restore_machine(&self, machine: u32) -> bool {
        self.machines[machine as usize]
            .rsplit(':')
            .next()
            .is_some_and(|name| name.ends_with("restore"))
    }

    /// What a new restore machine execution does first, at `first`.
    pub(super) fn begin_restore(&mut self, index: u32, first: Millis) {
        let e = &self.executions[index as usize];
        let input: Value = serde_json::from_str(&e.input).unwrap_or(Value::Null);
        if let Some(cause) = restore_input_problem(&input, &self.rules(e.machine)) {
            self.executions[index as usize].run = Run::Refused {
                at: first,
                cause: cause.into(),
            };
            return;
        }
        self.due.push(Reverse((first, index)));
    }

    /// The restore machine's work after `Validate`, at `at`.
    pub(super) fn run_restore_task(&mut self, index: u32, at: Millis) {
        let input: Value =
            serde_json::from_str(&self.executions[index as usize].input).unwrap_or(Value::Null);
        let run = if input["Action"] == "sweep" {
            Run::Sweep(Box::new(self.run_sweep(index, &input, at)))
        } else {
            Run::Restore(Box::new(self.run_restore(index, &input, at)))
        };
        self.executions[index as usize].run = run;
    }

    /// The stack's place: the restore machine's region and account.
    fn stack_place(&self, index: u32) -> (String, String) {
        let rules = self.rules(self.executions[index as usize].machine);
        (rules.region.to_string(), rules.account.to_string())
    }

    /// A restore test or an on-demand restore, from DescribeRecoveryPoint to the report.
    fn run_restore(&mut self, index: u32, input: &Value, at: Millis) -> RestoreRun {
        let mut run = RestoreRun {
            at,
            point: Err(TaskError {
                error: String::new(),
                cause: String::new(),
            }),
            refusal: None,
            original: None,
            started: None,
            seen: None,
            tagged: None,
            checks: None,
            validation: None,
            reported: None,
            keep: None,
            termination: None,
            end: at,
            report: Value::Null,
            error: None,
        };
        let (region, account) = self.stack_place(index);
        let vault = self.config.stack.backup_vault_name.clone();
        let rp = input["RecoveryPointArn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let place = Place {
            region: &region,
            account: &account,
        };
        run.point = self
            .point_in_vault(&vault, &rp, &place, at)
            .map_err(|e| TaskError::of("Backup", &e));
        let point = match &run.point {
            Err(e) => {
                run.error = Some("InputRefused");
                run.report = json!(format!(
                    "InputRefused: RecoveryPointArn {rp} is not a recovery point of vault {vault} \
                     (this account and region): {}",
                    json!({ "Error": e.error, "Cause": e.cause })
                ));
                return run;
            }
            Ok(p) => p.clone(),
        };
        let wanted = input["ResourceArn"].as_str().unwrap_or_default();
        if !(point.status == "COMPLETED"
            && point.resource_type == "EC2"
            && point.backup_vault_name == vault
            && point.resource_arn == wanted)
        {
            let cause = format!(
                "InputRefused: RecoveryPointArn {rp} is {}, of type {}, of {}; only a COMPLETED \
                 EC2 recovery point of {wanted} in vault {vault} is restored",
                point.status, point.resource_type, point.resource_arn
            );
            run.refusal = Some(cause.clone());
            run.error = Some("InputRefused");
            run.report = json!(cause);
            return run;
        }
        let original = self.instance_metadata(&point.resource_arn);
        run.original = Some(original.clone());
        self.start_and_follow(index, input, &point, &original, &mut run);
        self.finish_restore(index, input, &mut run);
        run
    }

    /// StartRestoreJob, the job's end, the tags, the status checks.
    fn start_and_follow(
        &mut self,
        index: u32,
        input: &Value,
        point: &RecoveryPointRecord,
        original: &BTreeMap<String, String>,
        run: &mut RestoreRun,
    ) {
        let at = run.at;
        let name = self.executions[index as usize].name.to_string();
        let metadata = allowed_metadata(
            original,
            input,
            self.config.stack.allow_instance_profile_restore,
        );
        let request = RestoreRequest {
            recovery_point_arn: Some(point.arn.clone()),
            metadata: Some(metadata.clone()),
            iam_role_arn: Some(restore_role(&self.config.account_id)),
            idempotency_token: Some(name.clone()),
            resource_type: Some("EC2".to_string()),
        };
        let started = self
            .start_restore_at(request, at)
            .map_err(|e| TaskError::of("Backup", &e));
        run.started = Some((metadata, started.clone()));
        let Ok(r) = started else {
            return;
        };
        let settings = self.restores.settings().clone();
        let times = self.restores.times(r);
        let seen = first_poll(at, duration_ms(settings.job_poll), times.ends);
        let status = self.restores.status(r, seen);
        let created = self.restores.created_resource(r, seen);
        let launched = created.is_some();
        run.seen = Some((seen, status, created));
        run.end = seen;
        if !launched {
            return;
        }
        let test = input["Action"] == "test";
        let target = input["Target"].as_str().unwrap_or_default().to_string();
        let (state, tags) = match (status, test) {
            ("COMPLETED", true) | ("FAILED" | "ABORTED", true) => (
                if status == "COMPLETED" {
                    "TagRestored"
                } else {
                    "TagFailedRestore"
                },
                BTreeMap::from([
                    ("orchestrator:restore-test".to_string(), name),
                    (
                        "orchestrator:restore-expires".to_string(),
                        input["ExpiresAt"].as_str().unwrap_or_default().to_string(),
                    ),
                    ("orchestrator:target".to_string(), target),
                ]),
            ),
            ("COMPLETED", false) => (
                "TagOnDemandRestore",
                BTreeMap::from([
                    ("orchestrator:restore".to_string(), name),
                    ("orchestrator:target".to_string(), target),
                ]),
            ),
            _ => return,
        };
        self.restores.tag(r, &tags, seen);
        run.tagged = Some((state, seen));
        if status == "COMPLETED" {
            let checks = self.status_checks_of(r, seen, at, input);
            run.end = checks.at;
            run.checks = Some(checks);
        }
    }

    /// The WaitForInstance loop: polls every `instance_poll` from `from` until the instance
    /// passes both checks, is impaired, or MaxRestoreSeconds have passed since `requested`.
    fn status_checks_of(&self, r: u32, from: Millis, requested: Millis, input: &Value) -> Checks {
        let every = duration_ms(self.restores.settings().instance_poll).max(1);
        let times = self.restores.times(r);
        let max = input["MaxRestoreSeconds"].as_i64().unwrap_or(3600) * 1000;
        let deadline = requested + max;
        let verdict_poll = first_poll(from, every, times.checks_done);
        let timeout_poll = first_poll(from, every, deadline + 1);
        let running_poll = first_poll(from, every, times.instance_running);
        let (at, verdict) = if verdict_poll <= timeout_poll {
            let ok = self.restores.status_checks(r, verdict_poll) == "ok";
            (verdict_poll, if ok { "passed" } else { "impaired" })
        } else {
            (timeout_poll, "timed-out")
        };
        let running_at = match verdict {
            "passed" => Some(running_poll),
            _ => (running_poll < at).then_some(running_poll),
        };
        let state = self.restores.instance_state(r, at).unwrap_or("pending");
        let check = self.restores.status_checks(r, at);
        Checks {
            at,
            verdict,
            running_at,
            seen: (state, check),
        }
    }

    /// After the status checks: the validation document, its report, the keep wait, the
    /// termination (tests), then the report.
    fn finish_restore(&mut self, index: u32, input: &Value, run: &mut RestoreRun) {
        let test = input["Action"] == "test";
        let job = run
            .started
            .as_ref()
            .and_then(|(_, s)| s.as_ref().ok().copied());
        let created = run.seen.as_ref().and_then(|(_, _, c)| c.clone());
        if test && let (Some(r), Some(instance)) = (job, &created) {
            let mut t = run.end;
            let passed = run.checks.as_ref().is_some_and(|c| c.verdict == "passed");
            if passed && let Some(doc) = input.get("ValidateDocument") {
                t = self.validate_restored(index, r, instance, doc, t, run);
            }
            if run.tagged.is_some_and(|(s, _)| s != "TagFailedRestore") {
                let keep = input["KeepSeconds"].as_i64().unwrap_or(0) * 1000;
                run.keep = Some((t, t + keep));
                t += keep;
            }
            let result = self
                .restores
                .terminate(r, t)
                .map_err(|e| TaskError::of("Ec2", &e));
            run.termination = Some((t, result));
            run.end = t;
        }
        run.report = self.restore_report(input, run);
        let passed = run.seen.as_ref().is_some_and(|(_, s, _)| *s == "COMPLETED")
            && run.checks.as_ref().is_some_and(|c| c.verdict == "passed")
            && (input.get("ValidateDocument").is_none()
                || run
                    .validation
                    .as_ref()
                    .is_some_and(|v| v.status == "Success"));
        run.error = (!passed).then_some(if test {
            "RestoreTestFailed"
        } else {
            "RestoreFailed"
        });
    }

    /// SendValidation/GetValidation on the restored instance, then ReportValidation.
    /// Returns when it is done.
    fn validate_restored(
        &mut self,
        index: u32,
        r: u32,
        instance: &str,
        doc: &Value,
        at: Millis,
        run: &mut RestoreRun,
    ) -> Millis {
        let name = self.executions[index as usize].name.clone();
        let request = HookRequest {
            document_name: doc["Name"].as_str().unwrap_or_default().to_string(),
            document_version: self.config.stack.hook_document_version.clone(),
            parameters: doc.get("Parameters").cloned().unwrap_or_else(|| json!({})),
            raw: None,
        };
        let id = instance.rsplit('/').next().unwrap_or_default();
        let command = self.command(&name, "validate", &request, id, at);
        let end = command.ended_at_ms;
        let status = match command.status.as_str() {
            "Success" => "SUCCESSFUL",
            "TimedOut" => "TIMED_OUT",
            _ => "FAILED",
        };
        let message: String = command.status.chars().take(200).collect();
        let reported = self
            .restores
            .put_validation(r, status, Some(message), end)
            .map_err(|e| TaskError::of("Backup", &e));
        run.reported = Some((end, reported));
        run.validation = Some(command);
        end
    }

    /// The report (`RestoreReport` in the template): the execution's output, or the cause of
    /// its failure.
    fn restore_report(&self, input: &Value, run: &RestoreRun) -> Value {
        let job = run.started.as_ref().map(|(_, s)| s);
        let mut report = json!({
            "Action": input["Action"],
            "RecoveryPointArn": input["RecoveryPointArn"],
            "RestoreStatus": run.seen.as_ref().map_or("NOT_STARTED", |(_, s, _)| s),
            "RestoreRequestedAt": iso_millis(run.at),
            "InstanceRunningAt": run.checks.as_ref().and_then(|c| c.running_at).map(iso_millis),
            "StatusChecks": run.checks.as_ref().map_or("skipped", |c| c.verdict),
            "ValidationReported": run.reported.as_ref().is_some_and(|(_, r)| r.is_ok()),
        });
        let seen_job = job.and_then(|j| j.as_ref().ok().copied());
        if let Some(r) = seen_job {
            report["RestoreJobId"] = json!(self.restores.id(r));
        }
        let message = match (job, &run.seen) {
            (Some(Ok(r)), Some((at, _, _))) => self
                .restores
                .record(*r, *at)
                .status_message
                .unwrap_or_default(),
            (Some(Err(e)), _) => e.cause.clone(),
            _ => String::new(),
        };
        report["RestoreStatusMessage"] = json!(message);
        if let Some((_, _, Some(created))) = &run.seen {
            report["CreatedResourceArn"] = json!(created);
        }
        report["Validation"] = self.validation_report(input, run);
        report["Cleanup"] = cleanup_report(input, run);
        report
    }

    fn validation_report(&self, input: &Value, run: &RestoreRun) -> Value {
        let has_doc = input.get("ValidateDocument").is_some();
        match &run.validation {
            Some(v) if has_doc => {
                let inv = v.invocation();
                let status = match v.status.as_str() {
                    "Success" => "SUCCESSFUL",
                    "TimedOut" => "TIMED_OUT",
                    _ => "FAILED",
                };
                let message: String = format!(
                    "{} {} {}",
                    inv["StatusDetails"].as_str().unwrap_or_default(),
                    inv["StandardOutputContent"].as_str().unwrap_or_default(),
                    inv["StandardErrorContent"].as_str().unwrap_or_default()
                )
                .chars()
                .take(1000)
                .collect();
                json!({ "Status": status, "Message": message, "CommandId": v.command_id })
            }
            _ => json!({
                "Status": "SKIPPED",
                "Message": if has_doc {
                    "not run: the restored instance did not pass its status checks"
                } else {
                    "no validation document"
                },
                "CommandId": null,
            }),
        }
    }

    /// StartRestoreJob from the machine or the wire at `at`.
    fn start_restore_at(&mut self, request: RestoreRequest, at: Millis) -> Result<u32, ApiError> {
        if let Some(token) = &request.idempotency_token
            && let Some(existing) = self.restores.by_token(token)
        {
            return Ok(existing);
        }
        let rp = request.recovery_point_arn.clone().unwrap_or_default();
        if rp.is_empty() {
            return Err(ApiError::new(
                "MissingParameterValueException",
                "RecoveryPointArn is required",
            ));
        }
        let point = self
            .points(at)
            .into_iter()
            .find(|p| p.arn == rp)
            .ok_or_else(|| {
                ApiError::new(
                    "ResourceNotFoundException",
                    format!("Recovery point {rp} not found"),
                )
            })?;
        let original = self.instance_metadata(&point.resource_arn);
        let source = RestoreSource {
            recovery_point_arn: point.arn.clone(),
            resource_arn: point.resource_arn.clone(),
            vault_arn: point.backup_vault_arn.clone(),
            created: point.creation_date.timestamp_millis(),
            size: u64::try_from(point.backup_size_in_bytes).unwrap_or_default(),
            region: point.region.clone(),
            account: point.account_id.clone(),
            original_profile: original.get("IamInstanceProfileName").cloned(),
        };
        RestoreJobs::check(&request, &source)?;
        Ok(self.restores.start(request, source, at).0)
    }

    /// StartRestoreJob from the wire.
    pub fn start_restore_job(
        &mut self,
        request: RestoreRequest,
        now: Millis,
    ) -> Result<String, ApiError> {
        self.advance(now);
        let index = self.start_restore_at(request, now)?;
        Ok(self.restores.id(index))
    }

    /// The sweep of `input.ResourceArn`: only an instance with both restore-test tags, past
    /// its expiry, launched from a recovery point of the stack's vault, is terminated.
    fn run_sweep(&mut self, index: u32, input: &Value, at: Millis) -> SweepRun {
        let arn = input["ResourceArn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let start = self.executions[index as usize].start;
        let mut run = SweepRun {
            at,
            found: None,
            outcome: "NotARestoredResource",
            already_terminated: false,
            point_ok: None,
            termination: None,
            cause: String::new(),
        };
        let vault = self.config.stack.backup_vault_name.clone();
        let not_ours = |why: Value| {
            format!("{arn} is not an instance restored by a restore test of vault {vault}: {why}")
        };
        let found = self
            .restores
            .by_instance(&arn)
            .filter(|&r| self.restores.instance_state(r, at).is_some());
        let Some(r) = found else {
            run.cause = not_ours(json!({ "Found": { "Error": "Ec2.Ec2Exception",
                "Cause": format!("The instance ID '{}' does not exist (InvalidInstanceID.NotFound)",
                                 arn.rsplit('/').next().unwrap_or_default()) }}));
            return run;
        };
        run.found = Some(r);
        let tags = self.restores.tags(r, at);
        let (test, expires) = (
            tags.get("orchestrator:restore-test"),
            tags.get("orchestrator:restore-expires"),
        );
        let Some(expires) = expires.filter(|_| test.is_some()) else {
            run.cause = not_ours(json!({ "Tags": tags }));
            return run;
        };
        let expired = is_utc_time(&json!(expires))
            && chrono::DateTime::parse_from_rfc3339(expires)
                .is_ok_and(|t| t.timestamp_millis() < start);
        if !expired {
            run.outcome = "NotExpired";
            run.cause = format!("{arn} has not reached its orchestrator:restore-expires time");
            return run;
        }
        if self.restores.instance_state(r, at) == Some("terminated") {
            run.already_terminated = true;
            run.outcome = "Swept";
            return run;
        }
        self.sweep_terminate(index, r, at, &mut run);
        run
    }

    /// DescribeSweptRecoveryPoint, then TerminateExpired.
    fn sweep_terminate(&mut self, index: u32, r: u32, at: Millis, run: &mut SweepRun) {
        let (region, account) = self.stack_place(index);
        let image = self.restores.record(r, at).recovery_point_arn;
        let place = Place {
            region: &region,
            account: &account,
        };
        let vault = self.config.stack.backup_vault_name.clone();
        let ok = self.point_in_vault(&vault, &image, &place, at).is_ok();
        run.point_ok = Some(ok);
        if !ok {
            run.cause = format!(
                "{} is not an instance restored by a restore test of vault {vault}: its image {image} is not a recovery point of the vault",
                self.restores
                    .instance(r, at)
                    .map(|i| i.arn)
                    .unwrap_or_default()
            );
            return;
        }
        let result = self
            .restores
            .terminate(r, at)
            .map_err(|e| TaskError::of("Ec2", &e));
        run.outcome = if result.is_ok() {
            "Swept"
        } else {
            "SweepFailed"
        };
        if let Err(e) = &result {
            run.cause = json!({ "Error": e.error, "Cause": e.cause }).to_string();
        }
        run.termination = Some(result);
    }

    /// A closed restore execution's output or error.
    pub(super) fn restore_closing(run: &RestoreRun) -> Result<String, (&'static str, String)> {
        match run.error {
            None => Ok(run.report.to_string()),
            Some("InputRefused") => Err((
                "InputRefused",
                run.report.as_str().unwrap_or_default().to_string(),
            )),
            Some(error) => Err((error, run.report.to_string())),
        }
    }

    /// A closed sweep's output or error.
    pub(super) fn sweep_closing(
        run: &SweepRun,
        input: &str,
    ) -> Result<String, (&'static str, String)> {
        if run.outcome == "Swept" {
            let input: Value = serde_json::from_str(input).unwrap_or(Value::Null);
            return Ok(json!({ "CreatedResourceArn": input["ResourceArn"],
                              "Cleanup": { "Status": "DELETED", "Error": null } })
            .to_string());
        }
        Err((run.outcome, run.cause.clone()))
    }
}

/// `Cleanup` of the report: an on-demand restore is kept; a test's instance deleted or not.
fn cleanup_report(input: &Value, run: &RestoreRun) -> Value {
    let created = run.seen.as_ref().is_some_and(|(_, _, c)| c.is_some());
    if input["Action"] == "restore" {
        return json!({ "Status": if created { "KEPT" } else { "NONE" }, "Error": null });
    }
    match &run.termination {
        Some((_, Ok(()))) => json!({ "Status": "DELETED", "Error": null }),
        Some((_, Err(e))) => {
            json!({ "Status": "FAILED", "Error": format!("{}: {}", e.error, e.cause) })
        }
        None => json!({ "Status": "NONE", "Error": null }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::copy::CopyRule;
    use super::super::super::restores::{RestoreRule, RestoreSettings};
    use super::super::super::ssm::{CommandRule, HookSettings};
    use super::super::super::stack::StackParameters;
    use super::super::{ExecutionStatus, WorldConfig};
    use super::*;
    use std::time::Duration;

    const BACKUP: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-backup";
    const RESTORE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-restore";
    const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
    const T0: Millis = 1_800_000_000_000;

    fn world() -> World {
        World::new(WorldConfig {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            execution_delay: 200,
            job_pending: 1_000,
            job_running: 3_000,
            fail_resources: Vec::new(),
            state_machines: None,
            hooks: HookSettings::default(),
            copy_pending: 1_000,
            copy_running: 2_000,
            stack: StackParameters::default(),
            restore: RestoreSettings {
                job_poll: Duration::from_secs(5),
                instance_poll: Duration::from_secs(1),
                ..RestoreSettings::default()
            },
        })
    }

    /// A world with one COMPLETED backup of EC2 (job at +200, done at +4,200): its point.
    fn backed_up() -> (World, String) {
        let mut w = world();
        let input = json!({ "ResourceArn": EC2, "Target": "web",
            "ScheduledFor": "2026-11-29T10:00:00Z", "Trigger": "schedule",
            "StartWindowMinutes": 60, "CompleteWindowMinutes": 10080, "DeleteAfterDays": 35 });
        w.start_execution(Some(BACKUP), Some("b1"), Some(&input.to_string()), T0)
            .unwrap();
        let rp = w.recovery_points(T0 + 5_000)[0].arn.clone();
        (w, rp)
    }

    fn test_input(rp: &str) -> Value {
        json!({ "Action": "test", "Target": "web", "ResourceArn": EC2, "RecoveryPointArn": rp,
            "InstanceType": "t3.micro", "SubnetId": "subnet-0123456789abcdef0",
            "SecurityGroupIds": ["sg-0123456789abcdef0"], "ScheduledFor": "2026-11-29T10:00:00Z",
            "ExpiresAt": "2026-11-29T12:00:00Z", "MaxRestoreSeconds": 3600,
            "ValidateDocument": { "Name": "orchestrator-check", "Parameters": { "query": ["select 1"] } } })
    }

    fn start(w: &mut World, name: &str, input: &Value, at: Millis) -> String {
        w.start_execution(Some(RESTORE), Some(name), Some(&input.to_string()), at)
            .unwrap()
            .execution_arn
    }

    fn states(w: &mut World, arn: &str, now: Millis) -> Vec<String> {
        let (events, _) = w
            .execution_history(arn, usize::MAX, false, None, now)
            .unwrap();
        events
            .iter()
            .filter(|e| e["type"].as_str().unwrap().ends_with("StateEntered"))
            .map(|e| {
                e["stateEnteredEventDetails"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn a_restore_test_restores_checks_validates_reports_and_deletes() {
        let (mut w, rp) = backed_up();
        let arn = start(
            &mut w,
            "web-20261129T100000Z",
            &test_input(&rp),
            T0 + 10_000,
        );
        // Requested at +10,200; the job ends at +14,200, seen at +15,200; running at +15,200,
        // checks ok at +17,200; validation 17,200..17,400; terminated at +17,400.
        let running = w.describe_execution(&arn, T0 + 16_000).unwrap();
        assert_eq!(running.status, ExecutionStatus::Running);
        assert!(running.restore_job_id.is_some(), "readable while it runs");
        let tagged = w.tagged_restored(T0 + 16_000);
        assert_eq!(tagged.len(), 1);
        assert_eq!(
            tagged[0].1["orchestrator:restore-test"],
            "web-20261129T100000Z"
        );
        assert_eq!(
            tagged[0].1["orchestrator:restore-expires"],
            "2026-11-29T12:00:00Z"
        );
        let done = w.describe_execution(&arn, T0 + 20_000).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
        let report: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(report["RestoreStatus"], "COMPLETED");
        assert_eq!(report["StatusChecks"], "passed");
        assert_eq!(report["Validation"]["Status"], "SUCCESSFUL");
        assert_eq!(report["ValidationReported"], true);
        assert_eq!(
            report["Cleanup"],
            json!({ "Status": "DELETED", "Error": null })
        );
        assert_eq!(report["RestoreRequestedAt"], json!(iso_millis(T0 + 10_200)));
        assert_eq!(report["InstanceRunningAt"], json!(iso_millis(T0 + 16_200)));
        assert_eq!(done.stop_date.unwrap().timestamp_millis(), T0 + 17_400);
        // The job, its allow-listed metadata, the validation result, the instance deleted.
        let jobs = w.restore_jobs(T0 + 20_000);
        assert_eq!(report["RestoreJobId"], json!(jobs[0].id));
        let m = &jobs[0].metadata;
        assert_eq!(m["IamInstanceProfileName"], "");
        assert_eq!(m["SecurityGroupIds"], "[\"sg-0123456789abcdef0\"]");
        assert_eq!(m["RequireIMDSv2"], "true");
        assert!(m["BlockDeviceMappings"].contains("\"DeleteOnTermination\":true"));
        assert!(!m.contains_key("KeyName") && !m.contains_key("NetworkInterfaces"));
        assert_eq!(jobs[0].validation_status.as_deref(), Some("SUCCESSFUL"));
        let instances = w.restored_instances(T0 + 20_000);
        assert_eq!(instances[0].state, "terminated");
        assert!(w.tagged_restored(T0 + 20_000).is_empty());
        assert_eq!(
            states(&mut w, &arn, T0 + 20_000),
            [
                "Validate",
                "DescribeRecoveryPoint",
                "CheckRecoveryPoint",
                "GetRestoreMetadata",
                "StartRestoreJob",
                "WaitForRestoreJob",
                "DescribeRestoreJob",
                "RestoreJobDone",
                "TagRestored",
                "WaitForInstance",
                "DescribeInstanceStatus",
                "InstanceReady",
                "AfterStatusChecks",
                "SendValidation",
                "ValidationWait",
                "GetValidation",
                "ValidationDone",
                "ReportValidation",
                "KeepRestored",
                "TerminateRestored",
                "Report",
                "Passed",
            ]
        );
        // The daemon finds RestoreJobId in the startRestoreJob task's TaskSucceeded event.
        let (events, _) = w
            .execution_history(&arn, 1000, false, None, T0 + 20_000)
            .unwrap();
        let started = events
            .iter()
            .find(|e| {
                e["type"] == "TaskSucceeded"
                    && e["taskSucceededEventDetails"]["resource"] == "startRestoreJob"
            })
            .unwrap();
        let out: Value = serde_json::from_str(
            started["taskSucceededEventDetails"]["output"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["RestoreJobId"], json!(jobs[0].id));
        // The same name again: ExecutionAlreadyExists, and StartRestoreJob's token restores once.
        assert!(
            w.start_execution(
                Some(RESTORE),
                Some("web-20261129T100000Z"),
                Some("{}"),
                T0 + 20_000
            )
            .is_err()
        );
    }

    #[test]
    fn failures_are_reported_and_every_restored_instance_is_cleaned_up() {
        let (mut w, rp) = backed_up();
        w.set_command_rules(vec![CommandRule {
            phase: Some("validate".into()),
            status: Some("Failed".into()),
            ..CommandRule::default()
        }]);
        let arn = start(&mut w, "validation-fails", &test_input(&rp), T0 + 10_000);
        let failed = w.describe_execution(&arn, T0 + 30_000).unwrap();
        assert_eq!(failed.error.as_deref(), Some("RestoreTestFailed"));
        let report: Value = serde_json::from_str(failed.cause.as_deref().unwrap()).unwrap();
        assert_eq!(report["Validation"]["Status"], "FAILED");
        assert_eq!(report["Cleanup"]["Status"], "DELETED");
        w.set_command_rules(Vec::new());

        w.set_restore_rules(vec![RestoreRule {
            impaired: true,
            ..RestoreRule::default()
        }]);
        let arn = start(&mut w, "impaired", &test_input(&rp), T0 + 30_000);
        let failed = w.describe_execution(&arn, T0 + 60_000).unwrap();
        let report: Value = serde_json::from_str(failed.cause.as_deref().unwrap()).unwrap();
        assert_eq!(report["StatusChecks"], "impaired");
        assert_eq!(report["Validation"]["Status"], "SKIPPED");
        assert_eq!(report["Cleanup"]["Status"], "DELETED");

        w.set_restore_rules(vec![RestoreRule {
            fail: true,
            leaves_instance: true,
            ..RestoreRule::default()
        }]);
        let arn = start(&mut w, "restore-fails", &test_input(&rp), T0 + 60_000);
        let failed = w.describe_execution(&arn, T0 + 90_000).unwrap();
        let report: Value = serde_json::from_str(failed.cause.as_deref().unwrap()).unwrap();
        assert_eq!(report["RestoreStatus"], "FAILED");
        assert!(
            report["RestoreStatusMessage"]
                .as_str()
                .unwrap()
                .contains("fail")
        );
        assert_eq!(report["Cleanup"]["Status"], "DELETED");
        assert!(states(&mut w, &arn, T0 + 90_000).contains(&"TagFailedRestore".to_string()));
        assert!(
            w.restored_instances(T0 + 90_000).iter().all(|i| !i.alive()),
            "nothing left running"
        );
    }

    #[test]
    fn a_failed_termination_is_reported_and_the_sweep_deletes_the_leftover_after_its_expiry() {
        let (mut w, rp) = backed_up();
        w.set_restore_rules(vec![RestoreRule {
            terminate_failures: 1,
            ..RestoreRule::default()
        }]);
        let mut input = test_input(&rp);
        input["ExpiresAt"] = json!(iso_millis(T0 + 40_000));
        let arn = start(&mut w, "leftover", &input, T0 + 10_000);
        let failed = w.describe_execution(&arn, T0 + 30_000).unwrap();
        let report: Value = serde_json::from_str(failed.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            report["Cleanup"]["Status"], "FAILED",
            "the test itself passed"
        );
        assert!(
            report["Cleanup"]["Error"]
                .as_str()
                .unwrap()
                .starts_with("Ec2.")
        );
        let instance = w.restored_instances(T0 + 30_000)[0].clone();
        assert!(instance.alive());
        let sweep = |w: &mut World, name: &str, at| {
            let i = json!({ "Action": "sweep", "ResourceArn": instance.arn });
            let arn = start(w, name, &i, at);
            w.describe_execution(&arn, at + 1_000).unwrap()
        };
        let early = sweep(&mut w, "sweep-1", T0 + 35_000);
        assert_eq!(early.error.as_deref(), Some("NotExpired"));
        let swept = sweep(&mut w, "sweep-2", T0 + 45_000);
        assert_eq!(swept.status, ExecutionStatus::Succeeded, "{swept:?}");
        assert_eq!(w.restored_instances(T0 + 50_000)[0].state, "terminated");
        let untagged = json!({ "Action": "sweep",
            "ResourceArn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210" });
        let arn = start(&mut w, "sweep-3", &untagged, T0 + 50_000);
        let refused = w.describe_execution(&arn, T0 + 51_000).unwrap();
        assert_eq!(refused.error.as_deref(), Some("NotARestoredResource"));
    }

    #[test]
    fn an_on_demand_restore_is_tagged_and_kept() {
        let (mut w, rp) = backed_up();
        let mut input = test_input(&rp);
        input["Action"] = json!("restore");
        input.as_object_mut().unwrap().remove("ValidateDocument");
        input.as_object_mut().unwrap().remove("ExpiresAt");
        let arn = start(&mut w, "web-restore-0a1b2c3d", &input, T0 + 10_000);
        let done = w.describe_execution(&arn, T0 + 30_000).unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let report: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(report["Cleanup"]["Status"], "KEPT");
        let instance = &w.restored_instances(T0 + 30_000)[0];
        assert!(instance.alive());
        assert_eq!(
            instance.tags["orchestrator:restore"],
            "web-restore-0a1b2c3d"
        );
        assert!(!instance.tags.contains_key("orchestrator:restore-test"));
    }

    #[test]
    fn points_of_other_vaults_or_instances_and_inputs_outside_the_rules_are_refused() {
        let (mut w, rp) = backed_up();
        w.set_copy_rules(vec![CopyRule::default()]);
        let mut other = test_input(&rp);
        other["ResourceArn"] =
            json!("arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210");
        let arn = start(&mut w, "other-instance", &other, T0 + 10_000);
        let refused = w.describe_execution(&arn, T0 + 11_000).unwrap();
        assert_eq!(refused.error.as_deref(), Some("InputRefused"));
        assert!(
            refused
                .cause
                .unwrap()
                .contains("only a COMPLETED EC2 recovery point")
        );
        let mut unknown = test_input(&rp);
        unknown["RecoveryPointArn"] = json!("arn:aws:ec2:us-east-1::image/ami-00000000000000000");
        let arn = start(&mut w, "unknown-point", &unknown, T0 + 10_000);
        let refused = w.describe_execution(&arn, T0 + 11_000).unwrap();
        assert!(
            refused
                .cause
                .unwrap()
                .contains("is not a recovery point of vault orchestrator")
        );
        let mut profile = test_input(&rp);
        profile["KeepInstanceProfile"] = json!(true);
        let arn = start(&mut w, "profile", &profile, T0 + 10_000);
        let refused = w.describe_execution(&arn, T0 + 11_000).unwrap();
        assert!(
            refused
                .cause
                .unwrap()
                .contains("AllowInstanceProfileRestore")
        );
        assert!(
            w.restore_jobs(T0 + 11_000).is_empty(),
            "nothing was restored"
        );
    }
}
