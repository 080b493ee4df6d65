//! What the monitoring tests share: the repository's deploy/prometheus tools, a Python that runs
//! them, Debian's `prometheus`, and a scrape of the daemon's `/metrics`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python with PyYAML for `deploy/prometheus/*.py`: `.venv-deploy`'s (made by
/// `deploy/validate.sh`, which CI runs first), else a small virtualenv of our own with the pinned
/// PyYAML of `deploy/requirements.txt`. `None` (with the reason) when neither can be had.
pub fn deploy_python() -> Result<PathBuf, String> {
    let venv = root().join(".venv-deploy/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    let own = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("venv-prometheus");
    let python = own.join("bin/python");
    let has_yaml = |p: &Path| {
        Command::new(p)
            .args(["-c", "import yaml"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && has_yaml(&python) {
        return Ok(python);
    }
    let pin = std::fs::read_to_string(root().join("deploy/requirements.txt"))
        .map_err(|e| format!("deploy/requirements.txt: {e}"))?
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("pyyaml=="))
        .map(str::to_string)
        .ok_or("no PyYAML pin in deploy/requirements.txt")?;
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&own)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &pin,
            ])
            .status()
            .is_ok_and(|s| s.success());
    if made && has_yaml(&python) {
        Ok(python)
    } else {
        Err(format!(
            ".venv-deploy is missing (run `bash deploy/validate.sh`) and a virtualenv with {pin} could not be made in {}",
            own.display()
        ))
    }
}

/// A program on the PATH, or `None`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Debian's `prometheus` (and its `promtool`), installed with apt-get when missing (as
/// `deploy/validate.sh` does). `Err` with the reason when it cannot be had.
pub fn prometheus() -> Result<PathBuf, String> {
    if let (Some(p), Some(_)) = (which("prometheus"), which("promtool")) {
        return Ok(p);
    }
    if which("apt-get").is_none() {
        return Err("no `prometheus` on the PATH and no apt-get to install it".into());
    }
    let installed = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null",
        ])
        .status()
        .is_ok_and(|s| s.success());
    match which("prometheus") {
        Some(p) if installed || p.exists() => Ok(p),
        _ => Err("Debian's prometheus package could not be installed (apt-get failed)".into()),
    }
}

/// The body of a `scrape` answer (after the blank line that ends the headers).
pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or(response, |(_, b)| b)
}

/// The value of the sample `name{labels}` (exactly), if the text has it.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `deploy/prometheus/check_promql.py --metrics FILE` on `scrape`: (success, its output).
pub fn check_promql(python: &Path, scrape: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrape.txt");
    std::fs::write(&file, scrape).unwrap();
    let out = Command::new(python)
        .arg(root().join("deploy/prometheus/check_promql.py"))
        .arg("--metrics")
        .arg(&file)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// GET `path` on 127.0.0.1:`port` (HTTP/1.0: never a chunked answer): (status, body), or
/// `None` while nothing listens there or the answer is cut.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.get(9..12)?.parse().ok()?;
    Some((code, body(&buf).to_string()))
}
