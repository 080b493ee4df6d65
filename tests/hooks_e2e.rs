//! The hook variant (pre/post commands through SSM) and a machine in another region, end to end:
//! the daemon reads the job from the execution history while the execution still runs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn with_commands(name: &str, n: u32, pre: &str, post: &str) -> String {
    format!(
        "{}pre_command = \"{pre}\"\npost_command = \"{post}\"\n",
        target(name, n, "*/3 * * * * *")
    )
}

#[test]
fn hooks_run_around_the_backup_and_their_failures_are_reported() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let eu_machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:orchestrator-backup";
    let text = format!(
        "{}{}{}{}{}state_machine_arn = \"{eu_machine}\"\n",
        header(&sb.endpoint_url()),
        with_commands("ok", 1, "systemctl stop app", "systemctl start app"),
        with_commands("pre-fails", 2, "/opt/quiesce.sh --fail", "true"),
        with_commands("post-fails", 3, "true", "exit 3 # fail"),
        target("eu", 4, "*/3 * * * * *").replace("us-east-1", "eu-west-1"),
    );
    let cfg = write_config(dir.path(), &text);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(
        "every target's first backup to end",
        Duration::from_secs(40),
        |ev| {
            ["ok", "pre-fails", "post-fails", "eu"]
                .iter()
                .all(|t| !finished(ev, t).is_empty())
        },
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let ev = d.events();

    // The job is learnt from the history while the execution still runs (it waits for the job).
    let ok_job = ev
        .iter()
        .find(|v| v["event"] == "backup_job_created" && v["target"] == "ok")
        .unwrap();
    let exec = sb
        .executions()
        .into_iter()
        .find(|e| e.arn == ok_job["execution_arn"])
        .unwrap();
    let created_at =
        chrono::DateTime::parse_from_rfc3339(ok_job["timestamp"].as_str().unwrap()).unwrap();
    let stopped = exec.stop_date.expect("the hook execution ended");
    assert!(
        created_at < stopped,
        "job known at {created_at}, execution ended at {stopped}"
    );
    let input: Value = serde_json::from_str(&exec.input).unwrap();
    assert_eq!(input["PreCommand"], "systemctl stop app");
    assert_eq!(input["PostCommand"], "systemctl start app");
    let ok = &finished(&ev, "ok")[0];
    assert_eq!(ok["state"], "COMPLETED");
    assert_eq!(ok["success"], true);

    // A failed pre command: no backup, a clear error.
    let pre = &finished(&ev, "pre-fails")[0];
    assert_eq!(pre["state"], "EXECUTION_FAILED");
    assert!(
        pre["error"]
            .as_str()
            .unwrap()
            .starts_with("PreCommandFailed"),
        "{pre}"
    );
    assert!(
        ev.iter()
            .any(|v| v["event"] == "execution_failed" && v["target"] == "pre-fails")
    );
    assert!(
        !ev.iter()
            .any(|v| v["event"] == "backup_job_created" && v["target"] == "pre-fails")
    );

    // A failed post command: the backup completed, and the failure is still reported.
    let post = &finished(&ev, "post-fails")[0];
    assert_eq!(post["state"], "COMPLETED");
    assert_eq!(post["success"], false);
    assert_eq!(post["level"], "ERROR");
    assert!(
        post["error"]
            .as_str()
            .unwrap()
            .starts_with("PostCommandFailed"),
        "{post}"
    );

    // A target whose machine lives in eu-west-1 is started and tracked there.
    let eu = &finished(&ev, "eu")[0];
    assert_eq!(eu["state"], "COMPLETED");
    assert!(
        eu["execution_arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:states:eu-west-1:")
    );
    rt.block_on(sb.shutdown());
}
