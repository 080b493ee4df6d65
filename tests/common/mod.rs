//! Shared pieces of the end-to-end tests: the real binary as a child process, its JSON log lines,
//! real signals, and the sandbox endpoint.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sandbox::{Sandbox, SandboxConfig};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-backup";

/// A runtime of its own for the in-process sandbox, so the test thread may block while it serves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An instance ARN with a distinct id per `n`.
pub fn ec2(n: u32) -> String {
    format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{n:017x}")
}

/// A sandbox whose jobs are quick.
pub async fn sandbox(fail: &[String]) -> Sandbox {
    sandbox_running(fail, Duration::from_millis(1500)).await
}

/// A sandbox whose jobs run for `job_running` (after 0.5 s CREATED); `fail` end FAILED.
pub async fn sandbox_running(fail: &[String], job_running: Duration) -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            execution_delay: Duration::from_millis(100),
            job_pending: Duration::from_millis(500),
            job_running,
            fail_resources: fail.to_vec(),
            ..SandboxConfig::default()
        },
    )
    .await
    .expect("sandbox starts")
}

/// A config header pointing at `endpoint` with fast polling.
pub fn header(endpoint: &str) -> String {
    format!(
        "state_machine_arn = \"{SM}\"\nendpoint_url = \"{endpoint}\"\npoll_interval = \"200ms\"\nmax_poll_interval = \"1s\"\nshutdown_grace = \"5s\"\n"
    )
}

/// One `[[backup]]` table.
pub fn target(name: &str, n: u32, schedule: &str) -> String {
    format!(
        "\n[[backup]]\nname = \"{name}\"\nresource_arn = \"{}\"\nschedule = \"{schedule}\"\n",
        ec2(n)
    )
}

/// A config of `count` targets `{prefix}0…` on one schedule, overlap allowed (each slot starts
/// even while the previous backup runs, so every slot can be checked).
pub fn fleet(endpoint: &str, prefix: &str, count: u32, schedule: &str) -> String {
    let mut text = header(endpoint);
    text.push_str("[defaults]\nconcurrency = \"allow\"\n");
    for i in 0..count {
        text.push_str(&target(&format!("{prefix}{i}"), i + 1, schedule));
    }
    text
}

/// The orchestrator binary as a child process, its stdout parsed as JSON lines.
pub struct Daemon {
    pub child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    pub stderr: Arc<Mutex<String>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_orchestrator")
}

impl Daemon {
    /// Starts `orchestrator --config CONFIG ARGS…` with static test credentials.
    pub fn start(config: &Path, args: &[&str]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(config).args(args);
        Daemon::spawn(cmd)
    }

    /// Starts `orchestrator --config CONFIG ARGS…` signing its requests with `access_key`: the
    /// sandbox tells its calls from other replicas' (`StartTime::access_key`) and can fault its
    /// path only (`Faults::only_access_keys`).
    pub fn start_signed(config: &Path, args: &[&str], access_key: &str) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", access_key);
        Daemon::spawn(cmd)
    }

    /// Starts an arbitrary orchestrator command line (with the access key `test` unless the
    /// command sets one).
    pub fn spawn(mut cmd: Command) -> Daemon {
        if !cmd.get_envs().any(|(k, _)| k == "AWS_ACCESS_KEY_ID") {
            cmd.env("AWS_ACCESS_KEY_ID", "test");
        }
        cmd.env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,tokio_cron_scheduler=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The environment of whoever runs the tests must not leak a config in.
        if !cmd.get_envs().any(|(k, _)| k == "ORCHESTRATOR_CONFIG_TOML") {
            cmd.env_remove("ORCHESTRATOR_CONFIG_TOML");
        }
        let mut child = cmd.spawn().expect("orchestrator starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                l.lock().unwrap().push(v);
            }
        });
        let err = child.stderr.take().unwrap();
        let e = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = e.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon {
            child,
            lines,
            stderr,
        }
    }

    /// Every log line so far.
    pub fn events(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Log lines with `event == name`.
    pub fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|v| v["event"] == name)
            .collect()
    }

    /// Waits until `pred` holds over the log lines, or panics with the log after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[Value]) -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if pred(&self.events()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.dump();
        panic!("timed out after {timeout:?} waiting for {what}");
    }

    /// Waits until `state` holds (a sandbox record, a file, anything but a log line), or panics
    /// with the log after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, state: impl Fn() -> bool) {
        self.wait_for(what, timeout, |_| state());
    }

    /// Waits for the `ready` line: timers registered, restart recovery done, the reload loop
    /// (SIGHUP, `--watch`) running. Acting on `config_loaded` instead races start-up.
    pub fn wait_ready(&self, timeout: Duration) {
        self.wait_for("ready", timeout, |ev| {
            ev.iter().any(|v| v["event"] == "ready")
        });
    }

    /// Prints what the daemon said (for a failing test).
    pub fn dump(&self) {
        for v in self.events() {
            eprintln!("{v}");
        }
        eprintln!("stderr: {}", self.stderr.lock().unwrap());
    }

    /// Sends a real signal.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader threads drain.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                self.dump();
                panic!("did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `backup_finished` lines of one target.
pub fn finished(events: &[Value], target: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|v| v["event"] == "backup_finished" && v["target"] == target)
        .cloned()
        .collect()
}

/// How many `operation` requests the sandbox has received (counted on arrival, before any
/// injected latency).
pub fn requests(sb: &Sandbox, operation: &str) -> u64 {
    sb.stats().by_operation.get(operation).copied().unwrap_or(0)
}

/// A temp dir with a config file.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("backups.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// (target, slot) of every execution the endpoint holds, with how many executions each has.
pub fn slots(sb: &Sandbox) -> BTreeMap<(String, DateTime<Utc>), usize> {
    let mut m = BTreeMap::new();
    for e in sb.executions() {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let slot = DateTime::parse_from_rfc3339(input["ScheduledFor"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        *m.entry((input["Target"].as_str().unwrap().to_string(), slot))
            .or_insert(0) += 1;
    }
    m
}

/// A free local TCP port (for `listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on the daemon's listener: (status, the whole response).
pub fn scrape(port: u16, path: &str) -> (u16, String) {
    let rt = runtime();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf[9..12].parse().unwrap();
        (code, buf)
    })
}

/// The value of the first metric line starting with `prefix`.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

/// SDK settings for the sandbox at `endpoint`: test credentials, no retries (each fault is seen).
pub async fn sdk_config(endpoint: &str) -> aws_types::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}
