//! What a newcomer reads: `orchestrator demo` into a pipe (no escape codes, every line within
//! 100 columns, no per-poll progress lines), its closing summary equal to the endpoint's own
//! records, and `check | head -2` ending quietly on the closed pipe.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sandbox::{JobState, Sandbox};
use backup_orchestrator::cli::{demo_instances, demo_sandbox_config};
use common::*;
use serde_json::Value;

/// Per target, from the sandbox's records alone: (started, completed, failed, copies
/// "ok/failed", longest hook downtime "x.y s" or "-").
fn expected(sb: &Sandbox) -> BTreeMap<String, (u64, u64, u64, String, String)> {
    /// started, completed, failed, copies completed, copies failed, longest downtime, hooked.
    type Counts = (u64, u64, u64, u64, u64, f64, bool);
    let mut by: BTreeMap<String, Counts> = BTreeMap::new();
    let jobs = sb.jobs();
    let mut resource_target = BTreeMap::new();
    let mut execution_target = BTreeMap::new();
    for e in sb.executions() {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let Some(t) = input["Target"].as_str() else {
            continue;
        };
        if input["Action"].as_str().is_some_and(|a| a != "backup") {
            continue;
        }
        resource_target.insert(
            input["ResourceArn"].as_str().unwrap().to_string(),
            t.to_string(),
        );
        execution_target.insert(e.name.clone(), t.to_string());
        let row = by.entry(t.to_string()).or_default();
        row.0 += 1;
        match e
            .backup_job_id
            .as_deref()
            .and_then(|id| jobs.iter().find(|j| j.id == id))
        {
            Some(j) if j.state == JobState::Completed => row.1 += 1,
            Some(j) if j.state == JobState::Failed => row.2 += 1,
            Some(j) => panic!("job {} still {:?} after the demo", j.id, j.state),
            None => {
                let status = format!("{:?}", e.status);
                if status != "Running" && status != "Succeeded" {
                    row.2 += 1;
                }
            }
        }
    }
    for c in sb.copy_jobs() {
        let t = &resource_target[&c.resource_arn];
        let row = by.get_mut(t).unwrap();
        match c.state {
            "COMPLETED" => row.3 += 1,
            _ => row.4 += 1,
        }
    }
    let mut hooks: BTreeMap<String, (Option<i64>, Option<i64>)> = BTreeMap::new();
    for c in sb.ssm_commands() {
        let e = hooks.entry(c.execution_name.clone()).or_default();
        match c.phase {
            "pre" => e.0 = Some(c.sent_at_ms),
            _ => e.1 = Some(c.ended_at_ms),
        }
    }
    for (execution, (pre, post)) in hooks {
        if let (Some(t), Some(pre), Some(post)) = (execution_target.get(&execution), pre, post) {
            let row = by.get_mut(t).unwrap();
            row.5 = row.5.max((post - pre) as f64 / 1000.0);
            row.6 = true;
        }
    }
    by.into_iter()
        .map(|(t, r)| {
            let downtime = if r.6 {
                format!("{:.1} s", r.5)
            } else {
                "-".into()
            };
            (t, (r.0, r.1, r.2, format!("{}/{}", r.3, r.4), downtime))
        })
        .collect()
}

#[test]
fn the_demo_into_a_pipe_has_no_escape_codes_short_lines_and_a_summary_equal_to_the_records() {
    let rt = runtime();
    let sb = rt
        .block_on(Sandbox::start(
            "127.0.0.1:0".parse().unwrap(),
            demo_sandbox_config(),
        ))
        .unwrap();
    sb.put_instances(demo_instances());
    let mut cmd = Command::new(bin());
    cmd.args(["demo", "--seconds", "16", "--endpoint", &sb.endpoint_url()])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color");
    let mut d = Daemon::spawn(cmd);
    assert_eq!(d.wait_exit(Duration::from_secs(90)).code(), Some(0));
    let lines: Vec<String> = d
        .events()
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .collect();
    let text = lines.join("\n");
    eprintln!("{text}");
    assert!(!text.contains('\x1b'), "escape codes in a pipe");
    for l in &lines {
        assert!(l.chars().count() <= 100, "wider than 100 columns: {l}");
    }
    assert!(
        !text.contains("backup_job_progress"),
        "progress lines are folded"
    );
    assert!(text.contains("backup_finished"), "{text}");
    // The summary's rows, as printed.
    let header = lines
        .iter()
        .position(|l| l.starts_with("TARGET") && l.contains("STARTED"))
        .expect("a summary table");
    let mut printed = BTreeMap::new();
    for l in &lines[header + 1..] {
        let cells: Vec<&str> = l
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if cells.len() != 8 {
            break;
        }
        printed.insert(
            cells[0].to_string(),
            (
                cells[1].parse::<u64>().unwrap(),
                cells[2].parse::<u64>().unwrap(),
                cells[3].parse::<u64>().unwrap(),
                cells[4].to_string(),
                cells[6].to_string(),
            ),
        );
    }
    let want = expected(&sb);
    assert_eq!(
        printed, want,
        "the summary differs from the sandbox's records"
    );
    assert!(want["db-1"].2 >= 1 && want["web-1"].1 >= 1, "{want:?}");
    assert_ne!(want["web-1"].4, "-", "web-1's hooks ran");
    assert!(text.contains("orchestrator status --config config/backups.example.toml"));
    rt.block_on(sb.shutdown());
}

/// Runs `orchestrator ARGS` into a pipe read for two lines, then closed: (those lines, exit
/// code, stderr).
fn into_closed_pipe(args: &[&str]) -> (String, Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    for _ in 0..2 {
        out.read_line(&mut first).unwrap();
    }
    drop(out);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (first, status.code(), err)
}

#[test]
fn check_and_next_into_a_pipe_closed_after_two_lines_end_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // `next` prints six lines a target: far more than a pipe's buffer holds.
    let config = write_config(
        dir.path(),
        &fleet("http://127.0.0.1:9", "t", 3000, "0 3 * * *"),
    );
    let config = config.to_str().unwrap();
    let (first, code, err) = into_closed_pipe(&["check", "--config", config]);
    assert!(first.contains(": valid"), "{first}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(0), "{err}");
    let (first, code, err) = into_closed_pipe(&["next", "--config", config, "--count", "5"]);
    assert!(first.starts_with("t0 "), "{first}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(0), "{err}");
}
