"""The backup machine (BackupStateMachine), run offline: see harness.py for how and what it proves.

Run: .venv-deploy/bin/python -m unittest discover -s deploy/tests -v   (deploy/validate.sh does)
"""

from __future__ import annotations

import json
import re
import unittest

from harness import (ACCOUNT, BACKUP_ROLE, DOCUMENT, DR, DR2, INSTANCE_ID, RECOVERY_POINT, REGION,
                     RESOURCE_ARN, VAULT, AccessDeniedException, Fake, InvalidParameterValueException,
                     ServiceUnavailableException, _parameter_values, definition_json, resolve, run_machine,
                     template)

# Task names the daemon reads from the history (hooks::Phase): exact, nothing else ends so.
PRE_TASKS = {"SendPreHook", "GetPreHook", "SendPreCommand", "GetPreCommand"}
POST_TASKS = {"SendPostHook", "GetPostHook", "SendPostCommand", "GetPostCommand"}


def document(action: str, unit: str = "postgresql.service") -> dict:
    """A document hook as the daemon sends it (SendCommand's shapes)."""
    return {"Name": DOCUMENT, "Version": "$DEFAULT", "Parameters": {"action": [action], "unit": [unit]}}


def full_input(**overrides) -> dict:
    value = {"ResourceArn": RESOURCE_ARN, "Target": "web-1", "ScheduledFor": "2026-11-29T10:00:00Z",
             "Trigger": "schedule", "StartWindowMinutes": 120, "CompleteWindowMinutes": 1440,
             "DeleteAfterDays": 7}
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not None}


def copy_to(*destinations: tuple[str, int]) -> list[dict]:
    """The CopyTo member as the daemon sends it (src/copies.rs)."""
    return [{"DestinationBackupVaultArn": arn, "Lifecycle": {"DeleteAfterDays": days},
             "IdempotencyToken": f"copy-{i}"} for i, (arn, days) in enumerate(destinations)]


def copy_input(*destinations: tuple[str, int], **overrides) -> dict:
    value = {"Action": "copy", "BackupJobId": "job-1", "Target": "web-1", "ResourceArn": RESOURCE_ARN,
             "CopyTo": copy_to(*destinations)}
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not None}


def phases(run) -> list[str]:
    """The hook phase of each state entered, as the daemon reads it (exact task names)."""
    return ["pre" if s in PRE_TASKS else "post" for s in run.entered() if s in PRE_TASKS | POST_TASKS]


class Backup(unittest.TestCase):
    definition = definition_json()
    raw_definition = definition_json(AllowRawCommands="true")

    def run_machine(self, fake, execution_input, **kw):
        return run_machine(fake, execution_input, definition=kw.pop("definition", self.definition), **kw)

    def start_params(self, fake: Fake) -> dict:
        (params,) = fake.params("StartBackupJob")
        return params

    # --- refusals ---------------------------------------------------------------------

    def assert_refused(self, execution_input, member: str, definition=None):
        fake = Fake()
        run = self.run_machine(fake, execution_input, **({"definition": definition} if definition else {}))
        self.assertEqual((run.status, run.error), ("FAILED", "InputRefused"), (execution_input, run.cause))
        self.assertTrue(run.cause.startswith("InputRefused: "), run.cause)
        self.assertIn(member, run.cause)
        self.assertEqual(fake.ops(), [], "refused before any AWS call")
        self.assertEqual(run.entered()[-1], "InputRefused")
        return run

    def test_refusals_name_the_member_and_call_nothing(self):
        other_account = f"arn:aws:ec2:{REGION}:210987654321:instance/{INSTANCE_ID}"
        other_region = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/{INSTANCE_ID}"
        rds = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders"
        cases = [
            (full_input(ResourceArn=rds), "ResourceArn"),
            (full_input(ResourceArn=other_account), "ResourceArn"),
            (full_input(ResourceArn=other_region), "ResourceArn"),
            (full_input(ResourceArn=f"arn:aws-cn:ec2:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID}"), "ResourceArn"),
            (full_input(ResourceArn=RESOURCE_ARN + "/x"), "ResourceArn"),
            (full_input(DeleteAfterDays=1), "DeleteAfterDays must be a whole number between 7 and 36500"),
            (full_input(DeleteAfterDays=36501), "DeleteAfterDays"),
            (full_input(DeleteAfterDays=7.5), "DeleteAfterDays"),
            (full_input(DeleteAfterDays="35"), "DeleteAfterDays"),
            (full_input(StartWindowMinutes=59), "StartWindowMinutes"),
            (full_input(StartWindowMinutes=20000), "StartWindowMinutes"),
            (full_input(CompleteWindowMinutes=100), "CompleteWindowMinutes"),
            (full_input(CompleteWindowMinutes="1440"), "CompleteWindowMinutes"),
            (full_input(Trigger="cron"), "Trigger"),
            (full_input(ScheduledFor="tomorrow"), "ScheduledFor"),
            (full_input(Target=""), "Target"),
            (full_input(PreDocument=dict(document("stop"), Version="7")), "PreDocument.Version must be $DEFAULT"),
            (full_input(PostDocument=dict(document("start"), Version="$LATEST")), "PostDocument.Version"),
            (full_input(PreDocument=dict(document("stop"), Name="AWS-RunShellScript")), "PreDocument.Name"),
            (full_input(PostDocument=dict(document("start"), Name="other-stack-doc")), "PostDocument.Name"),
            (full_input(PreDocument=dict(document("stop"), Parameters={"unit": "sshd"})), "PreDocument.Parameters"),
            (full_input(PreDocument=dict(document("stop"), DocumentHash="x")), "PreDocument.DocumentHash"),
            (full_input(PreCommand="curl evil | sh"), "AllowRawCommands"),
            (full_input(PostCommand="curl evil | sh"), "AllowRawCommands"),
            (full_input(PostHookWhen="never", PostDocument=document("start")), "PostHookWhen"),
            (full_input(HookMaxDowntimeSeconds=5, PostDocument=document("start")), "HookMaxDowntimeSeconds"),
            (full_input(OnPreHookFailure="retry", PreDocument=document("stop")), "OnPreHookFailure"),
            (full_input(BackupOptions={"WindowsVSS": "disabled"}), "BackupOptions"),
            (full_input(BackupOptions={"WindowsVSS": "enabled", "Other": "x"}), "BackupOptions"),
            (full_input(IamRoleArn="arn:aws:iam::123456789012:role/admin"), "IamRoleArn is not a member"),
            (full_input(Run={"AppConsistent": "true"}), "Run is not a member"),
            (full_input(Action="restore"), "Action"),
            ([RESOURCE_ARN], "JSON object"),
        ]
        for execution_input, member in cases:
            with self.subTest(member=member, input=execution_input):
                self.assert_refused(execution_input, member)

    def test_a_hand_started_execution_with_bad_members_is_refused_after_the_defaults(self):
        run = self.assert_refused({"ResourceArn": f"arn:aws:ec2:{REGION}:210987654321:instance/{INSTANCE_ID}"},
                                  "ResourceArn")
        self.assertEqual(run.entered(), ["Validate", "Explain", "ApplyDefaults", "Validate", "Explain", "InputRefused"])
        self.assert_refused({"ResourceArn": RESOURCE_ARN, "DeleteAfterDays": 2}, "DeleteAfterDays")

    def test_retention_bounds_are_stack_parameters(self):
        definition = definition_json(MinRetentionDays="30", MaxRetentionDays="400")
        self.assert_refused(full_input(DeleteAfterDays=29), "between 30 and 400", definition=definition)
        self.assert_refused(full_input(DeleteAfterDays=401), "between 30 and 400", definition=definition)
        fake = Fake()
        run = self.run_machine(fake, full_input(DeleteAfterDays=30), definition=definition)
        self.assertEqual(run.status, "SUCCEEDED", run.cause)

    def test_a_pinned_document_version_is_sent_whatever_the_input_says_it_is(self):
        definition = definition_json(HookDocumentVersion="3")
        self.assert_refused(full_input(PreDocument=document("stop")), "PreDocument.Version must be 3",
                            definition=definition)
        fake = Fake(job_states=["RUNNING"])
        pinned = dict(document("stop"), Version="3")
        run = self.run_machine(fake, full_input(PreDocument=pinned, PostDocument=dict(document("start"), Version="3")),
                               definition=definition)
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual({p["DocumentVersion"] for p in fake.params("SendCommand")}, {"3"})

    def test_the_example_document_takes_only_the_stack_s_units(self):
        """SSM checks a parameter against allowedValues and allowedPattern before running
        anything: checked here the way SSM does, on the document as the stack creates it."""
        t = template()
        params = _parameter_values(t, {"SystemdUnits": "postgresql.service,nginx.service"})
        content = resolve(t["Resources"]["SystemdUnitDocument"]["Properties"]["Content"], params, t)
        unit = content["parameters"]["unit"]

        def ssm_accepts(value: str) -> bool:
            return value in unit["allowedValues"] and re.fullmatch(unit["allowedPattern"], value) is not None

        self.assertEqual(unit["allowedValues"], ["postgresql.service", "nginx.service"])
        self.assertTrue(ssm_accepts("postgresql.service"))
        for refused in ("sshd.service", "amazon-ssm-agent.service", "poweroff.target", "x'; reboot; '"):
            self.assertFalse(ssm_accepts(refused), refused)
        self.assertEqual(content["parameters"]["action"]["allowedValues"], ["stop", "start"])

    # --- plain, VSS, hand-started ---------------------------------------------------------

    def test_plain_backup_is_two_transitions_and_its_output_is_the_start_backup_job_response(self):
        fake = Fake()
        run = self.run_machine(fake, full_input())
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered(), ["Validate", "StartBackupJob"])
        self.assertEqual(fake.ops(), ["StartBackupJob"])
        self.assertEqual(run.output["BackupJobId"], "job-1")
        self.assertEqual(self.start_params(fake), {
            "BackupVaultName": VAULT, "IamRoleArn": BACKUP_ROLE, "ResourceArn": RESOURCE_ARN,
            "IdempotencyToken": "web-1-20261129T100000Z", "StartWindowMinutes": 120,
            "CompleteWindowMinutes": 1440, "Lifecycle": {"DeleteAfterDays": 7},
            "RecoveryPointTags": {"orchestrator:execution": "web-1-20261129T100000Z",
                                  "orchestrator:target": "web-1",
                                  "orchestrator:scheduled-for": "2026-11-29T10:00:00Z",
                                  "orchestrator:trigger": "schedule",
                                  "orchestrator:app-consistent": "false"}})

    def test_an_old_daemon_s_copy_to_in_a_backup_execution_is_ignored(self):
        fake = Fake()
        run = self.run_machine(fake, full_input(CopyTo=copy_to((DR, 90))))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops(), ["StartBackupJob"])
        self.assertNotIn("Copies", run.output)

    def test_hand_started_execution_gets_the_stack_defaults(self):
        fake = Fake()
        run = self.run_machine(fake, {"ResourceArn": RESOURCE_ARN}, name="by-hand")
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered(), ["Validate", "Explain", "ApplyDefaults", "Validate", "StartBackupJob"])
        params = self.start_params(fake)
        self.assertEqual((params["StartWindowMinutes"], params["CompleteWindowMinutes"],
                          params["Lifecycle"]), (60, 10080, {"DeleteAfterDays": 35}))
        tags = params["RecoveryPointTags"]
        self.assertEqual((tags["orchestrator:trigger"], tags["orchestrator:target"]), ("manual", "by-hand"))
        self.assertRegex(tags["orchestrator:scheduled-for"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertEqual(params["IdempotencyToken"], "by-hand")

    def test_windows_vss_is_its_own_two_transition_path(self):
        fake = Fake()
        run = self.run_machine(fake, full_input(BackupOptions={"WindowsVSS": "enabled"}))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered(), ["Validate", "StartVssBackupJob"])
        self.assertEqual(self.start_params(fake)["BackupOptions"], {"WindowsVSS": "enabled"})

    def test_start_backup_job_retries_only_errors_that_can_go_away(self):
        fake = Fake(start_error=ServiceUnavailableException("try later"))
        run = self.run_machine(fake, full_input())
        self.assertEqual((run.status, run.error), ("FAILED", "StartBackupJobFailed"))
        self.assertEqual(fake.ops().count("StartBackupJob"), 4, "3 retries, with the same token")
        for error in (AccessDeniedException("no"), InvalidParameterValueException("bad window")):
            fake = Fake(start_error=error)
            run = self.run_machine(fake, full_input())
            self.assertEqual((run.status, run.error), ("FAILED", "StartBackupJobFailed"))
            self.assertEqual(fake.ops(), ["StartBackupJob"], f"{error}: not retried")
            self.assertEqual(json.loads(run.cause)["Error"], f"Backup.{type(error).__name__}")

    # --- hooks ----------------------------------------------------------------------------

    def test_document_hooks_run_around_the_backup_in_fourteen_transitions(self):
        fake = Fake(job_states=["RUNNING", "COMPLETED"])
        run = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start")))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered(), [
            "Validate", "SendPreHook", "PreHookWait", "GetPreHook", "PreHookDone", "StartBackupJobThenPost",
            "WaitForJob", "DescribeJob", "JobReady", "SendPostHook", "PostHookWait", "GetPostHook",
            "PostHookDone", "Done"])
        self.assertLessEqual(run.transitions, 15)
        sends = fake.params("SendCommand")
        self.assertEqual(sends[0], {
            "DocumentName": DOCUMENT, "DocumentVersion": "$DEFAULT", "InstanceIds": [INSTANCE_ID],
            "Comment": "web-1-20261129T100000Z pre",
            "Parameters": {"action": ["stop"], "unit": ["postgresql.service"]}})
        self.assertEqual(sends[1]["Parameters"], {"action": ["start"], "unit": ["postgresql.service"]})
        self.assertEqual(self.start_params(fake)["RecoveryPointTags"]["orchestrator:app-consistent"], "true")
        self.assertEqual(self.start_params(fake)["BackupOptions"], {})
        self.assertEqual((run.output["BackupJobId"], run.output["AppConsistent"]), ("job-1", "true"))
        self.assertEqual((run.output["PreHook"]["Status"], run.output["PostHook"]["Status"]), ("Success", "Success"))
        self.assertEqual(run.output["BackupJob"], {"State": "RUNNING"})
        self.assertNotIn("DowntimeCapped", run.output)
        self.assertEqual(phases(run), ["pre", "pre", "post", "post"])

    def test_no_other_state_name_ends_like_a_hook_task(self):
        t = template()
        states = t["Resources"]["BackupStateMachine"]["Properties"]["Definition"]["States"]
        for name, state in states.items():
            if name.endswith(("PreHook", "PostHook", "PreCommand", "PostCommand")):
                self.assertIn(name, PRE_TASKS | POST_TASKS)
                self.assertEqual(state["Type"], "Task", name)
        self.assertTrue(PRE_TASKS | POST_TASKS <= set(states))

    def test_a_pre_hook_alone_and_a_post_hook_alone(self):
        fake = Fake()
        run = self.run_machine(fake, full_input(PreDocument=document("stop")))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered(), ["Validate", "SendPreHook", "PreHookWait", "GetPreHook", "PreHookDone",
                                         "StartHookedBackupJob", "Done"])
        self.assertEqual(run.output["AppConsistent"], "true")
        fake = Fake(job_states=["RUNNING"])
        run = self.run_machine(fake, full_input(PostDocument=document("start"), BackupOptions={"WindowsVSS": "enabled"}))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered()[:2], ["Validate", "StartBackupJobThenPost"])
        self.assertEqual(self.start_params(fake)["BackupOptions"], {"WindowsVSS": "enabled"})
        self.assertEqual(self.start_params(fake)["RecoveryPointTags"]["orchestrator:app-consistent"], "false")
        self.assertEqual(phases(run), ["post", "post"])

    def test_raw_commands_run_around_the_backup_when_the_stack_allows_them(self):
        fake = Fake(pre=["InProgress", "Success"], post=["Pending", "Success"],
                    job_states=["CREATED", "RUNNING", "COMPLETED"], invocation_missing_once=True)
        run = self.run_machine(fake, full_input(PreCommand="systemctl stop app", PostCommand="systemctl start app",
                                                PostHookWhen="completed"), definition=self.raw_definition)
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops(), ["SendCommand", "GetCommandInvocation", "GetCommandInvocation",
                                      "GetCommandInvocation", "StartBackupJob", "DescribeBackupJob",
                                      "DescribeBackupJob", "DescribeBackupJob", "SendCommand",
                                      "GetCommandInvocation", "GetCommandInvocation"])
        pre = fake.calls[0][1]
        self.assertEqual(pre["DocumentName"], "AWS-RunShellScript")
        self.assertEqual(pre["InstanceIds"], [INSTANCE_ID])
        self.assertEqual(pre["Parameters"], {"commands": ["systemctl stop app"], "executionTimeout": ["600"]})
        self.assertEqual(fake.calls[8][1]["Parameters"]["commands"], ["systemctl start app"])
        self.assertEqual(run.output["BackupJob"], {"State": "COMPLETED"})
        self.assertTrue({"SendPreCommand", "GetPreCommand", "SendPostCommand", "GetPostCommand"} <= set(run.entered()))
        self.assertEqual(set(phases(run)), {"pre", "post"})

    def test_post_hook_runs_as_soon_as_the_job_has_left_created(self):
        fake = Fake(job_states=["CREATED", "CREATED", "RUNNING", "COMPLETED"])
        run = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start")))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        ops = fake.ops()
        self.assertEqual(ops[ops.index("StartBackupJob") + 1:],
                         ["DescribeBackupJob"] * 3 + ["SendCommand", "GetCommandInvocation"],
                         "the post hook follows the first poll that saw RUNNING, not COMPLETED")
        self.assertEqual(run.output["BackupJob"], {"State": "RUNNING"})
        self.assertNotIn("DowntimeCapped", run.output)
        self.assertEqual(run.transitions, 14 + 2 * 3, "each extra poll round: WaitForJob, DescribeJob, JobReady")

    def test_post_hook_when_completed_waits_for_the_end_of_the_job(self):
        fake = Fake(job_states=["CREATED", "RUNNING", "RUNNING", "COMPLETED"])
        run = self.run_machine(fake, full_input(PostDocument=document("start"), PostHookWhen="completed"))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops().count("DescribeBackupJob"), 4)
        self.assertEqual(run.output["BackupJob"], {"State": "COMPLETED"})

    def test_a_job_stuck_in_created_gets_the_post_hook_at_the_downtime_cap(self):
        fake = Fake(job_states=["CREATED"])
        run = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start"),
                                                HookMaxDowntimeSeconds=30))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops().count("DescribeBackupJob"), 3, "30 s cap / 10 s polls")
        self.assertEqual(fake.ops()[-2:], ["SendCommand", "GetCommandInvocation"])
        self.assertEqual((run.output["DowntimeCapped"], run.output["BackupJob"]["State"]), (True, "CREATED"))

    def test_failed_pre_hook_backs_up_crash_consistent_by_default_and_runs_the_post_hook(self):
        fake = Fake(pre=["Failed"], job_states=["RUNNING"])
        run = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start")))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(self.start_params(fake)["RecoveryPointTags"]["orchestrator:app-consistent"], "false")
        self.assertEqual(fake.ops().count("SendCommand"), 2)
        self.assertEqual((run.output["PreHook"]["Status"], run.output["AppConsistent"]), ("Failed", "false"))

    def test_failed_pre_hook_with_skip_means_no_backup_but_the_post_hook_runs(self):
        fake = Fake(pre=["Failed"])
        run = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start"),
                                                OnPreHookFailure="skip"))
        self.assertEqual((run.status, run.error), ("FAILED", "PreCommandFailed"))
        self.assertIn("Failed", run.cause)
        self.assertIn("skip", run.cause)
        self.assertNotIn("StartBackupJob", fake.ops())
        self.assertEqual([p["Parameters"]["action"] for p in fake.params("SendCommand")], [["stop"], ["start"]])
        fake = Fake(pre=["Failed"])
        run = self.run_machine(fake, full_input(PreDocument=document("stop"), OnPreHookFailure="skip"))
        self.assertEqual((run.status, run.error), ("FAILED", "PreCommandFailed"))
        self.assertEqual(fake.ops(), ["SendCommand", "GetCommandInvocation"])

    def test_failed_backup_job_still_runs_the_post_command(self):
        fake = Fake(job_states=["RUNNING", "FAILED"])
        run = self.run_machine(fake, full_input(PreCommand="true", PostCommand="systemctl start app",
                                                PostHookWhen="completed"), definition=self.raw_definition)
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops()[-2:], ["SendCommand", "GetCommandInvocation"])
        self.assertEqual((run.output["BackupJobId"], run.output["BackupJob"]["State"]), ("job-1", "FAILED"))

    def test_post_hook_runs_when_start_backup_job_fails_and_the_error_is_kept(self):
        for post in (document("start"), None):
            fake = Fake(start_error=InvalidParameterValueException("bad window"))
            run = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=post))
            self.assertEqual((run.status, run.error), ("FAILED", "StartBackupJobFailed"))
            self.assertEqual(json.loads(run.cause)["Error"], "Backup.InvalidParameterValueException")
            self.assertEqual(fake.ops().count("StartBackupJob"), 1, "a parameter error is final")
            if post:
                self.assertEqual(fake.ops()[-2:], ["SendCommand", "GetCommandInvocation"])
                self.assertEqual(phases(run)[-2:], ["post", "post"])

    def test_failed_post_command_is_reported_even_when_the_backup_completed(self):
        fake = Fake(post=["InProgress", "Failed"], job_states=["RUNNING"])
        run = self.run_machine(fake, full_input(PostDocument=document("start")))
        self.assertEqual((run.status, run.error), ("FAILED", "PostCommandFailed"))
        self.assertIn("job-1", run.cause)
        self.assertEqual(fake.ops()[0], "StartBackupJob")

    # --- copy executions ------------------------------------------------------------------

    def test_a_copy_execution_starts_each_copy_from_the_job_s_recovery_point(self):
        fake = Fake(job_states=["COMPLETED"])
        run = self.run_machine(fake, copy_input((DR, 90), (DR2, 365)), name="copy-job-1")
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops(), ["DescribeBackupJob", "StartCopyJob", "StartCopyJob"])
        self.assertNotIn("Wait", {e["type"][:4] for e in run.events}, "no Wait state, no polling")
        calls = sorted(fake.params("StartCopyJob"), key=lambda p: p["IdempotencyToken"])
        self.assertEqual(calls, [
            {"RecoveryPointArn": RECOVERY_POINT, "SourceBackupVaultName": VAULT,
             "DestinationBackupVaultArn": DR, "IamRoleArn": BACKUP_ROLE, "IdempotencyToken": "copy-0",
             "Lifecycle": {"DeleteAfterDays": 90}},
            {"RecoveryPointArn": RECOVERY_POINT, "SourceBackupVaultName": VAULT,
             "DestinationBackupVaultArn": DR2, "IamRoleArn": BACKUP_ROLE, "IdempotencyToken": "copy-1",
             "Lifecycle": {"DeleteAfterDays": 365}}])
        self.assertEqual(run.output, {"Copies": [
            {"DestinationBackupVaultArn": DR, "CopyJobId": "copy-job-copy-0"},
            {"DestinationBackupVaultArn": DR2, "CopyJobId": "copy-job-copy-1"}]})
        self.assertEqual(run.transitions, 4 + 2 * 2)

    def test_a_copy_of_a_job_that_is_not_a_completed_backup_of_this_vault_and_instance_is_refused(self):
        cases = [({"State": "RUNNING"}, "RUNNING"), ({"State": "FAILED"}, "FAILED"),
                 ({"BackupVaultName": "other"}, "vault other"),
                 ({"ResourceArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0fffffffffffffff0"}, "i-0fffffffffffffff0")]
        for source, word in cases:
            with self.subTest(source=source):
                fake = Fake(job_states=["COMPLETED"], source=source)
                run = self.run_machine(fake, copy_input((DR, 90)))
                self.assertEqual((run.status, run.error), ("FAILED", "InputRefused"))
                self.assertIn(word, run.cause)
                self.assertEqual(fake.ops(), ["DescribeBackupJob"])

    def test_a_copy_execution_for_an_unknown_job_fails_without_copying(self):
        fake = Fake()
        run = self.run_machine(fake, copy_input((DR, 90), BackupJobId="job-404"))
        self.assertEqual((run.status, run.error), ("FAILED", "CopySourceUnavailable"))
        self.assertNotIn("StartCopyJob", fake.ops())

    def test_copy_execution_refusals(self):
        cases = [
            (copy_input((DR, 90), CopyTo=[]), "CopyTo"),
            (copy_input((DR, 90), CopyTo="x"), "CopyTo"),
            (copy_input((DR, 90), BackupJobId="job 1; rm"), "BackupJobId"),
            (copy_input((DR, 90), ResourceArn=f"arn:aws:ec2:{REGION}:210987654321:instance/{INSTANCE_ID}"), "ResourceArn"),
            (copy_input((DR, 90), DeleteAfterDays=7), "DeleteAfterDays is not a member of a copy execution"),
            (copy_input((DR, 90), Target=None), "Target"),
        ]
        for execution_input, member in cases:
            with self.subTest(member=member):
                self.assert_refused(execution_input, member)

    def test_each_destination_is_checked_before_its_start_copy_job(self):
        elsewhere = "arn:aws:backup:us-west-2:999999999999:backup-vault:attacker"
        items = copy_to((DR, 90), (elsewhere, 90), (DR, 1), (DR, 40000),
                        ("arn:aws:backup:eu-west-1:210987654321:backup-vault:dr-2", 90))
        items.append({"DestinationBackupVaultArn": "arn:aws:s3:::bucket", "Lifecycle": {"DeleteAfterDays": 90},
                      "IdempotencyToken": "copy-6"})
        items.append({"DestinationBackupVaultArn": DR, "Lifecycle": {"DeleteAfterDays": 90},
                      "IdempotencyToken": "copy-7", "IamRoleArn": "arn:aws:iam::1:role/x"})
        fake = Fake(job_states=["COMPLETED"])
        run = self.run_machine(fake, copy_input(CopyTo=items))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        copies = run.output["Copies"]
        self.assertEqual(copies[0], {"DestinationBackupVaultArn": DR, "CopyJobId": "copy-job-copy-0"})
        self.assertEqual(copies[1]["Error"], "InputRefused")
        self.assertIn("not in this stack parameter CopyDestinationVaultArns", copies[1]["Cause"])
        self.assertIn("Lifecycle", copies[2]["Cause"])
        self.assertIn("between 7 and 36500", copies[3]["Cause"])
        self.assertEqual(copies[4]["CopyJobId"], "copy-job-copy-4", "a prefix ending in * matches")
        self.assertIn("backup vault ARN", copies[5]["Cause"])
        self.assertIn("only DestinationBackupVaultArn", copies[6]["Cause"])
        self.assertEqual([p["IdempotencyToken"] for p in fake.params("StartCopyJob")], ["copy-0", "copy-4"])

    def test_a_refused_start_copy_job_is_that_destination_s_result_and_is_not_retried(self):
        fake = Fake(job_states=["COMPLETED"], copy_errors={
            DR2: AccessDeniedException("not authorized to perform backup:CopyIntoBackupVault")})
        run = self.run_machine(fake, copy_input((DR, 90), (DR2, 365)))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        refused = [p for p in fake.params("StartCopyJob") if p["DestinationBackupVaultArn"] == DR2]
        self.assertEqual(len(refused), 1, "an access error does not go away: no retry")
        copies = run.output["Copies"]
        self.assertEqual(copies[0], {"DestinationBackupVaultArn": DR, "CopyJobId": "copy-job-copy-0"})
        self.assertEqual((copies[1]["DestinationBackupVaultArn"], copies[1]["Error"]),
                         (DR2, "Backup.AccessDeniedException"))
        self.assertIn("CopyIntoBackupVault", copies[1]["Cause"])

    def test_a_start_copy_job_that_can_succeed_later_is_retried_with_its_token(self):
        fake = Fake(job_states=["COMPLETED"], copy_errors={DR: ServiceUnavailableException("busy")})
        run = self.run_machine(fake, copy_input((DR, 90)))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual([p["IdempotencyToken"] for p in fake.params("StartCopyJob")], ["copy-0"] * 4)
        self.assertEqual(run.output["Copies"][0]["Error"], "Backup.ServiceUnavailableException")

    def test_without_copy_destinations_every_copy_is_refused_by_the_machine(self):
        fake = Fake(job_states=["COMPLETED"])
        run = self.run_machine(fake, copy_input((DR, 90)), definition=definition_json(CopyDestinationVaultArns=""))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertNotIn("StartCopyJob", fake.ops())
        self.assertIn("CopyDestinationVaultArns", run.output["Copies"][0]["Cause"])


if __name__ == "__main__":
    unittest.main()
