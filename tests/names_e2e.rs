//! End to end, a slot's execution name taken by someone else (issue 24): whoever may start
//! executions on the machine can pre-create tomorrow's names with their own input. The daemon
//! compares the input of the execution it finds under a name it is about to start: another
//! input is an ERROR line (`execution_input_mismatch`, and a metric) and the slot is backed up
//! under its second name, once, two replicas agreeing on it. The real binary twice, the real SDK
//! over HTTP against the sandbox.

mod common;

use std::time::Duration;

use aws_sdk_sfn::config::{BehaviorVersion, Credentials, Region};
use backup_orchestrator::execution::{scheduled_name, second_name};
use chrono::{Timelike, Utc};
use common::*;
use serde_json::{Value, json};

/// Starts `name` on the sandbox's machine with `input`, as an intruder with its own access key.
async fn pre_create(endpoint: &str, name: &str, input: &Value) {
    let config = aws_sdk_sfn::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("intruder", "x", None, None, "test"))
        .build();
    aws_sdk_sfn::Client::from_conf(config)
        .start_execution()
        .state_machine_arn(SM)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .expect("the intruder's StartExecution");
}

#[test]
fn a_pre_created_name_cannot_suppress_the_slot_and_two_replicas_back_it_up_once() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    // One slot, 4 s from now: its name, taken before the daemons start.
    let slot = (Utc::now() + chrono::Duration::seconds(4))
        .with_nanosecond(0)
        .unwrap();
    let first = scheduled_name("web", slot);
    let theirs = json!({
        "ResourceArn": ec2(99), "Target": "web",
        "ScheduledFor": slot.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "Trigger": "schedule", "StartWindowMinutes": 60, "CompleteWindowMinutes": 10080,
        "DeleteAfterDays": 8
    });
    rt.block_on(pre_create(&sb.endpoint_url(), &first, &theirs));

    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let text = |port: u16| {
        format!(
            "{}listen = \"127.0.0.1:{port}\"\n\n[[backup]]\nname = \"web\"\nresource_arn = \"{}\"\n\
             schedule = \"{} {} {} * * *\"\ndelete_after_days = 35\n",
            header(&sb.endpoint_url()),
            ec2(1),
            slot.second(),
            slot.minute(),
            slot.hour()
        )
    };
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let c1 = write_config(&da, &text(p1));
    let c2 = write_config(&db, &text(p2));
    let a = Daemon::start(&c1, &[]);
    let b = Daemon::start(&c2, &[]);
    a.wait_ready(Duration::from_secs(10));
    b.wait_ready(Duration::from_secs(10));
    let second = second_name("web", slot);
    a.wait_until("the slot's job COMPLETED", Duration::from_secs(30), || {
        sb.jobs()
            .iter()
            .any(|j| j.resource_arn == ec2(1) && j.state == "COMPLETED")
    });
    for d in [&a, &b] {
        d.wait_for("backup_finished", Duration::from_secs(15), |ev| {
            !finished(ev, "web").is_empty()
        });
    }

    // One backup of the configured instance, under the second name, with the configured
    // retention; the intruder's execution made its own job, which is not reported as ours.
    let executions = sb.executions();
    let names: Vec<&str> = executions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&first.as_str()) && names.contains(&second.as_str()));
    let ours: Vec<_> = sb
        .jobs()
        .into_iter()
        .filter(|j| j.resource_arn == ec2(1))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0].execution_name.as_deref(), Some(second.as_str()));
    for d in [&a, &b] {
        // At the slot; a replica that started while the intruder's execution still ran also
        // said so when it found it (and did not follow it as the slot's).
        let mismatch = d.named("execution_input_mismatch");
        assert!((1..=2).contains(&mismatch.len()), "{mismatch:#?}");
        for m in &mismatch {
            assert_eq!(m["level"], "ERROR");
            assert!(m["found_input"].as_str().unwrap().contains(&ec2(99)));
        }
        let done = finished(&d.events(), "web");
        assert_eq!(done.len(), 1, "{done:#?}");
        assert_eq!(done[0]["state"], "COMPLETED");
        assert_eq!(done[0]["resource_arn"], ec2(1));
        assert_eq!(done[0]["backup_job_id"], ours[0].id.as_str());
    }
    let (_, metrics) = scrape(p1, "/metrics");
    assert_eq!(
        metric(
            &metrics,
            "orchestrator_execution_input_mismatches_total{target=\"web\"}"
        ),
        a.named("execution_input_mismatch").len() as f64
    );
}
