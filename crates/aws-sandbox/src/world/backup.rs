//! The backup machine (v2) as the template runs it, for one execution at a time: `Validate`
//! judges the whole input first (an execution started by hand gets the stack's defaults and is
//! judged again), then either a backup (the pre hook, StartBackupJob, the post hook when the
//! job polls let it go) or a copy execution (`Action: copy`: DescribeBackupJob of the job, then
//! one StartCopyJob per `CopyTo` element, each element judged first).

use std::cmp::Reverse;

use serde_json::{Value, json};

use super::super::basics::{Millis, iso_millis};
use super::super::copy::{CopyJobs, CopyRequest};
use super::super::jobs::{JobRequest, JobState};
use super::super::ssm::{self, HookRun, Hooks};
use super::super::validate::{
    backup_input_problem, copy_item_problem, misses_defaults, with_defaults,
};
use super::runs::{CopyItem, CopyRun, CopySource, ItemStep, Judged};
use super::{Run, World};

/// The role the modelled machine passes to AWS Backup (the stack's `BackupRole`).
pub(crate) fn backup_role(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/service-role/AWSBackupDefaultServiceRole")
}

impl World {
    /// `Validate` (with `Explain` and `ApplyDefaults`) of execution `index`'s input.
    pub(super) fn judge_backup(&self, index: u32) -> Judged {
        let e = &self.executions[index as usize];
        let raw: Value = serde_json::from_str(&e.input).unwrap_or(Value::Null);
        let rules = self.rules(e.machine);
        let problem = backup_input_problem(&raw, &rules);
        if problem.is_some() && misses_defaults(&raw) {
            let start = iso_millis(e.start);
            let filled = with_defaults(&raw, &e.name, &start, &self.config.stack);
            let problem = backup_input_problem(&filled, &rules);
            return Judged {
                input: filled,
                defaulted: true,
                problem,
            };
        }
        Judged {
            input: raw,
            defaulted: false,
            problem,
        }
    }

    /// What a new execution of the backup machine does first, at `first`: refused at once, or
    /// its pre hook sent (the job is requested once the hook has ended), or its first task due.
    pub(super) fn begin_backup(&mut self, index: u32, first: Millis) {
        let judged = self.judge_backup(index);
        if let Some(cause) = judged.problem {
            self.executions[index as usize].run = Run::Refused {
                at: first,
                cause: cause.into(),
            };
            return;
        }
        let mut task_at = first;
        if !judged.is_copy() {
            let stack = &self.config.stack;
            let hooks = Hooks::read(
                &judged.input,
                &stack.hook_document_version,
                stack.command_timeout_seconds,
            );
            if hooks.any() {
                let e = &self.executions[index as usize];
                let instance = instance_id(&judged.input);
                let pre = hooks
                    .pre
                    .as_ref()
                    .map(|p| self.command(&e.name, "pre", p, instance, first));
                task_at = pre.as_ref().map_or(first, |p| p.ended_at_ms);
                self.executions[index as usize].hooks = Some(Box::new(HookRun {
                    request: hooks,
                    pre,
                    post: None,
                    job_state_seen: None,
                    capped: false,
                }));
            }
        }
        self.executions[index as usize].task_at = task_at;
        self.due.push(Reverse((task_at, index)));
    }

    /// The execution's first task after the pre hook, at `at`.
    pub(super) fn run_backup_task(&mut self, index: u32, at: Millis) {
        let judged = self.judge_backup(index);
        if judged.is_copy() {
            let run = self.run_copy(index, &judged.input, at);
            self.executions[index as usize].run = Run::Copy(Box::new(run));
            return;
        }
        let mut hook = self.executions[index as usize].hooks.take();
        let run = match hook.as_deref_mut() {
            Some(h)
                if h.pre.as_ref().is_some_and(|p| p.status != "Success")
                    && h.request.skip_on_pre_failure =>
            {
                self.skip_backup(index, h, at)
            }
            h => self.start_backup(index, &judged.input, h, at),
        };
        let execution = &mut self.executions[index as usize];
        execution.hooks = hook;
        execution.run = run;
    }

    /// A failed pre hook with `OnPreHookFailure = skip`: no backup; the post hook still runs,
    /// then the execution fails with PreCommandFailed (`BackupSkipped`).
    fn skip_backup(&self, index: u32, h: &mut HookRun, at: Millis) -> Run {
        let name = &self.executions[index as usize].name;
        let pre = h.pre.as_ref().expect("a failed pre hook");
        let cause = format!(
            "pre hook failed: {}; OnPreHookFailure = skip: no backup was started",
            pre.invocation()
        );
        let instance = pre.instance_id.clone();
        h.post = h
            .request
            .post
            .clone()
            .map(|p| self.command(name, "post", &p, &instance, at));
        Run::Failed {
            at: h.post.as_ref().map_or(at, |p| p.ended_at_ms),
            error: "PreCommandFailed",
            cause: cause.into(),
        }
    }

    /// The StartBackupJob task (whichever variant) with the validated input, then the post
    /// hook it leads to.
    fn start_backup(
        &mut self,
        index: u32,
        input: &Value,
        hook: Option<&mut HookRun>,
        at: Millis,
    ) -> Run {
        let name = self.executions[index as usize].name.clone();
        let resource = input["ResourceArn"].as_str().unwrap_or_default();
        let request = JobRequest {
            backup_vault_name: Some(self.config.stack.backup_vault_name.clone()),
            resource_arn: Some(resource.to_string()),
            iam_role_arn: Some(backup_role(&self.config.account_id)),
            idempotency_token: Some(name.to_string()),
            start_window_minutes: input["StartWindowMinutes"].as_u64(),
            backup_options: input.get("BackupOptions").cloned(),
            delete_after_days: input["DeleteAfterDays"].as_u64(),
        };
        let (job, _) = self.jobs.create(request, Some(&name), at);
        let (stop, post_failure) = match hook {
            Some(h) => self.post_hook(&name, h, instance_id(input), job, at),
            None => (at, None),
        };
        Run::Job {
            job,
            stop,
            post_failure,
        }
    }

    /// Sends the post hook (if the input has one) when the machine's job polls let it go.
    /// Returns when the execution can close and why it fails, if the hook failed.
    fn post_hook(
        &self,
        name: &str,
        h: &mut HookRun,
        instance: &str,
        job: u32,
        at: Millis,
    ) -> (Millis, Option<Box<str>>) {
        let Some(post) = h.request.post.clone() else {
            return (at, None);
        };
        let times = self.jobs.times(job);
        let (post_at, capped) = ssm::post_hook_time(
            &h.request,
            &self.config.hooks,
            at,
            times.running_from,
            times.ends,
        );
        let sent = self.command(name, "post", &post, instance, post_at);
        h.capped = capped;
        h.job_state_seen = Some(self.jobs.state(job, post_at).as_str());
        let stop = sent.ended_at_ms;
        let failure = (sent.status != "Success").then(|| {
            let invocation = sent.invocation();
            format!(
                "post hook {} on {} ended {}: {} (exit code {}); backup: {}",
                sent.command_id,
                sent.instance_id,
                sent.status,
                invocation["StatusDetails"].as_str().unwrap_or_default(),
                invocation["ResponseCode"],
                self.start_response_for_sfn(job)
            )
            .into()
        });
        h.post = Some(sent);
        (stop, failure)
    }

    /// A copy execution at `at`: DescribeCopySource, CheckCopySource, then StartCopies.
    fn run_copy(&mut self, index: u32, input: &Value, at: Millis) -> CopyRun {
        let id = input["BackupJobId"].as_str().unwrap_or_default();
        let Some(job) = self.jobs.find(id) else {
            let error = json!({
                "Error": "Backup.ResourceNotFoundException",
                "Cause": format!("Cannot find backup job with ID {id}"),
            });
            return CopyRun {
                source: CopySource::Unavailable(error.to_string().into()),
                items: Vec::new(),
            };
        };
        let state = self.jobs.state(job, at);
        let vault = self.jobs.vault(job);
        let resource = self.jobs.resource(job);
        let wanted = input["ResourceArn"].as_str().unwrap_or_default();
        let ours = &self.config.stack.backup_vault_name;
        if state != JobState::Completed || vault != ours || resource != wanted {
            let cause = format!(
                "InputRefused: BackupJobId {id} is {state} in vault {vault} for {resource}; only \
                 a COMPLETED job of vault {ours} for {wanted} is copied"
            );
            return CopyRun {
                source: CopySource::Refused {
                    job,
                    cause: cause.into(),
                },
                items: Vec::new(),
            };
        }
        let list = input["CopyTo"].as_array().map_or(&[][..], Vec::as_slice);
        let problems: Vec<Option<String>> = {
            let rules = self.rules(self.executions[index as usize].machine);
            list.iter().map(|d| copy_item_problem(d, &rules)).collect()
        };
        let items = list
            .iter()
            .zip(problems)
            .map(|(d, problem)| self.copy_item(d, problem, job, at))
            .collect();
        CopyRun {
            source: CopySource::Found(job),
            items,
        }
    }

    /// One Map iteration of StartCopies: the element as `CheckCopyDestination` judged it
    /// (`problem`), then StartCopyJob.
    fn copy_item(&mut self, d: &Value, problem: Option<String>, job: u32, at: Millis) -> CopyItem {
        let destination = d["DestinationBackupVaultArn"].as_str().map(str::to_string);
        if let Some(cause) = problem {
            return CopyItem {
                output: json!({ "DestinationBackupVaultArn": destination, "Error": "InputRefused",
                                "Cause": cause }),
                step: ItemStep::Refused,
            };
        }
        let request = self.copy_request(d, job);
        let result = CopyJobs::check(&request).and_then(|()| self.copy_from_job(job, request, at));
        match result {
            Ok((c, _)) => CopyItem {
                output: json!({ "DestinationBackupVaultArn": destination,
                                "CopyJobId": self.copy_jobs.id_of(c) }),
                step: ItemStep::Started,
            },
            Err(e) => CopyItem {
                output: json!({ "DestinationBackupVaultArn": destination,
                                "Error": format!("Backup.{}", e.code), "Cause": e.message }),
                step: ItemStep::NotStarted,
            },
        }
    }

    /// StartCopyJob's request for element `d` of job `job`'s recovery point.
    pub(super) fn copy_request(&self, d: &Value, job: u32) -> CopyRequest {
        CopyRequest {
            recovery_point_arn: Some(self.jobs.recovery_point_arn(job)),
            source_backup_vault_name: Some(self.config.stack.backup_vault_name.clone()),
            destination_backup_vault_arn: d["DestinationBackupVaultArn"]
                .as_str()
                .map(str::to_string),
            iam_role_arn: Some(backup_role(&self.config.account_id)),
            idempotency_token: d["IdempotencyToken"].as_str().map(str::to_string),
            delete_after_days: d["Lifecycle"]["DeleteAfterDays"].as_i64(),
        }
    }

    /// The output of a backup that SUCCEEDED: the StartBackupJob response, plus (with hooks)
    /// what `Done` merges in: the hook results, the job state seen, AppConsistent.
    pub(super) fn backup_output(&self, index: u32, job: u32) -> String {
        let mut output = self.start_response_for_sfn(job);
        if let Some(h) = self.executions[index as usize].hooks.as_deref() {
            let consistent = h.pre.as_ref().is_some_and(|p| p.status == "Success");
            output["AppConsistent"] = json!(if consistent { "true" } else { "false" });
            if let Some(p) = &h.pre {
                output["PreHook"] = p.invocation();
            }
            if let Some(p) = &h.post {
                output["PostHook"] = p.invocation();
            }
            if let Some(state) = h.job_state_seen {
                output["BackupJob"] = json!({ "State": state });
            }
            if h.capped {
                output["DowntimeCapped"] = json!(true);
            }
        }
        output.to_string()
    }

    /// The output of a copy execution: `{"Copies": [...]}`.
    pub(super) fn copy_output(run: &CopyRun) -> String {
        let copies: Vec<&Value> = run.items.iter().map(|i| &i.output).collect();
        json!({ "Copies": copies }).to_string()
    }

    /// The StartBackupJob response as Step Functions' SDK integrations render it (ISO dates).
    pub(super) fn start_response_for_sfn(&self, job: u32) -> Value {
        let mut response = json!({
            "BackupJobId": self.jobs.id(job),
            "CreationDate": iso_millis(self.jobs.created(job)),
            "IsParent": false,
        });
        if let Some(arn) = self.jobs.start_response_recovery_point(job) {
            response["RecoveryPointArn"] = json!(arn);
        }
        response
    }
}

/// The instance id of an input's `ResourceArn` (what SendCommand targets).
pub(crate) fn instance_id(input: &Value) -> &str {
    input["ResourceArn"]
        .as_str()
        .and_then(|a| a.rsplit_once('/'))
        .map_or("", |(_, id)| id)
}
