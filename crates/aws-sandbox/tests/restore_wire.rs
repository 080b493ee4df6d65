//! The restore side as the real AWS SDK clients see it over HTTP: recovery points, their
//! restore metadata, restore jobs and validation results through `aws-sdk-backup`, and the
//! modelled restore machine through `aws-sdk-sfn`.

use std::time::{Duration, Instant};

use aws_sandbox::{RestoreSettings, Sandbox, SandboxConfig};
use aws_sdk_backup::types::{RestoreJobStatus, RestoreValidationStatus};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BACKUP_SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-backup";
const RESTORE_SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-restore";
const WEB: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
const ROLE: &str = "arn:aws:iam::123456789012:role/service-role/AWSBackupDefaultServiceRole";
const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";

/// Every phase short, the restore machine's polls too.
fn quick() -> SandboxConfig {
    SandboxConfig {
        execution_delay: Duration::from_millis(30),
        job_pending: Duration::from_millis(100),
        job_running: Duration::from_millis(200),
        copy_pending: Duration::from_millis(50),
        copy_running: Duration::from_millis(100),
        restore: RestoreSettings {
            job_pending: Duration::from_millis(100),
            job_running: Duration::from_millis(200),
            instance_pending: Duration::from_millis(100),
            status_checks: Duration::from_millis(100),
            shutting_down: Duration::from_millis(50),
            job_poll: Duration::from_millis(100),
            instance_poll: Duration::from_millis(50),
            ..RestoreSettings::default()
        },
        ..SandboxConfig::default()
    }
}

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("sandbox starts")
}

fn backup_in(sandbox: &Sandbox, region: &'static str) -> aws_sdk_backup::Client {
    use aws_sdk_backup::config::{Credentials, Region};
    aws_sdk_backup::Client::from_conf(
        aws_sdk_backup::Config::builder()
            .behavior_version_latest()
            .region(Region::new(region))
            .endpoint_url(sandbox.endpoint_url())
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    )
}

fn sfn(sandbox: &Sandbox) -> aws_sdk_sfn::Client {
    use aws_sdk_sfn::config::{Credentials, Region};
    aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(sandbox.endpoint_url())
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    )
}

/// Polls until `done` holds (at most 5 s).
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A backup through the modelled machine, waited for until COMPLETED: its recovery point.
async fn completed_backup(sandbox: &Sandbox) -> String {
    let input = json!({ "ResourceArn": WEB, "Target": "web", "ScheduledFor": "2026-11-29T10:00:00Z",
        "Trigger": "schedule", "StartWindowMinutes": 60, "CompleteWindowMinutes": 10080,
        "DeleteAfterDays": 35 });
    sfn(sandbox)
        .start_execution()
        .state_machine_arn(BACKUP_SM)
        .name("web-20261129T100000Z")
        .input(input.to_string())
        .send()
        .await
        .unwrap();
    until("the backup", async || {
        sandbox
            .jobs()
            .first()
            .is_some_and(|j| j.state == aws_sandbox::JobState::Completed)
    })
    .await;
    sandbox.jobs()[0].recovery_point_arn.clone()
}

/// One raw HTTP/1.1 exchange with the admin surface: (status, JSON body).
async fn admin(sandbox: &Sandbox, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(sandbox.addr()).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

/// One Tagging API call over raw HTTP (no Tagging SDK client among the dev-dependencies).
async fn get_resources(sandbox: &Sandbox, body: &Value) -> Value {
    let mut stream = TcpStream::connect(sandbox.addr()).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\
         X-Amz-Target: ResourceGroupsTaggingAPI_20170126.GetResources\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}

#[tokio::test]
async fn recovery_points_list_describe_and_carry_their_restore_metadata() {
    let sandbox = start(quick()).await;
    let client = backup_in(&sandbox, "us-east-1");
    let rp = completed_backup(&sandbox).await;
    assert!(rp.starts_with("arn:aws:ec2:us-east-1::image/ami-"));

    let by_resource = client
        .list_recovery_points_by_resource()
        .resource_arn(WEB)
        .send()
        .await
        .unwrap();
    let points = by_resource.recovery_points();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].recovery_point_arn(), Some(rp.as_str()));
    assert_eq!(points[0].backup_vault_name(), Some("orchestrator"));
    assert_eq!(points[0].status().map(|s| s.as_str()), Some("COMPLETED"));

    let by_vault = client
        .list_recovery_points_by_backup_vault()
        .backup_vault_name("orchestrator")
        .by_resource_arn(WEB)
        .send()
        .await
        .unwrap();
    let p = &by_vault.recovery_points()[0];
    assert_eq!(p.resource_arn(), Some(WEB));
    assert_eq!(p.resource_type(), Some("EC2"));
    assert_eq!(p.lifecycle().and_then(|l| l.delete_after_days()), Some(35));
    assert!(
        p.calculated_lifecycle()
            .and_then(|l| l.delete_at())
            .is_some()
    );
    let none = client
        .list_recovery_points_by_backup_vault()
        .backup_vault_name("orchestrator")
        .by_resource_arn("arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210")
        .send()
        .await
        .unwrap();
    assert!(none.recovery_points().is_empty());

    let described = client
        .describe_recovery_point()
        .backup_vault_name("orchestrator")
        .recovery_point_arn(&rp)
        .send()
        .await
        .unwrap();
    assert_eq!(described.resource_arn(), Some(WEB));
    assert_eq!(described.status().map(|s| s.as_str()), Some("COMPLETED"));
    let elsewhere = client
        .describe_recovery_point()
        .backup_vault_name("Default")
        .recovery_point_arn(&rp)
        .send()
        .await
        .unwrap_err();
    assert!(
        elsewhere
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{elsewhere:?}"
    );

    let metadata = client
        .get_recovery_point_restore_metadata()
        .backup_vault_name("orchestrator")
        .recovery_point_arn(&rp)
        .send()
        .await
        .unwrap();
    let m = metadata.restore_metadata().unwrap();
    assert_eq!(m["InstanceType"], "t3.micro");
    let groups: Vec<String> = serde_json::from_str(&m["SecurityGroupIds"]).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(metadata.resource_type(), Some("EC2"));
    assert!(
        metadata
            .backup_vault_arn()
            .unwrap()
            .ends_with(":backup-vault:orchestrator")
    );
}

#[tokio::test]
async fn a_copy_is_a_recovery_point_of_its_destination_vault_in_its_region() {
    let sandbox = start(quick()).await;
    let east = backup_in(&sandbox, "us-east-1");
    let rp = completed_backup(&sandbox).await;
    east.start_copy_job()
        .recovery_point_arn(&rp)
        .source_backup_vault_name("orchestrator")
        .destination_backup_vault_arn(DR)
        .iam_role_arn(ROLE)
        .idempotency_token("web-dr")
        .send()
        .await
        .unwrap();
    until("the copy", async || {
        sandbox
            .copy_jobs()
            .first()
            .is_some_and(|c| c.state == "COMPLETED")
    })
    .await;
    let west = backup_in(&sandbox, "us-west-2");
    let in_dr = west
        .list_recovery_points_by_backup_vault()
        .backup_vault_name("dr")
        .send()
        .await
        .unwrap();
    let copy = &in_dr.recovery_points()[0];
    assert!(
        copy.recovery_point_arn()
            .unwrap()
            .starts_with("arn:aws:ec2:us-west-2::image/")
    );
    assert_eq!(
        copy.source_backup_vault_arn()
            .map(|a| a.ends_with(":orchestrator")),
        Some(true)
    );
    assert_eq!(copy.resource_arn(), Some(WEB));
    // The same vault name asked in the source region does not exist there.
    let err = east
        .list_recovery_points_by_backup_vault()
        .backup_vault_name("dr")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );
    // By resource: each region lists the points it holds.
    let west_points = west
        .list_recovery_points_by_resource()
        .resource_arn(WEB)
        .send()
        .await
        .unwrap();
    assert_eq!(west_points.recovery_points().len(), 1);
    assert_eq!(
        west_points.recovery_points()[0].backup_vault_name(),
        Some("dr")
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // One restore job's whole life, read top to bottom.
async fn restore_jobs_start_once_per_token_run_by_time_list_and_take_one_validation() {
    let sandbox = start(quick()).await;
    let client = backup_in(&sandbox, "us-east-1");
    let rp = completed_backup(&sandbox).await;
    let start_restore = |token: &str, profile: &str| {
        client
            .start_restore_job()
            .recovery_point_arn(&rp)
            .iam_role_arn("arn:aws:iam::123456789012:role/restore")
            .idempotency_token(token)
            .resource_type("EC2")
            .metadata("InstanceType", "t3.micro")
            .metadata("SubnetId", "subnet-0123456789abcdef0")
            .metadata("SecurityGroupIds", "[\"sg-0123456789abcdef0\"]")
            .metadata("IamInstanceProfileName", profile)
            .send()
    };
    let first = start_restore("dr-drill-1", "").await.unwrap();
    let again = start_restore("dr-drill-1", "").await.unwrap();
    let id = first.restore_job_id().unwrap().to_string();
    assert_eq!(
        again.restore_job_id(),
        Some(id.as_str()),
        "one job per token"
    );
    let refused = start_restore("dr-drill-2", "admin").await.unwrap_err();
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_invalid_parameter_value_exception()),
        "{refused:?}"
    );
    let unknown = client
        .start_restore_job()
        .recovery_point_arn("arn:aws:ec2:us-east-1::image/ami-00000000000000000")
        .metadata("SubnetId", "subnet-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert!(
        unknown
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );

    let describe = async || {
        client
            .describe_restore_job()
            .restore_job_id(&id)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(describe().await.status(), Some(&RestoreJobStatus::Pending));
    let early = client
        .put_restore_validation_result()
        .restore_job_id(&id)
        .validation_status(RestoreValidationStatus::Successful)
        .send()
        .await
        .unwrap_err();
    assert!(
        early
            .as_service_error()
            .is_some_and(|e| e.is_invalid_request_exception())
    );
    until("the restore", async || {
        describe().await.status() == Some(&RestoreJobStatus::Completed)
    })
    .await;
    let done = describe().await;
    assert_eq!(done.recovery_point_arn(), Some(rp.as_str()));
    assert_eq!(done.source_resource_arn(), Some(WEB));
    assert!(
        done.created_resource_arn()
            .unwrap()
            .starts_with("arn:aws:ec2:us-east-1:123456789012:instance/i-")
    );
    assert!(done.completion_date().is_some());
    assert_eq!(done.percent_done(), Some("100.0"));

    client
        .put_restore_validation_result()
        .restore_job_id(&id)
        .validation_status(RestoreValidationStatus::Successful)
        .validation_status_message("the database answered")
        .send()
        .await
        .unwrap();
    let changed = client
        .put_restore_validation_result()
        .restore_job_id(&id)
        .validation_status(RestoreValidationStatus::Failed)
        .send()
        .await
        .unwrap_err();
    assert!(
        changed
            .as_service_error()
            .is_some_and(|e| e.is_invalid_request_exception())
    );
    let validated = describe().await;
    assert_eq!(
        validated.validation_status(),
        Some(&RestoreValidationStatus::Successful)
    );
    assert_eq!(
        validated.validation_status_message(),
        Some("the database answered")
    );
    assert_eq!(sandbox.validation_results().len(), 1);

    let completed = client
        .list_restore_jobs()
        .by_status(RestoreJobStatus::Completed)
        .send()
        .await
        .unwrap();
    assert_eq!(completed.restore_jobs().len(), 1);
    assert_eq!(
        completed.restore_jobs()[0].restore_job_id(),
        Some(id.as_str())
    );
    let running = client
        .list_restore_jobs()
        .by_status(RestoreJobStatus::Running)
        .send()
        .await
        .unwrap();
    assert!(running.restore_jobs().is_empty());
    let missing = client
        .describe_restore_job()
        .restore_job_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );
}

#[tokio::test]
async fn the_restore_machine_runs_a_test_that_the_tagging_api_sees_until_it_is_cleaned_up() {
    let sandbox = start(quick()).await;
    let rp = completed_backup(&sandbox).await;
    let client = sfn(&sandbox);
    let input = json!({ "Action": "test", "Target": "web", "ResourceArn": WEB,
        "RecoveryPointArn": rp, "InstanceType": "t3.micro", "SubnetId": "subnet-0123456789abcdef0",
        "SecurityGroupIds": ["sg-0123456789abcdef0"], "ScheduledFor": "2026-11-29T10:00:00Z",
        "ExpiresAt": "2026-11-29T12:00:00Z", "MaxRestoreSeconds": 600, "KeepSeconds": 1,
        "ValidateDocument": { "Name": "orchestrator-check", "Parameters": { "q": ["select 1"] } } });
    let started = client
        .start_execution()
        .state_machine_arn(RESTORE_SM)
        .name("web-20261130T100000Z")
        .input(input.to_string())
        .send()
        .await
        .unwrap();
    let arn = started.execution_arn().to_string();
    let tagged = json!({ "ResourceTypeFilters": ["ec2:instance"],
        "TagFilters": [{ "Key": "orchestrator:restore-test" }] });
    // While it keeps the instance (KeepSeconds), GetResources finds it by its tag.
    until("the tagged instance", async || {
        get_resources(&sandbox, &tagged).await["ResourceTagMappingList"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    })
    .await;
    let listed = get_resources(&sandbox, &tagged).await;
    let tags = &listed["ResourceTagMappingList"][0]["Tags"];
    assert!(tags.as_array().unwrap().contains(
        &json!({ "Key": "orchestrator:restore-expires", "Value": "2026-11-29T12:00:00Z" })
    ));
    let done = loop {
        let d = client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .unwrap();
        if d.status() != &ExecutionStatus::Running {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        done.status(),
        &ExecutionStatus::Succeeded,
        "{:?}",
        done.cause()
    );
    let report: Value = serde_json::from_str(done.output().unwrap()).unwrap();
    assert_eq!(report["StatusChecks"], "passed");
    assert_eq!(report["Validation"]["Status"], "SUCCESSFUL");
    assert_eq!(report["Cleanup"]["Status"], "DELETED");
    let history = client
        .get_execution_history()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    let restore_job_id = history.events().iter().find_map(|e| {
        let d = e.task_succeeded_event_details()?;
        (d.resource() == "startRestoreJob").then(|| {
            serde_json::from_str::<Value>(d.output().unwrap()).unwrap()["RestoreJobId"].clone()
        })
    });
    assert_eq!(restore_job_id, Some(report["RestoreJobId"].clone()));
    assert_eq!(sandbox.state_transitions(&arn), Some(22));
    until("the termination", async || {
        get_resources(&sandbox, &tagged).await["ResourceTagMappingList"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    let instances = sandbox.restored_instances();
    assert_eq!(instances.len(), 1);
    assert!(!instances[0].alive());
    assert_eq!(sandbox.ssm_commands()[0].phase, "validate");
}

#[tokio::test]
async fn restore_knobs_are_set_and_read_through_the_admin_surface() {
    let sandbox = start(quick()).await;
    let rp = completed_backup(&sandbox).await;
    let (status, _) = admin(
        &sandbox,
        "POST",
        "/_sandbox/restore-rules",
        r#"[{"fail": true}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin(
        &sandbox,
        "POST",
        "/_sandbox/restore-rules",
        r#"[{"nope": 1}]"#,
    )
    .await;
    assert_eq!(status, 400, "unknown knobs are refused");
    let set = json!({ "arn": WEB, "metadata": { "InstanceType": "m5.large" } }).to_string();
    let (status, _) = admin(&sandbox, "POST", "/_sandbox/restore-metadata", &set).await;
    assert_eq!(status, 200);
    let client = backup_in(&sandbox, "us-east-1");
    let id = client
        .start_restore_job()
        .recovery_point_arn(&rp)
        .metadata("SubnetId", "subnet-0123456789abcdef0")
        .send()
        .await
        .unwrap()
        .restore_job_id()
        .unwrap()
        .to_string();
    until("the failure", async || {
        sandbox.restore_jobs()[0].status == "FAILED"
    })
    .await;
    let failed = client
        .describe_restore_job()
        .restore_job_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), Some(&RestoreJobStatus::Failed));
    assert!(failed.status_message().is_some());
    assert!(failed.created_resource_arn().is_none());
    assert!(sandbox.restored_instances().is_empty());
    let (_, jobs) = admin(&sandbox, "GET", "/_sandbox/restore-jobs", "").await;
    assert_eq!(jobs[0]["status"], "FAILED");
    let (_, instances) = admin(&sandbox, "GET", "/_sandbox/restored-instances", "").await;
    assert_eq!(instances, json!([]));
    let (_, points) = admin(&sandbox, "GET", "/_sandbox/recovery-points", "").await;
    assert_eq!(points[0]["arn"], json!(rp));
    let metadata = client
        .get_recovery_point_restore_metadata()
        .backup_vault_name("orchestrator")
        .recovery_point_arn(&rp)
        .send()
        .await
        .unwrap();
    assert_eq!(
        metadata.restore_metadata().unwrap()["InstanceType"],
        "m5.large"
    );
}
