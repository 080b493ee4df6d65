//! The sandbox as the real AWS SDK clients see it: over HTTP on 127.0.0.1, through the SDK's
//! own serializers, deserializers, error mapping and retry strategy.

use std::time::{Duration, Instant};

use aws_sandbox::{Faults, HookSettings, Sandbox, SandboxConfig};
use aws_sdk_backup::types::BackupJobState;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use aws_smithy_types::DateTime as SmithyDateTime;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:backup";
const WEB: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
const ROLE: &str = "arn:aws:iam::123456789012:role/service-role/AWSBackupDefaultServiceRole";
/// A slot the machine accepts as `ScheduledFor`.
const SLOT: &str = "2026-11-29T10:00:00Z";

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("sandbox starts")
}

/// Short lifecycle durations so a test sees every state within a second or two.
fn quick() -> SandboxConfig {
    SandboxConfig {
        execution_delay: Duration::from_millis(50),
        job_pending: Duration::from_millis(300),
        job_running: Duration::from_millis(600),
        ..SandboxConfig::default()
    }
}

/// The SDK's standard retry (3 attempts), with a short first backoff to keep the tests quick.
fn retry() -> aws_sdk_sfn::config::retry::RetryConfig {
    aws_sdk_sfn::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10))
}

fn sfn(sandbox: &Sandbox) -> aws_sdk_sfn::Client {
    use aws_sdk_sfn::config::{Credentials, Region};
    aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(sandbox.endpoint_url())
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(retry())
            .build(),
    )
}

fn backup(sandbox: &Sandbox) -> aws_sdk_backup::Client {
    use aws_sdk_backup::config::{Credentials, Region};
    aws_sdk_backup::Client::from_conf(
        aws_sdk_backup::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(sandbox.endpoint_url())
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(retry())
            .build(),
    )
}

/// The input the daemon sends (see `execution::ExecutionInput`).
fn input(resource: &str, slot: &str) -> Value {
    json!({
        "ResourceArn": resource,
        "Target": "web",
        "ScheduledFor": slot,
        "Trigger": "schedule",
        "StartWindowMinutes": 60,
        "CompleteWindowMinutes": 10080,
        "DeleteAfterDays": 35,
    })
}

async fn start_execution(
    client: &aws_sdk_sfn::Client,
    name: &str,
    input: &Value,
) -> Result<
    aws_sdk_sfn::operation::start_execution::StartExecutionOutput,
    SdkError<aws_sdk_sfn::operation::start_execution::StartExecutionError>,
> {
    client
        .start_execution()
        .state_machine_arn(SM)
        .name(name)
        .input(input.to_string())
        .send()
        .await
}

/// Polls DescribeExecution until the execution has closed.
async fn wait_closed(
    client: &aws_sdk_sfn::Client,
    arn: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let described = client
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .unwrap();
        if described.status() != &ExecutionStatus::Running {
            return described;
        }
        assert!(Instant::now() < deadline, "{arn} still RUNNING");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn start_job(
    client: &aws_sdk_backup::Client,
    resource: &str,
    vault: &str,
) -> aws_sdk_backup::operation::start_backup_job::StartBackupJobOutput {
    client
        .start_backup_job()
        .backup_vault_name(vault)
        .resource_arn(resource)
        .iam_role_arn(ROLE)
        .send()
        .await
        .unwrap()
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

#[tokio::test]
async fn start_execution_is_idempotent_only_while_running() {
    let sandbox = start(SandboxConfig {
        execution_delay: Duration::from_millis(800),
        ..quick()
    })
    .await;
    let client = sfn(&sandbox);
    let first_input = input(WEB, "2026-11-29T10:00:00Z");

    let first = start_execution(&client, "web-20261129T100000Z", &first_input)
        .await
        .unwrap();
    assert_eq!(
        first.execution_arn(),
        "arn:aws:states:us-east-1:123456789012:execution:backup:web-20261129T100000Z"
    );
    let again = start_execution(&client, "web-20261129T100000Z", &first_input)
        .await
        .unwrap();
    assert_eq!(again.execution_arn(), first.execution_arn());
    assert_eq!(again.start_date(), first.start_date());

    let other_input = input(WEB, "2026-11-29T11:00:00Z");
    let err = start_execution(&client, "web-20261129T100000Z", &other_input)
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_execution_already_exists());

    wait_closed(&client, first.execution_arn()).await;
    let err = start_execution(&client, "web-20261129T100000Z", &first_input)
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_execution_already_exists());

    let stats = sandbox.stats();
    assert_eq!(stats.start_execution_accepted, 1);
    assert_eq!(stats.start_execution_duplicates, 1);
    assert_eq!(stats.already_exists, 2);
    assert_eq!(sandbox.executions().len(), 1);
    assert_eq!(sandbox.jobs().len(), 1);
}

#[tokio::test]
async fn start_execution_validates_name_input_and_machine() {
    let sandbox = start(SandboxConfig {
        state_machines: Some(vec![SM.to_string()]),
        ..quick()
    })
    .await;
    let client = sfn(&sandbox);
    for bad in ["has space", "a:b", &"x".repeat(81), ""] {
        let err = start_execution(&client, bad, &input(WEB, SLOT))
            .await
            .unwrap_err();
        assert!(err.into_service_error().is_invalid_name(), "{bad:?}");
    }
    let err = client
        .start_execution()
        .state_machine_arn(SM)
        .name("bad-json")
        .input("{not json")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_invalid_execution_input());
    let big = json!({ "ResourceArn": WEB, "Pad": "x".repeat(256 * 1024) });
    let err = start_execution(&client, "too-big", &big).await.unwrap_err();
    assert!(err.into_service_error().is_invalid_execution_input());
    let err = client
        .start_execution()
        .state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:other")
        .name("n")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_state_machine_does_not_exist());
    let err = client
        .describe_execution()
        .execution_arn("arn:aws:states:us-east-1:123456789012:execution:backup:nope")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_execution_does_not_exist());
    assert!(sandbox.executions().is_empty());
}

#[tokio::test]
async fn execution_succeeds_with_the_job_id_and_the_job_runs_to_completion() {
    let sandbox = start(quick()).await;
    let client = sfn(&sandbox);
    let jobs = backup(&sandbox);
    let started = start_execution(&client, "web-20261129T100000Z", &input(WEB, SLOT))
        .await
        .unwrap();
    let described = wait_closed(&client, started.execution_arn()).await;
    assert_eq!(described.status(), &ExecutionStatus::Succeeded);
    assert_eq!(described.name(), Some("web-20261129T100000Z"));
    assert_eq!(described.state_machine_arn(), SM);
    assert!(described.stop_date().is_some());
    let output: Value = serde_json::from_str(described.output().unwrap()).unwrap();
    let job_id = output["BackupJobId"].as_str().unwrap().to_string();
    assert_eq!(output["IsParent"], json!(false));
    assert!(output["CreationDate"].is_string());

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let job = jobs
            .describe_backup_job()
            .backup_job_id(&job_id)
            .send()
            .await
            .unwrap();
        let state = job.state().unwrap().clone();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == BackupJobState::Running {
            let percent: f64 = job.percent_done().unwrap().parse().unwrap();
            assert!((0.0..=100.0).contains(&percent));
        }
        if state == BackupJobState::Completed {
            assert_eq!(job.percent_done(), Some("100.0"));
            assert!(job.completion_date().is_some());
            assert!(job.backup_size_in_bytes().unwrap() > 0);
            assert_eq!(job.resource_arn(), Some(WEB));
            assert!(job.recovery_point_arn().unwrap().contains(":image/ami-"));
            break;
        }
        assert!(Instant::now() < deadline, "job stuck in {state:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(
        seen,
        [
            BackupJobState::Created,
            BackupJobState::Running,
            BackupJobState::Completed
        ]
    );
    let record = &sandbox.jobs()[0];
    assert_eq!(record.id, job_id);
    assert_eq!(
        record.idempotency_token.as_deref(),
        Some("web-20261129T100000Z")
    );
    assert_eq!(
        record.execution_name.as_deref(),
        Some("web-20261129T100000Z")
    );
    assert_eq!(
        sandbox.executions()[0].backup_job_id.as_deref(),
        Some(job_id.as_str())
    );
}

#[tokio::test]
async fn backup_jobs_fail_for_listed_resources_and_tokens_are_idempotent() {
    let sandbox = start(SandboxConfig {
        job_pending: Duration::from_millis(50),
        job_running: Duration::from_millis(100),
        fail_resources: vec!["i-0badbadbadbadbad0".into()],
        ..quick()
    })
    .await;
    let client = backup(&sandbox);
    let bad = "arn:aws:ec2:us-east-1:123456789012:instance/i-0badbadbadbadbad0";
    let failing = start_job(&client, bad, "Default").await;
    assert_eq!(failing.recovery_point_arn(), None, "not returned for EC2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = client
        .describe_backup_job()
        .backup_job_id(failing.backup_job_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(job.state(), Some(&BackupJobState::Failed));
    assert!(job.status_message().is_some());

    let with_token = |token: &str| {
        client
            .start_backup_job()
            .backup_vault_name("Default")
            .resource_arn(WEB)
            .iam_role_arn(ROLE)
            .idempotency_token(token)
            .send()
    };
    let a = with_token("tok-1").await.unwrap();
    let b = with_token("tok-1").await.unwrap();
    assert_eq!(a.backup_job_id(), b.backup_job_id());
    assert_eq!(sandbox.jobs().len(), 2);

    let err = client
        .describe_backup_job()
        .backup_job_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
    let err = client
        .start_backup_job()
        .backup_vault_name("Default")
        .resource_arn(WEB)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.into_service_error()
            .is_missing_parameter_value_exception()
    );
}

#[tokio::test]
async fn list_backup_jobs_pages_and_filters() {
    let sandbox = start(SandboxConfig {
        job_pending: Duration::from_secs(60),
        ..quick()
    })
    .await;
    let client = backup(&sandbox);
    let other = "arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210";
    let mut created = Vec::new();
    for (resource, vault) in [
        (WEB, "Default"),
        (other, "Default"),
        (WEB, "Vault2"),
        (other, "Default"),
        (WEB, "Default"),
    ] {
        created.push(start_job(&client, resource, vault).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_backup_jobs()
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        pages.push(
            page.backup_jobs()
                .iter()
                .map(|j| j.backup_job_id().unwrap().to_string())
                .collect::<Vec<_>>(),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let newest_first: Vec<String> = created
        .iter()
        .rev()
        .map(|c| c.backup_job_id().unwrap().to_string())
        .collect();
    assert_eq!(pages.concat(), newest_first);

    let count = |request: aws_sdk_backup::operation::list_backup_jobs::builders::ListBackupJobsFluentBuilder| async move {
        request.send().await.unwrap().backup_jobs().len()
    };
    assert_eq!(
        count(client.list_backup_jobs().by_resource_arn(WEB)).await,
        3
    );
    assert_eq!(
        count(client.list_backup_jobs().by_backup_vault_name("Vault2")).await,
        1
    );
    assert_eq!(
        count(client.list_backup_jobs().by_state(BackupJobState::Created)).await,
        5
    );
    assert_eq!(
        count(
            client
                .list_backup_jobs()
                .by_state(BackupJobState::Completed)
        )
        .await,
        0
    );
    let third: SmithyDateTime = *created[2].creation_date().unwrap();
    assert_eq!(
        count(client.list_backup_jobs().by_created_after(third)).await,
        3
    );
    assert_eq!(
        count(client.list_backup_jobs().by_created_before(third)).await,
        3
    );
    assert_eq!(
        count(
            client
                .list_backup_jobs()
                .by_resource_arn(WEB)
                .by_created_after(third)
        )
        .await,
        2
    );
}

#[tokio::test]
async fn list_executions_pages_newest_first() {
    let sandbox = start(quick()).await;
    let client = sfn(&sandbox);
    for i in 0..5 {
        start_execution(&client, &format!("web-{i}"), &input(WEB, SLOT))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_executions()
            .state_machine_arn(SM)
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        pages += 1;
        names.extend(page.executions().iter().map(|e| e.name().to_string()));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["web-4", "web-3", "web-2", "web-1", "web-0"]);

    tokio::time::sleep(Duration::from_millis(150)).await;
    let succeeded = client
        .list_executions()
        .state_machine_arn(SM)
        .status_filter(ExecutionStatus::Succeeded)
        .send()
        .await
        .unwrap();
    assert_eq!(succeeded.executions().len(), 5);
    assert!(succeeded.executions()[0].stop_date().is_some());
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // One scenario, read top to bottom as the daemon lives it.
async fn hook_variant_shows_the_job_in_history_while_running() {
    let sandbox = start(SandboxConfig {
        execution_delay: Duration::from_millis(50),
        job_pending: Duration::from_millis(400),
        job_running: Duration::from_millis(400),
        hooks: HookSettings {
            end_poll: Duration::from_millis(200),
            command_duration: Duration::from_millis(50),
            ..HookSettings::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let client = sfn(&sandbox);
    let mut hooked = input(WEB, SLOT);
    let document = |action: &str| {
        json!({"Name": "orchestrator-systemd-unit", "Version": "$DEFAULT",
               "Parameters": {"action": [action], "unit": ["app.service"]}})
    };
    hooked["PreDocument"] = document("stop");
    hooked["PostDocument"] = document("start");
    hooked["PostHookWhen"] = json!("completed");
    let started = start_execution(&client, "hooked", &hooked).await.unwrap();
    let arn = started.execution_arn().to_string();

    // Wait for the StartBackupJob task's TaskSucceeded event, then check the execution still runs.
    let deadline = Instant::now() + Duration::from_secs(3);
    let job_id = loop {
        let history = client
            .get_execution_history()
            .execution_arn(&arn)
            .send()
            .await
            .unwrap();
        let succeeded = history.events().iter().find(|e| {
            e.r#type() == &HistoryEventType::TaskSucceeded
                && e.task_succeeded_event_details()
                    .is_some_and(|d| d.resource() == "startBackupJob")
        });
        if let Some(event) = succeeded {
            let details = event.task_succeeded_event_details().unwrap();
            assert_eq!(details.resource_type(), "aws-sdk:backup");
            let output: Value = serde_json::from_str(details.output().unwrap()).unwrap();
            break output["BackupJobId"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no TaskSucceeded event");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let described = client
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(described.status(), &ExecutionStatus::Running);
    assert_eq!(sandbox.jobs()[0].id, job_id);

    // Events are numbered and chained; reverse order and pages agree with the whole list.
    let all = client
        .get_execution_history()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    let ids: Vec<i64> = all.events().iter().map(|e| e.id()).collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        all.events()[0].r#type(),
        &HistoryEventType::ExecutionStarted
    );
    assert!(
        all.events()
            .iter()
            .all(|e| e.previous_event_id() == e.id() - 1)
    );
    let first_page = client
        .get_execution_history()
        .execution_arn(&arn)
        .reverse_order(true)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        first_page
            .events()
            .iter()
            .map(|e| e.id())
            .collect::<Vec<_>>(),
        [ids.len() as i64, ids.len() as i64 - 1]
    );
    assert!(first_page.next_token().is_some());

    let closed = wait_closed(&client, &arn).await;
    assert_eq!(closed.status(), &ExecutionStatus::Succeeded);
    let output: Value = serde_json::from_str(closed.output().unwrap()).unwrap();
    assert_eq!(output["BackupJobId"], json!(job_id));
    assert_eq!(output["BackupJob"], json!({"State": "COMPLETED"}));
    assert_eq!(output["PostHook"]["Status"], json!("Success"));
    // Every state as real Step Functions names it, Choice, Wait and Pass states included.
    let names: Vec<String> = states_entered(&client, &arn)
        .await
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        names,
        [
            "Validate",
            "SendPreHook",
            "PreHookWait",
            "GetPreHook",
            "PreHookDone",
            "StartBackupJobThenPost",
            "WaitForJob",
            "DescribeJob",
            "JobReady",
            "SendPostHook",
            "PostHookWait",
            "GetPostHook",
            "PostHookDone",
            "Done",
        ]
    );
    // The SSM calls the machine made, in SendCommand's and GetCommandInvocation's shapes.
    let ssm: Vec<_> = all
        .events()
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .filter(|d| d.resource_type() == "aws-sdk:ssm")
        .map(|d| (d.resource().to_string(), d.parameters().to_string()))
        .collect();
    assert_eq!(ssm[0].0, "sendCommand");
    let sent: Value = serde_json::from_str(&ssm[0].1).unwrap();
    assert_eq!(sent["DocumentName"], "orchestrator-systemd-unit");
    assert_eq!(
        sent["Parameters"],
        json!({"action": ["stop"], "unit": ["app.service"]})
    );
    assert_eq!(sent["InstanceIds"], json!(["i-0123456789abcdef0"]));
    assert_eq!(ssm[1].0, "getCommandInvocation");
    let (status, recorded) = admin(&sandbox, "GET", "/_sandbox/ssm-commands", "").await;
    assert_eq!(status, 200);
    assert_eq!(recorded.as_array().unwrap().len(), 2, "{recorded}");
    assert_eq!(
        recorded[1]["parameters"],
        json!({"action": ["start"], "unit": ["app.service"]})
    );
    let history = client
        .get_execution_history()
        .execution_arn(&arn)
        .reverse_order(true)
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        history.events()[0].r#type(),
        &HistoryEventType::ExecutionSucceeded
    );
}

#[tokio::test]
async fn failing_hooks_fail_the_execution() {
    let sandbox = start(SandboxConfig {
        execution_delay: Duration::from_millis(30),
        job_pending: Duration::from_millis(50),
        job_running: Duration::from_millis(100),
        hooks: HookSettings {
            allow_raw_commands: true,
            start_poll: Duration::from_millis(50),
            command_duration: Duration::from_millis(20),
            ..HookSettings::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let client = sfn(&sandbox);
    let mut pre = input(WEB, SLOT);
    pre["PreCommand"] = json!("/usr/local/bin/quiesce --fail");
    pre["OnPreHookFailure"] = json!("skip");
    let pre_arn = start_execution(&client, "pre-fails", &pre)
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let mut post = input(WEB, SLOT);
    post["PostCommand"] = json!("exit 1 # fail");
    let post_arn = start_execution(&client, "post-fails", &post)
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let missing = json!({ "Target": "web" });
    let missing_arn = start_execution(&client, "no-resource", &missing)
        .await
        .unwrap()
        .execution_arn()
        .to_string();

    let failed = wait_closed(&client, &pre_arn).await;
    assert_eq!(failed.status(), &ExecutionStatus::Failed);
    assert_eq!(failed.error(), Some("PreCommandFailed"));
    assert!(failed.cause().is_some());
    let failed = wait_closed(&client, &post_arn).await;
    assert_eq!(failed.error(), Some("PostCommandFailed"));
    let failed = wait_closed(&client, &missing_arn).await;
    assert_eq!(failed.error(), Some("InputRefused"));
    assert!(failed.cause().unwrap().contains("ResourceArn"));

    // Only the PostCommand execution got as far as a job (the failed pre command skipped it).
    let jobs = sandbox.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].execution_name.as_deref(), Some("post-fails"));
}

#[tokio::test]
async fn backup_options_are_validated_and_reported() {
    let sandbox = start(quick()).await;
    let client = backup(&sandbox);
    let vss = client
        .start_backup_job()
        .backup_vault_name("Default")
        .resource_arn(WEB)
        .iam_role_arn(ROLE)
        .backup_options("WindowsVSS", "enabled")
        .send()
        .await
        .unwrap();
    let described = client
        .describe_backup_job()
        .backup_job_id(vss.backup_job_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        described
            .backup_options()
            .and_then(|o| o.get("WindowsVSS"))
            .map(String::as_str),
        Some("enabled")
    );
    let err = client
        .start_backup_job()
        .backup_vault_name("Default")
        .resource_arn(WEB)
        .iam_role_arn(ROLE)
        .backup_options("WindowsVSS", "yes")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_invalid_parameter_value_exception()),
        "{err:?}"
    );
    assert_eq!(sandbox.jobs().len(), 1);
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_surfaces_when_it_persists() {
    let sandbox = start(quick()).await;
    let client = sfn(&sandbox);
    let jobs = backup(&sandbox);

    sandbox.set_faults(Faults {
        throttle_next: 2,
        ..Faults::default()
    });
    start_execution(&client, "retried", &input(WEB, SLOT))
        .await
        .expect("the third attempt succeeds");
    let stats = sandbox.stats();
    assert_eq!(stats.by_operation["StartExecution"], 3);
    assert_eq!(stats.faults_injected, 2);
    assert_eq!(stats.start_execution_accepted, 1);

    sandbox.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    let err = start_execution(&client, "throttled", &input(WEB, SLOT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
    let err = jobs.list_backup_jobs().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
    let stats = sandbox.stats();
    assert_eq!(stats.by_operation["StartExecution"], 6);
    assert_eq!(stats.by_operation["ListBackupJobs"], 3);

    // Faults limited to one operation leave the others alone.
    sandbox.set_faults(Faults {
        throttle_rate: 1.0,
        only_operations: Some(vec!["StartExecution".into()]),
        ..Faults::default()
    });
    jobs.list_backup_jobs().send().await.unwrap();
    sandbox.set_faults(Faults {
        throttle_next: 2,
        ..Faults::default()
    });
    jobs.list_backup_jobs().send().await.unwrap();

    sandbox.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let err = start_execution(&client, "erroring", &input(WEB, SLOT))
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 500);
    let err = jobs.list_backup_jobs().send().await.unwrap_err();
    assert!(err.into_service_error().is_service_unavailable_exception());
    assert_eq!(sandbox.executions().len(), 1);
}

#[tokio::test]
async fn dropped_connections_are_dispatch_failures() {
    let sandbox = start(quick()).await;
    let client = sfn(&sandbox);
    // A pooled connection from before the outage must fail too.
    start_execution(&client, "before", &input(WEB, SLOT))
        .await
        .unwrap();
    sandbox.set_faults(Faults {
        drop_connections: true,
        ..Faults::default()
    });
    let err = start_execution(&client, "during", &input(WEB, SLOT))
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    assert!(sandbox.stats().faults_injected >= 1);

    sandbox.set_faults(Faults::default());
    start_execution(&client, "after", &input(WEB, SLOT))
        .await
        .unwrap();
    let names: Vec<String> = sandbox.executions().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["before", "after"]);
}

#[tokio::test]
async fn admin_surface_reports_and_sets_faults() {
    let sandbox = start(quick()).await;
    let client = sfn(&sandbox);
    start_execution(
        &client,
        "web-20261129T100000Z",
        &input(WEB, "2026-11-29T10:00:00Z"),
    )
    .await
    .unwrap();

    let (status, stats) = admin(&sandbox, "GET", "/_sandbox/stats", "").await;
    assert_eq!(status, 200);
    assert_eq!(stats["requests"], json!(1));
    assert_eq!(stats["by_operation"]["StartExecution"], json!(1));
    // Who signed it: the SigV4 credential's access key id.
    assert_eq!(stats["by_access_key"]["test"]["StartExecution"], json!(1));
    assert_eq!(stats["start_execution_accepted"], json!(1));

    let (_, times) = admin(&sandbox, "GET", "/_sandbox/start-times", "").await;
    assert_eq!(times[0]["name"], json!("web-20261129T100000Z"));
    assert_eq!(
        times[0]["input_scheduled_for"],
        json!("2026-11-29T10:00:00Z")
    );
    assert!(times[0]["received_at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(times[0]["access_key"], json!("test"));
    let (status, items) = admin(&sandbox, "GET", "/_sandbox/dynamodb/leases", "").await;
    assert_eq!(
        (status, items),
        (200, json!([])),
        "a table never written is empty"
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, executions) = admin(&sandbox, "GET", "/_sandbox/executions", "").await;
    assert_eq!(executions[0]["status"], json!("SUCCEEDED"));
    let (_, jobs) = admin(&sandbox, "GET", "/_sandbox/jobs", "").await;
    assert_eq!(jobs[0]["execution_name"], json!("web-20261129T100000Z"));

    let (status, faults) = admin(
        &sandbox,
        "POST",
        "/_sandbox/faults",
        r#"{"throttle_next":1,"latency_ms":20}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(faults["latency_ms"], json!(20));
    assert_eq!(sandbox.faults().latency, Duration::from_millis(20));
    let (status, _) = admin(
        &sandbox,
        "POST",
        "/_sandbox/faults",
        r#"{"throttle_rate":3}"#,
    )
    .await;
    assert_eq!(status, 400);

    let (status, _) = admin(&sandbox, "POST", "/_sandbox/reset-stats", "").await;
    assert_eq!(status, 200);
    client
        .describe_execution()
        .execution_arn(
            "arn:aws:states:us-east-1:123456789012:execution:backup:web-20261129T100000Z",
        )
        .send()
        .await
        .unwrap();
    let stats = sandbox.stats();
    assert_eq!(
        stats.by_operation["DescribeExecution"], 2,
        "one throttled, one retried"
    );
    assert_eq!(stats.faults_injected, 1);
    assert_eq!(stats.delayed, 2);
    assert!(sandbox.start_times().is_empty());
    let (status, _) = admin(&sandbox, "GET", "/_sandbox/nothing", "").await;
    assert_eq!(status, 404);
    sandbox.shutdown().await;
}

const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
const DR_REFUSING: &str = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr";

/// A job started over the wire, waited for until COMPLETED: its recovery point.
async fn completed_recovery_point(client: &aws_sdk_backup::Client) -> String {
    let job = start_job(client, WEB, "orchestrator").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = client
            .describe_backup_job()
            .backup_job_id(job.backup_job_id().unwrap())
            .send()
            .await
            .unwrap();
        if d.state() == Some(&BackupJobState::Completed) {
            return d.recovery_point_arn().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "job did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_copy(
    client: &aws_sdk_backup::Client,
    rp: &str,
    destination: &str,
    token: &str,
) -> Result<
    aws_sdk_backup::operation::start_copy_job::StartCopyJobOutput,
    aws_sdk_backup::error::SdkError<aws_sdk_backup::operation::start_copy_job::StartCopyJobError>,
> {
    client
        .start_copy_job()
        .recovery_point_arn(rp)
        .source_backup_vault_name("orchestrator")
        .destination_backup_vault_arn(destination)
        .iam_role_arn(ROLE)
        .idempotency_token(token)
        .lifecycle(
            aws_sdk_backup::types::Lifecycle::builder()
                .delete_after_days(90)
                .build(),
        )
        .send()
        .await
}

#[tokio::test]
async fn copy_jobs_start_once_per_token_move_through_their_states_and_list_with_filters() {
    let sandbox = start(SandboxConfig {
        copy_pending: Duration::from_millis(200),
        copy_running: Duration::from_millis(400),
        ..quick()
    })
    .await;
    let client = backup(&sandbox);
    let rp = completed_recovery_point(&client).await;

    let first = start_copy(&client, &rp, DR, "copy-1").await.unwrap();
    let again = start_copy(&client, &rp, DR, "copy-1").await.unwrap();
    assert_eq!(
        first.copy_job_id(),
        again.copy_job_id(),
        "same token, same copy"
    );
    let id = first.copy_job_id().unwrap().to_string();
    assert!(first.creation_date().is_some());

    let d = client
        .describe_copy_job()
        .copy_job_id(&id)
        .send()
        .await
        .unwrap();
    let job = d.copy_job().unwrap();
    assert_eq!(job.state().map(|s| s.as_str()), Some("CREATED"));
    assert_eq!(job.source_recovery_point_arn(), Some(rp.as_str()));
    assert_eq!(job.destination_backup_vault_arn(), Some(DR));
    assert_eq!(job.resource_arn(), Some(WEB));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let d = client
        .describe_copy_job()
        .copy_job_id(&id)
        .send()
        .await
        .unwrap();
    let job = d.copy_job().unwrap();
    assert_eq!(job.state().map(|s| s.as_str()), Some("COMPLETED"));
    assert!(
        job.destination_recovery_point_arn()
            .unwrap()
            .contains("us-west-2")
    );
    assert!(job.completion_date().is_some());
    assert_eq!(
        job.destination_recovery_point_lifecycle()
            .and_then(|l| l.delete_after_days()),
        Some(90)
    );

    // Paging and filters, as the tracker and recovery use them.
    let second = start_copy(
        &client,
        &rp,
        "arn:aws:backup:us-east-2:123456789012:backup-vault:b",
        "copy-2",
    )
    .await
    .unwrap();
    let page = client.list_copy_jobs().max_results(1).send().await.unwrap();
    assert_eq!(page.copy_jobs().len(), 1);
    assert_eq!(
        page.copy_jobs()[0].copy_job_id(),
        second.copy_job_id(),
        "newest first"
    );
    let rest = client
        .list_copy_jobs()
        .max_results(1)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.copy_jobs()[0].copy_job_id(), Some(id.as_str()));
    assert!(rest.next_token().is_none());
    let to_dr = client
        .list_copy_jobs()
        .by_destination_vault_arn(DR)
        .by_created_after(SmithyDateTime::from_secs(0))
        .send()
        .await
        .unwrap();
    assert_eq!(to_dr.copy_jobs().len(), 1);
    let running = client
        .list_copy_jobs()
        .by_state(aws_sdk_backup::types::CopyJobState::Completed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        running.copy_jobs().len(),
        1,
        "the second copy is not done yet"
    );
    let (status, all) = admin(&sandbox, "GET", "/_sandbox/copy-jobs", "").await;
    assert_eq!((status, all.as_array().unwrap().len()), (200, 2));
    assert_eq!(all[0]["idempotency_token"], "copy-1");
}

#[tokio::test]
async fn copy_errors_have_the_real_shapes() {
    let sandbox = start(quick()).await;
    let client = backup(&sandbox);
    let (status, _) = admin(
        &sandbox,
        "POST",
        "/_sandbox/copy-rules",
        &json!([{ "destination": DR_REFUSING, "refuse": true }]).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let missing = client
        .describe_copy_job()
        .copy_job_id("00000000-0000-4000-8000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert!(
        missing
            .into_service_error()
            .is_resource_not_found_exception()
    );
    let unknown_rp = start_copy(&client, "arn:aws:ec2:us-east-1::image/ami-1", DR, "t")
        .await
        .unwrap_err();
    assert!(
        unknown_rp
            .into_service_error()
            .is_resource_not_found_exception()
    );
    let rp = completed_recovery_point(&client).await;
    let refused = start_copy(&client, &rp, DR_REFUSING, "t2")
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_backup::error::ProvideErrorMetadata::code(&refused),
        Some("AccessDeniedException")
    );
    let bad = start_copy(&client, &rp, "not-a-vault", "t3")
        .await
        .unwrap_err();
    assert!(
        bad.into_service_error()
            .is_invalid_parameter_value_exception()
    );
}

/// The names of the states an execution entered, read through the SDK's history types.
async fn states_entered(client: &aws_sdk_sfn::Client, arn: &str) -> Vec<(String, String)> {
    let history = client
        .get_execution_history()
        .execution_arn(arn)
        .send()
        .await
        .unwrap();
    history
        .events()
        .iter()
        .filter(|e| e.r#type().as_str().ends_with("StateEntered"))
        .map(|e| {
            let name = e.state_entered_event_details().unwrap().name().to_string();
            (e.r#type().as_str().to_string(), name)
        })
        .collect()
}

#[tokio::test]
async fn the_backup_machine_refuses_bad_input_backs_up_in_two_transitions_and_copies_apart() {
    let sandbox = start(quick()).await;
    let client = sfn(&sandbox);
    let plain = start_execution(&client, "plain", &input(WEB, SLOT))
        .await
        .unwrap();
    let mut short = input(WEB, SLOT);
    short["DeleteAfterDays"] = json!(1);
    let refused = start_execution(&client, "short", &short).await.unwrap();

    let done = wait_closed(&client, plain.execution_arn()).await;
    assert_eq!(done.status(), &ExecutionStatus::Succeeded);
    assert_eq!(
        states_entered(&client, plain.execution_arn()).await,
        [
            ("ChoiceStateEntered".to_string(), "Validate".to_string()),
            ("TaskStateEntered".to_string(), "StartBackupJob".to_string()),
        ]
    );
    assert_eq!(sandbox.state_transitions(plain.execution_arn()), Some(2));
    let failed = wait_closed(&client, refused.execution_arn()).await;
    assert_eq!(failed.error(), Some("InputRefused"));
    assert!(
        failed.cause().unwrap().starts_with(
            "InputRefused: DeleteAfterDays must be a whole number between 7 and 36500"
        )
    );
    assert_eq!(sandbox.jobs().len(), 1, "a refused input starts nothing");

    // The daemon starts the copies once it has seen the job COMPLETED.
    let output: Value = serde_json::from_str(done.output().unwrap()).unwrap();
    let job_id = output["BackupJobId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sandbox.jobs()[0].state != aws_sandbox::JobState::Completed {
        assert!(Instant::now() < deadline, "job did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copy = json!({ "Action": "copy", "BackupJobId": job_id, "Target": "web",
        "ResourceArn": WEB, "CopyTo": [{ "DestinationBackupVaultArn": DR,
        "Lifecycle": { "DeleteAfterDays": 90 }, "IdempotencyToken": "web-dr" }]});
    let copied = start_execution(&client, &format!("copy-{job_id}"), &copy)
        .await
        .unwrap();
    let closed = wait_closed(&client, copied.execution_arn()).await;
    assert_eq!(closed.status(), &ExecutionStatus::Succeeded);
    let output: Value = serde_json::from_str(closed.output().unwrap()).unwrap();
    let copy_jobs = sandbox.copy_jobs();
    assert_eq!(
        output,
        json!({"Copies": [{"DestinationBackupVaultArn": DR, "CopyJobId": copy_jobs[0].id}]})
    );
    let kinds: Vec<String> = states_entered(&client, copied.execution_arn())
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "ChoiceStateEntered",
            "TaskStateEntered",
            "ChoiceStateEntered",
            "MapStateEntered",
            "ChoiceStateEntered",
            "TaskStateEntered"
        ]
    );
}
