"""The restore machine (RestoreStateMachine), run offline: see harness.py for how and what it proves.

Run: .venv-deploy/bin/python -m unittest discover -s deploy/tests -v   (deploy/validate.sh does)
"""

from __future__ import annotations

import json
import unittest

from harness import (ACCOUNT, INSTANCE_ID, RECOVERY_POINT, REGION, RESOURCE_ARN, RESTORE_ROLE, VAULT,
                     AccessDeniedException, Fake, InvalidRequestException, ResourceNotFoundException,
                     UnauthorizedOperation, definition_json, run_machine)

RESTORED = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0ffffffffffffffff"
NAME = "web-1-20261206T030000Z"


def test_input(**overrides) -> dict:
    value = {"Action": "test", "Target": "web-1", "ResourceArn": RESOURCE_ARN, "RecoveryPointArn": RECOVERY_POINT,
             "InstanceType": "t3.micro", "SubnetId": "subnet-0bbbbbbbbbbbbbbbb",
             "SecurityGroupIds": ["sg-0bbbbbbbbbbbbbbbb", "sg-0cccccccccccccccc"], "KeepInstanceProfile": False,
             "ScheduledFor": "2026-12-06T03:00:00Z", "ExpiresAt": "2026-12-06T05:00:00Z",
             "MaxRestoreSeconds": 3600, "KeepSeconds": 0,
             "ValidateDocument": {"Name": "orchestrator-check-postgres", "Parameters": {"query": ["select 1"]}}}
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not None}


def restore_input(**overrides) -> dict:
    return test_input(**{"Action": "restore", "ExpiresAt": None, "KeepSeconds": None, "ValidateDocument": None,
                         **overrides})


# The fake's restore job is RUNNING at the first poll, COMPLETED at the second; the instance is
# pending, then running with both checks ok: two rounds of each loop.
TEST_PATH = ["Validate", "DescribeRecoveryPoint", "CheckRecoveryPoint", "GetRestoreMetadata", "StartRestoreJob",
             "WaitForRestoreJob", "DescribeRestoreJob", "RestoreJobDone",
             "WaitForRestoreJob", "DescribeRestoreJob", "RestoreJobDone", "TagRestored", "WaitForInstance",
             "DescribeInstanceStatus", "InstanceReady"]


class Restore(unittest.TestCase):
    definition = definition_json("RestoreStateMachine")

    def run_machine(self, fake, execution_input, name=NAME, definition=None):
        return run_machine(fake, execution_input, name=name, machine="RestoreStateMachine",
                           definition=definition or self.definition)

    def report(self, run) -> dict:
        return run.output if run.status == "SUCCEEDED" else json.loads(run.cause)

    def assert_cleaned_up(self, fake, run):
        (terminate,) = fake.params("TerminateInstances")
        self.assertEqual(terminate, {"InstanceIds": ["i-0ffffffffffffffff"]})
        self.assertEqual(self.report(run)["Cleanup"], {"Status": "DELETED", "Error": None})
        self.assertEqual(run.entered()[-3:-1], ["TerminateRestored", "Report"])

    # --- refusals -----------------------------------------------------------------------

    def assert_refused(self, execution_input, member, definition=None):
        fake = Fake()
        run = self.run_machine(fake, execution_input, definition=definition)
        self.assertEqual((run.status, run.error), ("FAILED", "InputRefused"), (execution_input, run.cause))
        self.assertIn(member, run.cause)
        self.assertEqual(fake.ops(), [], "refused before any AWS call")

    def test_refusals_name_the_member_and_call_nothing(self):
        other_account = f"arn:aws:ec2:{REGION}:210987654321:instance/{INSTANCE_ID}"
        cases = [
            (test_input(UserData="IyEvYmluL3NoCmN1cmwgZXZpbA=="), "UserData is not a member"),
            (test_input(IamInstanceProfileName="admin"), "IamInstanceProfileName is not a member"),
            (test_input(Metadata={"UserData": "x"}), "Metadata is not a member"),
            (test_input(KeyName="mine"), "KeyName is not a member"),
            (test_input(IamRoleArn="arn:aws:iam::210987654321:role/x"), "IamRoleArn is not a member"),
            (test_input(KeepInstanceProfile=True), "AllowInstanceProfileRestore"),
            (test_input(KeepInstanceProfile="yes"), "KeepInstanceProfile"),
            (test_input(ResourceArn=other_account), "ResourceArn"),
            (test_input(RecoveryPointArn="arn:aws:ec2:eu-west-1::image/ami-0123456789abcdef0"), "RecoveryPointArn"),
            (test_input(RecoveryPointArn=f"arn:aws:backup:{REGION}:210987654321:recovery-point:x"), "RecoveryPointArn"),
            (test_input(SubnetId="subnet-0bbbbbbbbbbbbbbbb; x"), "SubnetId"),
            (test_input(SecurityGroupIds="sg-0bbbbbbbbbbbbbbbb"), "SecurityGroupIds"),
            (test_input(SecurityGroupIds=[]), "SecurityGroupIds"),
            (test_input(InstanceType="../x"), "InstanceType"),
            (test_input(ExpiresAt=None), "ExpiresAt"),
            (test_input(MaxRestoreSeconds=10), "MaxRestoreSeconds"),
            (test_input(KeepSeconds=-1), "KeepSeconds"),
            (test_input(ValidateDocument={"Name": "AWS-RunShellScript", "Parameters": {}}), "ValidateDocument.Name"),
            (test_input(ValidateDocument={"Name": "orchestrator-x", "Parameters": {"c": "rm"}}), "ValidateDocument.Parameters"),
            (restore_input(ValidateDocument={"Name": "orchestrator-x", "Parameters": {}}), "restore tests"),
            (test_input(Action="delete"), "Action"),
            ({"Action": "sweep", "ResourceArn": other_account}, "ResourceArn"),
            ({"Action": "sweep", "ResourceArn": RESOURCE_ARN, "Force": True}, "Force is not a member"),
        ]
        for execution_input, member in cases:
            with self.subTest(member=member):
                self.assert_refused(execution_input, member)

    def test_a_recovery_point_of_another_vault_or_account_is_refused_before_any_restore(self):
        fake = Fake(recovery_point_error=AccessDeniedException("not in this vault"))
        run = self.run_machine(fake, test_input())
        self.assertEqual((run.status, run.error), ("FAILED", "InputRefused"))
        self.assertIn(f"is not a recovery point of vault {VAULT}", run.cause)
        self.assertEqual(fake.ops(), ["DescribeRecoveryPoint"])
        self.assertEqual(fake.params("DescribeRecoveryPoint")[0]["BackupVaultName"], VAULT)
        for rp, word in (({"ResourceType": "RDS"}, "RDS"), ({"Status": "PARTIAL"}, "PARTIAL"),
                         ({"ResourceArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0999999999999999a"}, "i-0999")):
            fake = Fake(recovery_point=rp)
            run = self.run_machine(fake, test_input())
            self.assertEqual((run.status, run.error), ("FAILED", "InputRefused"), rp)
            self.assertIn(word, run.cause)
            self.assertEqual(fake.ops(), ["DescribeRecoveryPoint"])

    # --- restore tests ------------------------------------------------------------------

    def test_a_restore_test_restores_checks_validates_and_deletes(self):
        fake = Fake()
        run = self.run_machine(fake, test_input())
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered(), TEST_PATH + [
            "WaitForInstance", "DescribeInstanceStatus", "InstanceReady", "AfterStatusChecks", "SendValidation",
            "ValidationWait", "GetValidation", "ValidationDone", "ReportValidation", "KeepRestored",
            "TerminateRestored", "Report", "Passed"])
        (start,) = fake.params("StartRestoreJob")
        metadata = start.pop("Metadata")
        self.assertEqual(start, {"RecoveryPointArn": RECOVERY_POINT, "IamRoleArn": RESTORE_ROLE,
                                 "IdempotencyToken": NAME, "ResourceType": "EC2",
                                 "CopySourceTagsToRestoredResource": False})
        self.assertEqual(metadata, {
            "InstanceType": "t3.micro", "SubnetId": "subnet-0bbbbbbbbbbbbbbbb",
            "SecurityGroupIds": '["sg-0bbbbbbbbbbbbbbbb","sg-0cccccccccccccccc"]',
            "IamInstanceProfileName": "", "RequireIMDSv2": "true", "DisableApiTermination": "false",
            "BlockDeviceMappings": '[{"DeviceName":"/dev/xvda","Ebs":{"VolumeSize":8,"VolumeType":"gp3","DeleteOnTermination":true}}]'},
            "allow-listed keys only: no UserData, KeyName, NetworkInterfaces or Placement of the original")
        (tags,) = fake.params("CreateTags")
        self.assertEqual(tags, {"Resources": ["i-0ffffffffffffffff"], "Tags": [
            {"Key": "orchestrator:restore-test", "Value": NAME},
            {"Key": "orchestrator:restore-expires", "Value": "2026-12-06T05:00:00Z"},
            {"Key": "orchestrator:target", "Value": "web-1"}]})
        (send,) = fake.params("SendCommand")
        self.assertEqual(send, {"DocumentName": "orchestrator-check-postgres", "DocumentVersion": "$DEFAULT",
                                "Parameters": {"query": ["select 1"]}, "InstanceIds": ["i-0ffffffffffffffff"],
                                "Comment": f"{NAME} validate"})
        (put,) = fake.params("PutRestoreValidationResult")
        self.assertEqual((put["RestoreJobId"], put["ValidationStatus"]), ("restore-1", "SUCCESSFUL"))
        self.assert_cleaned_up(fake, run)
        out = run.output
        self.assertEqual({k: out[k] for k in ("Action", "RestoreJobId", "RecoveryPointArn", "CreatedResourceArn",
                                              "RestoreStatus", "StatusChecks", "ValidationReported")},
                         {"Action": "test", "RestoreJobId": "restore-1", "RecoveryPointArn": RECOVERY_POINT,
                          "CreatedResourceArn": RESTORED, "RestoreStatus": "COMPLETED", "StatusChecks": "passed",
                          "ValidationReported": True})
        self.assertEqual(out["Validation"]["Status"], "SUCCESSFUL")
        self.assertRegex(out["Validation"]["CommandId"], "validate")
        for stamp in ("RestoreRequestedAt", "InstanceRunningAt"):
            self.assertRegex(out[stamp], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
        self.assertLessEqual(out["RestoreRequestedAt"], out["InstanceRunningAt"])

    def test_the_original_instance_profile_only_when_kept_and_allowed(self):
        fake = Fake()
        run = self.run_machine(fake, test_input(KeepInstanceProfile=True),
                               definition=definition_json("RestoreStateMachine", AllowInstanceProfileRestore="true"))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.params("StartRestoreJob")[0]["Metadata"]["IamInstanceProfileName"], "web-profile")

    def test_a_failed_validation_fails_the_test_and_still_deletes(self):
        fake = Fake(validate=["InProgress", "Failed"])
        run = self.run_machine(fake, test_input())
        self.assertEqual((run.status, run.error), ("FAILED", "RestoreTestFailed"))
        report = self.report(run)
        self.assertEqual(report["Validation"]["Status"], "FAILED")
        self.assertIn("boom", report["Validation"]["Message"])
        self.assertEqual(fake.params("PutRestoreValidationResult")[0]["ValidationStatus"], "FAILED")
        self.assert_cleaned_up(fake, run)

    def test_a_refused_validation_report_is_recorded_not_fatal(self):
        fake = Fake(validation_report_error=InvalidRequestException("not a restore testing job"))
        run = self.run_machine(fake, test_input())
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertIs(run.output["ValidationReported"], False)
        self.assert_cleaned_up(fake, run)

    def test_without_a_validation_document_it_is_skipped(self):
        fake = Fake()
        run = self.run_machine(fake, test_input(ValidateDocument=None, KeepSeconds=None))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertNotIn("SendCommand", fake.ops())
        self.assertNotIn("PutRestoreValidationResult", fake.ops())
        self.assertEqual(run.output["Validation"]["Status"], "SKIPPED")
        self.assert_cleaned_up(fake, run)

    def test_a_failed_restore_job_is_reported_and_what_it_left_is_deleted(self):
        fake = Fake(restore_statuses=["RUNNING", "FAILED"])
        run = self.run_machine(fake, test_input())
        self.assertEqual((run.status, run.error), ("FAILED", "RestoreTestFailed"))
        report = self.report(run)
        self.assertEqual((report["RestoreStatus"], report["RestoreStatusMessage"]), ("FAILED", "no capacity"))
        self.assertEqual(report["Validation"]["Status"], "SKIPPED")
        self.assertIn("TagFailedRestore", run.entered())
        self.assert_cleaned_up(fake, run)
        fake = Fake(restore_statuses=["ABORTED"], restore_created=False)
        run = self.run_machine(fake, test_input())
        self.assertEqual((run.status, run.error), ("FAILED", "RestoreTestFailed"))
        self.assertEqual(self.report(run)["Cleanup"], {"Status": "NONE", "Error": None})
        self.assertNotIn("TerminateInstances", fake.ops())

    def test_an_impaired_instance_fails_the_test_and_is_deleted_without_validation(self):
        fake = Fake(instance_statuses=[("running", "initializing", "initializing"), ("running", "impaired", "ok")])
        run = self.run_machine(fake, test_input())
        self.assertEqual((run.status, run.error), ("FAILED", "RestoreTestFailed"))
        report = self.report(run)
        self.assertEqual(report["StatusChecks"], "impaired")
        self.assertEqual(report["Validation"]["Status"], "SKIPPED")
        self.assertNotIn("SendCommand", fake.ops())
        self.assertIsNotNone(report["InstanceRunningAt"], "seen running before the checks failed")
        self.assert_cleaned_up(fake, run)

    def test_status_checks_that_take_longer_than_max_restore_seconds_time_out(self):
        fake = Fake(instance_statuses=[("pending", "initializing", "initializing")])
        definition = definition_json("RestoreStateMachine")
        # The waits are 0 s here: give the clock something to pass (60 s minimum, so compare
        # against a request time in the past by starting with a restore job that is late).
        run = self.run_machine(fake, test_input(MaxRestoreSeconds=60), definition=definition.replace(
            "$toMillis($states.input.Restore.RequestedAt) + $states.input.MaxRestoreSeconds * 1000",
            "$toMillis($states.input.Restore.RequestedAt) + $states.input.MaxRestoreSeconds - 59"))
        self.assertEqual((run.status, run.error), ("FAILED", "RestoreTestFailed"))
        self.assertEqual(self.report(run)["StatusChecks"], "timed-out")
        self.assert_cleaned_up(fake, run)

    def test_a_termination_that_fails_once_is_retried_and_a_lasting_failure_is_reported(self):
        fake = Fake(terminate_errors=[UnauthorizedOperation("throttled once")])
        run = self.run_machine(fake, test_input(ValidateDocument=None))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops().count("TerminateInstances"), 2)
        self.assertEqual(run.output["Cleanup"]["Status"], "DELETED")
        fake = Fake(terminate_errors=[UnauthorizedOperation("denied")] * 7)
        run = self.run_machine(fake, test_input(ValidateDocument=None))
        self.assertEqual(run.status, "SUCCEEDED", "the restore test passed; the cleanup failure is its own field")
        self.assertEqual(run.output["Cleanup"]["Status"], "FAILED")
        self.assertIn("denied", run.output["Cleanup"]["Error"])

    def test_keep_seconds_waits_before_the_deletion(self):
        fake = Fake()
        run = self.run_machine(fake, test_input(KeepSeconds=30, ValidateDocument=None))
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(run.entered()[-4:], ["KeepRestored", "TerminateRestored", "Report", "Passed"])

    # --- on-demand restore --------------------------------------------------------------

    def test_an_on_demand_restore_is_tagged_checked_and_kept(self):
        fake = Fake()
        run = self.run_machine(fake, restore_input(), name="web-1-restore-0a1b2c3d")
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertNotIn("TerminateInstances", fake.ops())
        self.assertNotIn("SendCommand", fake.ops())
        (tags,) = fake.params("CreateTags")
        self.assertEqual(tags["Tags"], [{"Key": "orchestrator:restore", "Value": "web-1-restore-0a1b2c3d"},
                                        {"Key": "orchestrator:target", "Value": "web-1"}])
        self.assertEqual(run.output["Cleanup"], {"Status": "KEPT", "Error": None})
        self.assertEqual((run.output["StatusChecks"], run.output["CreatedResourceArn"]), ("passed", RESTORED))

    def test_a_failed_on_demand_restore_is_restore_failed(self):
        fake = Fake(restore_statuses=["FAILED"], restore_created=False)
        run = self.run_machine(fake, restore_input())
        self.assertEqual((run.status, run.error), ("FAILED", "RestoreFailed"))
        self.assertEqual(json.loads(run.cause)["RestoreStatus"], "FAILED")

    # --- sweep --------------------------------------------------------------------------

    def sweep(self, **script):
        fake = Fake(**script)
        run = self.run_machine(fake, {"Action": "sweep", "ResourceArn": RESTORED},
                               name="sweep-i-0ffffffffffffffff-202612061000")
        return fake, run

    def test_the_sweep_deletes_an_expired_restore_test_instance(self):
        fake, run = self.sweep(instance_tags={"orchestrator:restore-test": NAME,
                                              "orchestrator:restore-expires": "2026-01-01T00:00:00Z"})
        self.assertEqual(run.status, "SUCCEEDED", run.cause)
        self.assertEqual(fake.ops(), ["DescribeInstances", "DescribeRecoveryPoint", "TerminateInstances"])
        self.assertEqual(fake.params("DescribeRecoveryPoint")[0],
                         {"BackupVaultName": VAULT, "RecoveryPointArn": f"arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0"})
        self.assertEqual(run.output, {"CreatedResourceArn": RESTORED, "Cleanup": {"Status": "DELETED", "Error": None}})

    def test_the_sweep_refuses_untagged_unexpired_and_foreign_instances(self):
        cases = [
            ({}, {}, "NotARestoredResource"),
            ({"instance_tags": {"orchestrator:restore-expires": "2026-01-01T00:00:00Z"}}, {}, "NotARestoredResource"),
            ({"instance_tags": {"orchestrator:restore": "web-1-restore-0a1b2c3d"}}, {}, "NotARestoredResource"),
            ({"instance_tags": {"orchestrator:restore-test": NAME, "orchestrator:restore-expires": "2999-01-01T00:00:00Z"}},
             {}, "NotExpired"),
            ({"instance_tags": {"orchestrator:restore-test": NAME, "orchestrator:restore-expires": "soon"}}, {}, "NotExpired"),
            ({"instance_tags": {"orchestrator:restore-test": NAME, "orchestrator:restore-expires": "2026-01-01T00:00:00Z"},
              "recovery_point_error": ResourceNotFoundException("not a recovery point")}, {}, "NotARestoredResource"),
        ]
        for script, _, error in cases:
            with self.subTest(script=script):
                fake, run = self.sweep(**script)
                self.assertEqual((run.status, run.error), ("FAILED", error), run.cause)
                self.assertNotIn("TerminateInstances", fake.ops())


if __name__ == "__main__":
    unittest.main()
