//! The demo's closing summary: what happened to each target, counted from the endpoint's own
//! records (its `/_sandbox/` report of executions, backup jobs, copy jobs and hook commands),
//! never from log lines; merged and skipped slots, which only the daemon decides, from its
//! `/metrics` scraped just before it stopped. Then the commands to try next.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

/// GET `path` of `endpoint` (`http://IP:PORT`) as JSON, `Null` when it does not answer.
pub(super) async fn get(endpoint: &str, path: &str) -> Value {
    text(endpoint, path)
        .await
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null)
}

/// GET `path` of `endpoint`: the body (HTTP/1.0: never chunked).
pub(super) async fn text(endpoint: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// What the endpoint holds: executions, backup jobs, copy jobs, hook commands.
#[derive(Debug, Default)]
pub struct Records {
    /// `/_sandbox/executions`.
    pub executions: Vec<Value>,
    /// `/_sandbox/jobs`.
    pub jobs: Vec<Value>,
    /// `/_sandbox/copy-jobs`.
    pub copy_jobs: Vec<Value>,
    /// `/_sandbox/ssm-commands`.
    pub commands: Vec<Value>,
}

fn list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

const TERMINAL: [&str; 4] = ["COMPLETED", "FAILED", "ABORTED", "EXPIRED"];

impl Records {
    /// Reads them once every backup and copy job has ended (at most `wait`), so that the
    /// counts hold still.
    pub(super) async fn read(endpoint: &str, wait: Duration) -> Records {
        let start = Instant::now();
        loop {
            let r = Records {
                executions: list(get(endpoint, "/_sandbox/executions").await),
                jobs: list(get(endpoint, "/_sandbox/jobs").await),
                copy_jobs: list(get(endpoint, "/_sandbox/copy-jobs").await),
                commands: list(get(endpoint, "/_sandbox/ssm-commands").await),
            };
            let ended = |v: &Value| TERMINAL.contains(&v["state"].as_str().unwrap_or(""));
            if start.elapsed() >= wait || r.jobs.iter().chain(&r.copy_jobs).all(ended) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// One target's row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Row {
    /// Backup executions started.
    pub started: u64,
    /// Backup jobs COMPLETED.
    pub completed: u64,
    /// Backup jobs FAILED/ABORTED/EXPIRED, and executions that failed without a job.
    pub failed: u64,
    /// Backup jobs still running at the end.
    pub running: u64,
    /// Copy jobs COMPLETED.
    pub copies_completed: u64,
    /// Copy jobs that did not complete.
    pub copies_failed: u64,
    /// Hooked backups, and the longest downtime (pre hook start to post hook end), seconds.
    pub hooked: u64,
    /// The longest hook downtime, seconds.
    pub max_downtime: f64,
    /// Slots merged into an overlapping backup (the daemon's count).
    pub merged: u64,
    /// Slots skipped (the daemon's count).
    pub skipped: u64,
    /// Restore tests that passed.
    pub restores_passed: u64,
    /// Restore tests that failed.
    pub restores_failed: u64,
    /// Restore tests still running at the end.
    pub restores_running: u64,
}

/// The rows by target, from the records (and the daemon's last scrape, for merged/skipped).
pub fn rows(r: &Records, scrape: &str) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut target_of_job: BTreeMap<String, String> = BTreeMap::new();
    let mut target_of_resource: BTreeMap<String, String> = BTreeMap::new();
    let mut target_of_execution: BTreeMap<String, String> = BTreeMap::new();
    for e in &r.executions {
        let input: Value =
            serde_json::from_str(e["input"].as_str().unwrap_or("{}")).unwrap_or_default();
        let Some(target) = input["Target"].as_str() else {
            continue;
        };
        if input["Action"] == "test" {
            let row = rows.entry(target.to_string()).or_default();
            match e["status"].as_str().unwrap_or("") {
                "SUCCEEDED" => row.restores_passed += 1,
                "RUNNING" => row.restores_running += 1,
                _ => row.restores_failed += 1,
            }
            continue;
        }
        if input["Action"].as_str().is_some_and(|a| a != "backup") {
            continue;
        }
        let row = rows.entry(target.to_string()).or_default();
        row.started += 1;
        if let Some(res) = input["ResourceArn"].as_str() {
            target_of_resource.insert(res.to_string(), target.to_string());
        }
        target_of_execution.insert(
            e["name"].as_str().unwrap_or("").to_string(),
            target.to_string(),
        );
        match e["backup_job_id"].as_str() {
            Some(job) => {
                target_of_job.insert(job.to_string(), target.to_string());
            }
            None if e["status"] != "RUNNING" && e["status"] != "SUCCEEDED" => row.failed += 1,
            None => {}
        }
    }
    for j in &r.jobs {
        let Some(t) = j["id"].as_str().and_then(|id| target_of_job.get(id)) else {
            continue;
        };
        let row = rows.entry(t.clone()).or_default();
        match j["state"].as_str().unwrap_or("") {
            "COMPLETED" => row.completed += 1,
            s if TERMINAL.contains(&s) => row.failed += 1,
            _ => row.running += 1,
        }
    }
    for c in &r.copy_jobs {
        let Some(t) = c["resource_arn"]
            .as_str()
            .and_then(|a| target_of_resource.get(a))
        else {
            continue;
        };
        let row = rows.entry(t.clone()).or_default();
        match c["state"].as_str().unwrap_or("") {
            "COMPLETED" => row.copies_completed += 1,
            s if TERMINAL.contains(&s) || s == "PARTIAL" => row.copies_failed += 1,
            _ => {}
        }
    }
    hook_downtimes(r, &target_of_execution, &mut rows);
    slots_from_scrape(scrape, &mut rows);
    rows
}

/// Each hooked backup's downtime: its pre command's send to its post command's end.
fn hook_downtimes(
    r: &Records,
    target_of_execution: &BTreeMap<String, String>,
    rows: &mut BTreeMap<String, Row>,
) {
    let mut hooks: BTreeMap<&str, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for c in &r.commands {
        let e = hooks
            .entry(c["execution_name"].as_str().unwrap_or(""))
            .or_default();
        match c["phase"].as_str() {
            Some("pre") => e.0 = c["sent_at_ms"].as_f64(),
            Some("post") => e.1 = c["ended_at_ms"].as_f64(),
            _ => {}
        }
    }
    for (execution, (pre, post)) in hooks {
        let (Some(t), Some(pre), Some(post)) = (target_of_execution.get(execution), pre, post)
        else {
            continue;
        };
        let row = rows.entry(t.clone()).or_default();
        row.hooked += 1;
        row.max_downtime = row.max_downtime.max((post - pre) / 1000.0);
    }
}

/// Merged and skipped slots, from the daemon's scrape.
fn slots_from_scrape(scrape: &str, rows: &mut BTreeMap<String, Row>) {
    for line in scrape.lines() {
        let (family, is_merged) = if line.starts_with("orchestrator_slots_merged_total{") {
            ("merged", true)
        } else if line.starts_with("orchestrator_slots_skipped_total{") {
            ("skipped", false)
        } else {
            continue;
        };
        let _ = family;
        let target = line
            .split("target=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        let row = rows.entry(target.to_string()).or_default();
        if is_merged {
            row.merged += n;
        } else {
            row.skipped += n;
        }
    }
}

/// The table and the commands to try next, each line within 100 columns.
pub fn render(rows: &BTreeMap<String, Row>) -> String {
    let header = [
        "TARGET",
        "STARTED",
        "DONE",
        "FAILED",
        "COPIES",
        "MERGED/SKIPPED",
        "DOWNTIME",
        "RESTORES",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|(t, r)| {
            let failed = if r.running > 0 {
                format!("{} ({} running)", r.failed, r.running)
            } else {
                r.failed.to_string()
            };
            [
                t.clone(),
                r.started.to_string(),
                r.completed.to_string(),
                failed,
                format!("{}/{}", r.copies_completed, r.copies_failed),
                format!("{}/{}", r.merged, r.skipped),
                if r.hooked == 0 {
                    "-".to_string()
                } else {
                    format!("{:.1} s", r.max_downtime)
                },
                match (r.restores_passed + r.restores_failed, r.restores_running) {
                    (0, 0) => "-".to_string(),
                    (_, 0) => format!("{}/{}", r.restores_passed, r.restores_failed),
                    (_, n) => format!("{}/{} ({n} running)", r.restores_passed, r.restores_failed),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        crate::telemetry::fit(l.trim_end())
    };
    let mut out = String::from("demo summary, per target (counted from the endpoint's records):\n");
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(
        "STARTED: backup executions; DONE / FAILED: their backup jobs (FAILED also an execution\n\
         that made none); COPIES: copy jobs completed/failed; MERGED/SKIPPED: slots folded into\n\
         another backup / not started (the daemon's metrics); DOWNTIME: the longest hook downtime\n\
         (pre hook start to post hook end); RESTORES: restore tests passed/failed (restore, status\n\
         checks, validation document, then the restored instance deleted).\n\
         \n\
         Try next, on the example config:\n  \
         orchestrator check --config config/backups.example.toml   # validate; each target's next slot\n  \
         orchestrator next --config config/backups.example.toml --count 3   # fire times, zone and UTC\n  \
         orchestrator status --config config/backups.example.toml  # coverage from AWS Backup (AWS access)\n",
    );
    out
}
