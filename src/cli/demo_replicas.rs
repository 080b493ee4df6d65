//! `orchestrator demo --replicas N`: N daemon processes (this very binary) with the `[ha]` lease
//! against one in-process sandbox, which serves Step Functions, Backup and the lease table. One
//! replica holds the lease and fires, the others stand by; after a while the demo kills the
//! holder (`kill -9`) and reports how soon a standby took over. Each replica's log lines are
//! printed with its name in front. Who holds the lease is read from the sandbox's table, never
//! from a log line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sandbox::Sandbox;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::args::EXIT_FAILURE;
use super::demo::{demo_config, demo_sandbox};
use crate::lease::LEASE_NAME;

/// The demo's lease table (the sandbox serves any table name).
const TABLE: &str = "orchestrator-demo-lease";
/// The demo's lease: short, so the takeover comes within seconds.
const LEASE: Duration = Duration::from_secs(6);
/// How long the holder runs before it is killed, unless `--seconds` is shorter.
const KILL_AFTER: Duration = Duration::from_secs(15);
/// How long a replica may take to hold the lease (first start, or takeover).
const WAIT_HOLDER: Duration = Duration::from_secs(30);

/// The config of replica `owner`: the demo's targets plus the lease.
pub fn replica_config(endpoint: &str, owner: &str) -> String {
    format!(
        "{}\n[ha]\nlease_table = \"{TABLE}\"\nlease_duration = \"{}s\"\nrenew_interval = \"2s\"\nowner_id = \"{owner}\"\n",
        demo_config(endpoint),
        LEASE.as_secs()
    )
}

/// The lease holder in the sandbox's table.
fn holder(sandbox: &Sandbox) -> Option<String> {
    sandbox
        .dynamodb_items(TABLE)
        .into_iter()
        .find(|i| i["pk"]["S"] == LEASE_NAME)
        .and_then(|i| i["owner"]["S"].as_str().map(str::to_string))
}

/// Waits until `pred` holds of the holder, or `limit` passes.
async fn wait_holder(
    sandbox: &Sandbox,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(h) = holder(sandbox).filter(|h| pred(h)) {
            return Some(h);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Prints each line of `out` with `name` in front.
fn relay(name: String, out: impl AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Within 100 columns with the name in front.
            println!("{}", crate::telemetry::fit(&format!("[{name}] {line}")));
        }
    });
}

fn spawn(config: &Path, owner: &str) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(["--log-format", "pretty"])
        .env("AWS_ACCESS_KEY_ID", format!("demo-{owner}"))
        .env("AWS_SECRET_ACCESS_KEY", "demo")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove(crate::config::CONFIG_TOML_ENV)
        .env_remove("ORCHESTRATOR_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(out) = child.stdout.take() {
        relay(owner.to_string(), out);
    }
    if let Some(err) = child.stderr.take() {
        relay(owner.to_string(), err);
    }
    Ok(child)
}

/// SIGTERM (the hand-over a supervisor's stop sends), then waits.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Runs the demo; returns the process exit code.
pub(super) async fn replicas(count: usize, seconds: Option<u64>) -> i32 {
    let Some(sandbox) = demo_sandbox().await else {
        return EXIT_FAILURE;
    };
    let dir: PathBuf =
        std::env::temp_dir().join(format!("orchestrator-demo-{}", std::process::id()));
    let code = run(&sandbox, &dir, count, seconds).await;
    let _ = std::fs::remove_dir_all(&dir);
    let stats = sandbox.stats();
    println!(
        "demo: {} lease calls (PutItem, DeleteItem)",
        stats.by_operation.get("PutItem").copied().unwrap_or(0)
            + stats.by_operation.get("DeleteItem").copied().unwrap_or(0)
    );
    super::demo::print_summary(&sandbox.endpoint_url(), "").await;
    sandbox.shutdown().await;
    code
}

async fn run(sandbox: &Sandbox, dir: &Path, count: usize, seconds: Option<u64>) -> i32 {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("demo: {}: {e}", dir.display());
        return EXIT_FAILURE;
    }
    let started = Instant::now();
    let mut children: Vec<(String, Child)> = Vec::new();
    for i in 1..=count {
        let owner = format!("replica-{i}");
        let path = dir.join(format!("{owner}.toml"));
        let text = replica_config(&sandbox.endpoint_url(), &owner);
        let spawned = std::fs::write(&path, text).and_then(|()| spawn(&path, &owner));
        match spawned {
            Ok(child) => children.push((owner, child)),
            Err(e) => {
                eprintln!("demo: cannot start {owner}: {e}");
                return EXIT_FAILURE;
            }
        }
    }
    let Some(leader) = wait_holder(sandbox, WAIT_HOLDER, |_| true).await else {
        eprintln!("demo: no replica took the lease within {WAIT_HOLDER:?}");
        return EXIT_FAILURE;
    };
    println!("demo: {leader} holds the lease and fires; the other replicas stand by");
    let total = seconds.map(Duration::from_secs);
    let kill_after = total.map_or(KILL_AFTER, |t| (t / 2).min(KILL_AFTER));
    tokio::select! {
        () = tokio::time::sleep(kill_after.saturating_sub(started.elapsed())) => {}
        _ = tokio::signal::ctrl_c() => {
            for (_, c) in &mut children {
                terminate(c).await;
            }
            return 0;
        }
    }
    let Some(i) = children.iter().position(|(o, _)| *o == leader) else {
        return EXIT_FAILURE;
    };
    let (_, mut killed) = children.remove(i);
    let _ = killed.kill().await;
    let at = Instant::now();
    println!(
        "demo: killed the leader {leader} (kill -9); a standby takes over once its lease ({LEASE:?}) expires"
    );
    let Some(next) = wait_holder(sandbox, WAIT_HOLDER, |h| h != leader).await else {
        eprintln!("demo: no standby took over within {WAIT_HOLDER:?}");
        return EXIT_FAILURE;
    };
    println!(
        "demo: {next} took over {:.1} s after the kill (lease {LEASE:?}): it caught up the slots missed in the gap and follows the backups {leader} left running",
        at.elapsed().as_secs_f64()
    );
    let rest = async {
        match total {
            Some(t) => tokio::time::sleep(t.saturating_sub(started.elapsed())).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = rest => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    for (_, c) in &mut children {
        terminate(c).await;
    }
    0
}
