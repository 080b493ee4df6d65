#!/usr/bin/env python3
"""The benchmark suite of `orchestrator` (issue 6). Python 3.11, standard library only.

Everything runs against the project's local AWS-compatible endpoint (`orchestrator sandbox`) on
127.0.0.1; no other address is ever contacted. Run it through `bench/run.sh`, which builds the
release binary and installs the AWS CLI for the cron comparison first.

Measures, at each size N (number of [[backup]] targets):
  1. `orchestrator check` wall time; process start -> config_loaded / schedules registered /
     restart recovery done; SIGHUP -> config_reloaded.
  2. RSS (VmRSS / VmHWM): idle, during a same-second burst of N fires, after tracking.
  3. Idle CPU (utime+stime) over a window with no fire due: identical vs distinct schedules.
  4. Fire accuracy: N targets on one 6-field schedule, delay = sandbox arrival - slot.
     Plus one run at the default pacing (100/s, burst 200) to check the pacing.
  5. Tracking cost: sandbox API calls per backup while the jobs run to their end.
  6. The same fire done by cron lines running `aws stepfunctions start-execution`.
  7. The issue's targets, pass/fail.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-backup"
LOOPBACK = "127.0.0.1"

# Sandbox job timing for every run: a job is CREATED for 5 s, RUNNING for 60 s.
JOB_PENDING_S = 5
JOB_RUNNING_S = 60

# The targets.
TARGET_RSS_MIB = 64
TARGET_IDLE_CPU_PCT = 1.0
TARGET_P99_MS = 1000

# Needles looked for in the daemon's JSON log (tracing-subscriber's JSON, no spaces).
EV_STARTED = b'"event":"execution_started"'
EV_FINISHED = b'"event":"backup_finished"'
EV_RETRY = b'"event":"execution_start_retry"'
EV_START_FAILED = b'"event":"execution_start_failed"'
EV_CALL_FAILED = b'"event":"aws_call_failed"'
EV_SKIPPED = b'"event":"slot_skipped"'
LV_WARN = b'"level":"WARN"'
LV_ERROR = b'"level":"ERROR"'
COUNTED = [EV_STARTED, EV_FINISHED, EV_RETRY, EV_START_FAILED, EV_CALL_FAILED, EV_SKIPPED,
           LV_WARN, LV_ERROR]
WATCHED = [b"config_loaded", b"schedules registered", b"restart recovery done",
           b"config_reloaded", b"config_reload_failed"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_env() -> dict:
    """The environment of every child: test credentials, no proxy, no inherited AWS settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "RUST_LOG"
           and not k.startswith("ORCHESTRATOR_")}
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


ENV = bench_env()
# Admin calls go straight to the loopback sandbox, never through a proxy.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, live and exited), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_ns(pid: int) -> dict:
    """On-CPU nanoseconds of each live thread (/proc/PID/task/TID/schedstat), by TID."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def mem_kib(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def reset_hwm(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0, needs the right to write clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mib(kib: float | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def stop_process(p: subprocess.Popen, sig=signal.SIGTERM, wait: float = 30) -> None:
    if p.poll() is not None:
        return
    try:
        p.send_signal(sig)
        p.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------

class Sandbox:
    def __init__(self, binary: str, workdir: str, tag: str, job_pending: float = JOB_PENDING_S,
                 job_running: float = JOB_RUNNING_S, extra: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.out = open(os.path.join(workdir, f"sandbox-{tag}.log"), "wb")
        self.p = subprocess.Popen(
            [binary, "sandbox", "--listen", f"{LOOPBACK}:{self.port}",
             "--job-pending", str(job_pending), "--job-running", str(job_running)] + (extra or []),
            stdout=self.out, stderr=subprocess.STDOUT, env=ENV)
        deadline = time.time() + 15
        while True:
            try:
                self.get("stats")
                return
            except OSError:
                if self.p.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the sandbox did not come up")
                time.sleep(0.05)

    def _call(self, method: str, path: str, timeout: float = 120):
        req = urllib.request.Request(f"{self.url}/_sandbox/{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with HTTP.open(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get(self, path: str):
        return self._call("GET", path)

    def post(self, path: str):
        return self._call("POST", path)

    def stop(self) -> None:
        stop_process(self.p, signal.SIGINT, 10)
        self.out.close()


# ---------------------------------------------------------------------------------------------
# The daemon and its log
# ---------------------------------------------------------------------------------------------

def parse_ts(s: str) -> float:
    """RFC 3339 UTC timestamp of tracing-subscriber -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    if not m:
        return dt.datetime.fromisoformat(s).timestamp()
    base = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


class LogFile:
    """Follows a JSON log file: counts needles cheaply, parses only the watched lines."""

    def __init__(self, path: str):
        self.path = path
        self.f = None
        self.partial = b""
        self.counts = {n: 0 for n in COUNTED}
        self.found: list[dict] = []
        self.samples: list[str] = []  # first warnings/errors, for the report
        self.last_finished_ts: float | None = None

    def pump(self) -> None:
        if self.f is None:
            try:
                self.f = open(self.path, "rb")
            except FileNotFoundError:
                return
        data = self.f.read()
        if not data:
            return
        data = self.partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.partial = data
            return
        self.partial = data[cut + 1:]
        body = data[:cut + 1]
        for n in COUNTED:
            self.counts[n] += body.count(n)
        if EV_FINISHED in body:
            last = body.rfind(EV_FINISHED)
            start = body.rfind(b"\n", 0, last) + 1
            end = body.find(b"\n", last)
            try:
                self.last_finished_ts = parse_ts(json.loads(body[start:end])["timestamp"])
            except (ValueError, KeyError):
                pass
        if any(w in body for w in WATCHED) or (len(self.samples) < 8 and (
                LV_WARN in body or LV_ERROR in body)):
            for line in body.split(b"\n"):
                if any(w in line for w in WATCHED):
                    try:
                        self.found.append(json.loads(line))
                    except ValueError:
                        pass
                elif len(self.samples) < 8 and (LV_WARN in line or LV_ERROR in line) \
                        and EV_SKIPPED not in line:
                    self.samples.append(line[:600].decode("utf-8", "replace"))

    def wait_for(self, pred, timeout: float, proc: subprocess.Popen | None = None,
                 start: int = 0) -> tuple[dict, int]:
        deadline = time.time() + timeout
        while True:
            self.pump()
            for i in range(start, len(self.found)):
                if pred(self.found[i]):
                    return self.found[i], i
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({proc.returncode}); see {self.path}")
            if time.time() > deadline:
                raise TimeoutError(f"no matching log line within {timeout:.0f} s in {self.path}")
            time.sleep(0.02)


def msg_is(text: str):
    return lambda o: o.get("message") == text or o.get("fields", {}).get("message") == text


def event_is(name: str):
    return lambda o: o.get("event") == name or o.get("fields", {}).get("event") == name


class Daemon:
    def __init__(self, binary: str, config: str, workdir: str, tag: str):
        self.log_path = os.path.join(workdir, f"daemon-{tag}.log")
        self.err = open(self.log_path + ".stderr", "wb")
        self.out = open(self.log_path, "wb")
        self.t0 = time.time()
        self.p = subprocess.Popen([binary, "--config", config], stdout=self.out,
                                  stderr=self.err, env=ENV)
        self.pid = self.p.pid
        self.log = LogFile(self.log_path)

    def wait(self, pred, timeout: float, start: int = 0):
        return self.log.wait_for(pred, timeout, self.p, start)

    def startup(self, timeout: float) -> dict:
        """Times from process start to the start-up log lines, seconds."""
        loaded, _ = self.wait(event_is("config_loaded"), timeout)
        registered, _ = self.wait(msg_is("schedules registered"), timeout)
        recovered, _ = self.wait(msg_is("restart recovery done"), timeout)
        return {
            "to_config_loaded_s": parse_ts(loaded["timestamp"]) - self.t0,
            "to_schedules_registered_s": parse_ts(registered["timestamp"]) - self.t0,
            "to_recovery_done_s": parse_ts(recovered["timestamp"]) - self.t0,
            "timers": registered.get("timers"),
            "schedule_groups": loaded.get("schedule_groups"),
        }

    def log_figures(self, samples: int) -> dict:
        """Counts of the watched log lines so far, and the first `samples` lines kept."""
        self.log.pump()
        return {"log_counts": {k.decode(): v for k, v in self.log.counts.items()},
                "log_samples": self.log.samples[:samples]}

    def stop(self) -> int | None:
        stop_process(self.p, signal.SIGTERM, 40)
        self.log.pump()
        self.out.close()
        self.err.close()
        return self.p.returncode


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

def write_config(path: str, n: int, schedule_of, endpoint: str, start_rate: float = 100000,
                 start_burst: int = 100000) -> None:
    """N targets; catch-up, recovery look-back, polling and overlap rule at their defaults."""
    parts = [
        "# Generated by bench/bench.py",
        f'state_machine_arn = "{SM_ARN}"',
        f'endpoint_url = "{endpoint}"',
        'log_format = "json"',
        f"start_rate = {start_rate}",
        f"start_burst = {start_burst}",
        "",
    ]
    for i in range(n):
        parts.append(
            f'[[backup]]\nname = "t{i:06d}"\n'
            f'resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-{i:017x}"\n'
            f'schedule = "{schedule_of(i)}"\n')
    with open(path, "w") as f:
        f.write("\n".join(parts))


def idle_hour_utc() -> int:
    """An hour of day far from now: no slot of a daily schedule in it fires during the run."""
    return (dt.datetime.now(dt.timezone.utc).hour + 12) % 24


def identical_schedule(_i: int) -> str:
    return f"0 0 {idle_hour_utc()} * * *"


def distinct_schedule_fn():
    h0 = (dt.datetime.now(dt.timezone.utc).hour + 6) % 24

    def of(i: int) -> str:
        # A different second/minute for each target (3,600 per hour), all 6-9 hours from now.
        return f"{i % 60} {(i // 60) % 60} {(h0 + i // 3600) % 24} * * *"
    return of


# ---------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------

# Runs a command and reports its wall time and rusage. A child's ru_maxrss starts at the RSS of
# the process it was forked from (Linux records the old mm's high-water mark at exec), so the
# command is forked from this small interpreter, not from bench.py with its large heap.
RUSAGE_HELPER = r"""
import json, os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - t, "code": os.waitstatus_to_exitcode(status),
                  "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss}))
"""


def run_measured(cmd: list[str], timeout: float = 300) -> tuple[dict, str]:
    p = subprocess.run([sys.executable, "-S", "-c", RUSAGE_HELPER, *cmd], capture_output=True,
                       env=ENV, timeout=timeout)
    return json.loads(p.stdout), p.stderr.decode()


def measure_check(binary: str, config: str, runs: int = 3) -> dict:
    walls, rss, cpus = [], [], []
    for _ in range(runs):
        m, err = run_measured([binary, "check", "--config", config])
        if m["code"] != 0:
            raise RuntimeError(f"check failed: {err[:2000]}")
        walls.append(m["wall_s"])
        cpus.append(m["cpu_s"])
        rss.append(m["maxrss_kib"])
    return {"wall_s_median": statistics.median(walls), "wall_s_all": walls,
            "cpu_s_median": statistics.median(cpus), "peak_rss_mib": mib(max(rss))}


def idle_cpu(pid: int, window: float) -> dict:
    """CPU over `window`: the 10 ms ticks of /proc/PID/stat, and the nanoseconds of schedstat
    (threads alive at the end; a thread that exited meanwhile is counted by the ticks only)."""
    c0, s0, t0 = cpu_seconds(pid), thread_cpu_ns(pid), time.time()
    time.sleep(window)
    c1, s1, t1 = cpu_seconds(pid), thread_cpu_ns(pid), time.time()
    used = c1 - c0
    precise = sum(v - s0.get(tid, 0) for tid, v in s1.items()) / 1e9
    span = t1 - t0
    return {"window_s": round(span, 2), "cpu_s_ticks": round(used, 3),
            "cpu_s": round(precise, 4), "threads": len(s1),
            "pct_one_core": round(100 * precise / span, 3),
            "pct_one_core_ticks": round(100 * used / span, 3),
            "cpu_s_per_hour": round(precise / span * 3600, 2)}


def measure_idle_run(binary, sandbox, workdir, n, schedule_of, tag, window, reloads) -> dict:
    cfg = os.path.join(workdir, f"{tag}.toml")
    write_config(cfg, n, schedule_of, sandbox.url)
    d = Daemon(binary, cfg, workdir, tag)
    try:
        res = {"startup": d.startup(timeout=300)}
        res["rss_after_startup_kib"] = mem_kib(d.pid)
        time.sleep(3)
        res["rss_idle_kib"] = mem_kib(d.pid)
        res["idle"] = idle_cpu(d.pid, window)
        res["rss_after_idle_kib"] = mem_kib(d.pid)
        times, peaks = [], []
        idx = 0
        for _ in range(reloads):
            reset_hwm(d.pid)
            t = time.time()
            d.p.send_signal(signal.SIGHUP)
            line, idx = d.wait(lambda o: event_is("config_reloaded")(o)
                               or event_is("config_reload_failed")(o), 300, start=idx)
            idx += 1
            if line.get("event") != "config_reloaded":
                raise RuntimeError(f"reload failed: {line}")
            times.append(parse_ts(line["timestamp"]) - t)
            time.sleep(1.0)
            peaks.append(mem_kib(d.pid)["VmHWM"])
        if reloads:
            res["reload_s_all"] = times
            res["reload_s_median"] = statistics.median(times)
            res["reload_peak_rss_kib"] = max(peaks)
            res["rss_after_reloads_kib"] = mem_kib(d.pid)
        res.update(d.log_figures(3))
        return res
    finally:
        res_code = d.stop()
        if res_code not in (0, None):
            log(f"{tag}: daemon exited with {res_code}")


def fire_time(margin: float) -> int:
    return int(math.ceil(time.time() + margin))


def measure_fire(binary, workdir, n, tag, margin, start_rate, start_burst, track_cap,
                 burst_cap) -> dict:
    """N targets on one schedule that fires once at T; delays, CPU, memory, tracking calls."""
    sandbox = Sandbox(binary, workdir, tag)
    try:
        T = fire_time(margin)
        at = dt.datetime.fromtimestamp(T, dt.timezone.utc)
        expr = f"{at.second} {at.minute} {at.hour} * * *"
        cfg = os.path.join(workdir, f"{tag}.toml")
        write_config(cfg, n, lambda _i: expr, sandbox.url, start_rate, start_burst)
        d = Daemon(binary, cfg, workdir, tag)
        res: dict = {"n": n, "schedule": expr, "slot": at.isoformat(),
                     "start_rate": start_rate, "start_burst": start_burst}
        try:
            res["startup"] = d.startup(timeout=max(30, T - time.time() - 2))
            if time.time() > T - 2.5:
                raise RuntimeError("the daemon was not ready 2.5 s before the slot")
            time.sleep(max(0, T - 3 - time.time()))
            sandbox.post("reset-stats")
            res["rss_before_kib"] = mem_kib(d.pid)
            res["fds_before"] = open_fds(d.pid)
            res["hwm_reset"] = reset_hwm(d.pid)
            time.sleep(max(0, T - 2 - time.time()))
            c0, w0 = cpu_seconds(d.pid), time.time()
            sb0 = cpu_seconds(sandbox.p.pid)
            max_rss = 0
            max_fds = 0
            last_poll = 0.0
            done_at = None
            while time.time() < T + burst_cap:
                max_rss = max(max_rss, mem_kib(d.pid)["VmRSS"])
                max_fds = max(max_fds, open_fds(d.pid))
                if time.time() - last_poll > 0.25:
                    last_poll = time.time()
                    if sandbox.get("stats").get("start_execution_accepted", 0) >= n:
                        done_at = time.time()
                        break
                d.log.pump()
                time.sleep(0.05)
            time.sleep(0.5)
            c1, w1 = cpu_seconds(d.pid), time.time()
            res["sandbox_burst_cpu_s"] = round(cpu_seconds(sandbox.p.pid) - sb0, 2)
            res["burst_max_open_fds"] = max_fds
            res["fds_after_burst"] = open_fds(d.pid)
            m = mem_kib(d.pid)
            res["burst_peak_rss_kib"] = max(m["VmHWM"] if res["hwm_reset"] else 0, max_rss)
            res["burst_sampled_max_rss_kib"] = max_rss
            res["burst_cpu_s"] = round(c1 - c0, 3)
            res["burst_wall_s"] = round(w1 - w0, 2)
            res["all_requested_in_cap"] = done_at is not None
            starts = sandbox.get("start-times")
            accepted = [s for s in starts if s["outcome"] == "accepted"]
            outcomes: dict = {}
            for s in starts:
                outcomes[s["outcome"]] = outcomes.get(s["outcome"], 0) + 1
            res["start_requests"] = len(starts)
            res["outcomes"] = outcomes
            res["distinct_names_accepted"] = len({s["name"] for s in accepted})
            slot_ms = T * 1000
            wrong_slot = sum(1 for s in accepted
                             if s.get("input_scheduled_for") != at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            res["accepted_with_other_slot"] = wrong_slot
            delays = [s["received_at_ms"] - slot_ms for s in accepted]
            firsts: dict = {}
            for s in starts:  # first request of each name, whatever its outcome
                firsts.setdefault(s["name"], s["received_at_ms"] - slot_ms)
            res["delay_ms"] = summarize(delays)
            res["first_request_delay_ms"] = summarize(list(firsts.values()))
            res["rate"] = rate_profile(sorted(s["received_at_ms"] for s in accepted), slot_ms,
                                       start_rate, start_burst)
            res["per_fire_cpu_ms"] = round(1000 * res["burst_cpu_s"] / max(1, len(accepted)), 4)
            if track_cap > 0:
                res["tracking"] = track(d, sandbox, n, T, track_cap)
            res.update(d.log_figures(4))
            return res
        finally:
            code = d.stop()
            res["exit_code"] = code
    finally:
        sandbox.stop()


def summarize(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {"count": len(values), "min": min(values), "p50": pct(values, 50),
            "p90": pct(values, 90), "p99": pct(values, 99), "max": max(values),
            "mean": round(statistics.fmean(values), 1)}


def rate_profile(times_ms: list[int], slot_ms: int, rate: float, burst: int) -> dict:
    """Arrival spread, the most requests seen in any 1-second window, and the pacing lag: how
    much later than the token bucket (full at the slot) allowed each k-th start arrived."""
    if not times_ms:
        return {}
    best, j = 0, 0
    for i, t in enumerate(times_ms):
        while times_ms[j] <= t - 1000:
            j += 1
        best = max(best, i - j + 1)
    spread = (times_ms[-1] - times_ms[0]) / 1000
    lag = [t - (slot_ms + max(0.0, (k + 1 - burst) / rate * 1000))
           for k, t in enumerate(times_ms)]
    return {"first_to_last_s": spread, "slot_to_last_s": (times_ms[-1] - slot_ms) / 1000,
            "max_in_any_1s": best,
            "mean_per_s": round(len(times_ms) / spread, 1) if spread > 0 else None,
            "pacing_min_s": max(0.0, (len(times_ms) - burst) / rate),
            "lag_ms": {"min": round(min(lag)), "p50": round(pct(lag, 50)),
                       "p99": round(pct(lag, 99)), "max": round(max(lag))}}


def track(d: Daemon, sandbox: Sandbox, n: int, T: int, cap: float) -> dict:
    """Waits until every backup_finished line is out (or `cap` s after the slot)."""
    c0 = cpu_seconds(d.pid)
    w0 = time.time()
    while time.time() < T + cap:
        d.log.pump()
        if d.log.counts[EV_FINISHED] >= n:
            break
        time.sleep(0.5)
    time.sleep(0.5)
    d.log.pump()
    stats = sandbox.get("stats")
    ops = dict(stats.get("by_operation", {}))
    starts = ops.pop("StartExecution", 0)
    finished = d.log.counts[EV_FINISHED]
    end = d.log.last_finished_ts if finished >= n and d.log.last_finished_ts else time.time()
    window_h = (end - T) / 3600
    calls = sum(ops.values())
    return {
        "finished": finished, "all_finished": finished >= n, "window_s": round(end - T, 1),
        "start_calls": starts, "tracking_calls_by_op": ops, "tracking_calls": calls,
        "calls_per_backup": round(calls / n, 4),
        "calls_per_backup_hour": round(calls / n / window_h, 3) if window_h > 0 else None,
        "cpu_s": round(cpu_seconds(d.pid) - c0, 2), "cpu_window_s": round(time.time() - w0, 1),
        "rss_after_kib": mem_kib(d.pid),
    }


def measure_cron(aws: str, binary: str, workdir: str, runs: int = 20) -> dict:
    """One crontab line per target: each fire is a fresh `aws stepfunctions start-execution`."""
    sandbox = Sandbox(binary, workdir, "cron")
    try:
        walls, cpus, rss, codes = [], [], [], []
        slot = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        for i in range(runs + 1):  # the first one warms the page cache and is not counted
            name = f"t{i:06d}-{slot.strftime('%Y%m%dT%H%M%SZ')}"
            inp = json.dumps({"ResourceArn": f"arn:aws:ec2:us-east-1:123456789012:instance/"
                                             f"i-{i:017x}", "Target": f"t{i:06d}",
                              "ScheduledFor": slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "Trigger": "Schedule"})
            cmd = [aws, "stepfunctions", "start-execution", "--endpoint-url", sandbox.url,
                   "--region", "us-east-1", "--state-machine-arn", SM_ARN, "--name", name,
                   "--input", inp, "--output", "json"]
            m, err = run_measured(cmd, timeout=60)
            if i == 0:
                if m["code"] != 0:
                    raise RuntimeError(f"aws cli failed: {err[:500]}")
                continue
            walls.append(m["wall_s"])
            cpus.append(m["cpu_s"])
            rss.append(m["maxrss_kib"])
            codes.append(m["code"])
        # The same cron line run twice for one slot (a second host, or a re-run).
        dup = subprocess.run(cmd, capture_output=True, env=ENV, timeout=60)
        stats = sandbox.get("stats")
        return {
            "runs": runs, "exit_codes_nonzero": sum(1 for c in codes if c),
            "wall_s_mean": statistics.fmean(walls), "wall_s_median": statistics.median(walls),
            "cpu_s_mean": statistics.fmean(cpus), "cpu_s_median": statistics.median(cpus),
            "peak_rss_mib_mean": mib(statistics.fmean(rss)), "peak_rss_mib_max": mib(max(rss)),
            "accepted_by_sandbox": stats.get("start_execution_accepted"),
            "same_slot_rerun": {"exit_code": dup.returncode,
                                "stderr": dup.stderr.decode().strip()[:300]},
            "version": subprocess.run([aws, "--version"], capture_output=True, env=ENV,
                                      text=True).stdout.strip()
                       or subprocess.run([aws, "--version"], capture_output=True, env=ENV,
                                         text=True).stderr.strip(),
        }
    finally:
        sandbox.stop()


# ---------------------------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------------------------

def machine(binary: str) -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"

    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem,
            "kernel": platform.release(), "rustc": run(["rustc", "--version"]),
            "python": platform.python_version(), "binary": run([binary, "--version"]),
            "git_commit": run(["git", "rev-parse", "--short", "HEAD"]),
            "git_dirty": bool(run(["git", "status", "--porcelain", "--untracked-files=no"])),
            "fd_limit": run(["bash", "-c", "ulimit -n"]),
            "ephemeral_ports": open("/proc/sys/net/ipv4/ip_local_port_range").read().split()}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--sizes", default="100 1000 10000 100000")
    ap.add_argument("--aws", default="")
    ap.add_argument("--results", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--idle-window", type=float, default=60)
    ap.add_argument("--big-idle-window", type=float, default=30,
                    help="idle window at N > 10,000")
    ap.add_argument("--budget", type=float, default=1380,
                    help="seconds this script may take; later steps are skipped past it")
    ap.add_argument("--build-seconds", type=float, default=None)
    ap.add_argument("--commands", default="")
    ap.add_argument("--built-commit", default="")
    args = ap.parse_args()

    started = time.time()
    binary = os.path.abspath(args.bin)
    sizes = [int(s) for s in args.sizes.split()]
    workdir = tempfile.mkdtemp(prefix="orchestrator-bench-")
    keep_logs = os.environ.get("BENCH_KEEP_LOGS") == "1"
    log(f"work dir {workdir} (logs {'kept' if keep_logs else 'removed at the end'})")
    results: dict = {"started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine(binary), "sizes": sizes, "per_size": {}, "skipped": [],
                     "settings": {"job_pending_s": JOB_PENDING_S, "job_running_s": JOB_RUNNING_S,
                                  "idle_window_s": args.idle_window,
                                  "big_idle_window_s": args.big_idle_window},
                     "build_seconds": args.build_seconds, "commands": args.commands,
                     "built_commit": args.built_commit}

    def left() -> float:
        return args.budget - (time.time() - started)

    # Rough cost of each size's steps, seconds, to skip what cannot finish within the budget.
    def cost(n: int) -> float:
        w = 2 * args.idle_window if n <= 10000 else args.big_idle_window
        return 150 + w + n / 1000 + 1.3e-8 * n * n  # the reload is quadratic in N

    try:
        for n in sizes:
            if left() < cost(n):
                results["skipped"].append(f"N={n}: not started, {left():.0f} s of the budget left")
                log(f"skipping N={n}: {left():.0f} s left")
                continue
            log(f"=== N = {n}")
            r: dict = {"loadavg_at_start": os.getloadavg()}
            results["per_size"][str(n)] = r
            window = args.idle_window if n <= 10000 else args.big_idle_window
            sandbox = Sandbox(binary, workdir, f"{n}")
            try:
                cfg = os.path.join(workdir, f"check-{n}.toml")
                write_config(cfg, n, identical_schedule, sandbox.url)
                r["config_bytes"] = os.path.getsize(cfg)
                r["check"] = measure_check(binary, cfg)
                log(f"check: {r['check']['wall_s_median']*1000:.0f} ms")
                # A reload at N = 100,000 takes minutes (see BENCHMARKS.md): one is enough there.
                r["identical"] = measure_idle_run(binary, sandbox, workdir, n, identical_schedule,
                                                  f"identical-{n}", window,
                                                  reloads=3 if n <= 10000 else 1)
                log(f"identical: startup {r['identical']['startup']}, idle "
                    f"{r['identical']['idle']}, reload {r['identical']['reload_s_median']:.3f} s")
                if n <= 10000:
                    dwin = window if n == 10000 else min(window, 30)
                    r["distinct"] = measure_idle_run(binary, sandbox, workdir, n,
                                                     distinct_schedule_fn(), f"distinct-{n}",
                                                     dwin, reloads=1)
                    log(f"distinct: startup {r['distinct']['startup']}, idle "
                        f"{r['distinct']['idle']}")
            finally:
                sandbox.stop()
            su = r["identical"]["startup"]["to_recovery_done_s"]
            margin = max(20.0, 2 * su + 12)
            big = n > 10000
            r["fire"] = measure_fire(binary, workdir, n, f"fire-{n}", margin, 100000, 100000,
                                     track_cap=150 if not big else 180,
                                     burst_cap=60 if not big else 150)
            f = r["fire"]
            log(f"fire: {f['delay_ms']}, requests {f['start_requests']}, outcomes "
                f"{f['outcomes']}, burst cpu {f['burst_cpu_s']} s, peak "
                f"{mib(f['burst_peak_rss_kib'])} MiB, tracking {f.get('tracking')}")
            save(results, args.results)

        results["pacing"] = []
        default_pacing = " ".join(str(x) for x in (1000, 10000) if x in sizes)
        for pn in [int(x) for x in os.environ.get("BENCH_PACING_N", default_pacing).split()]:
            # N - 200 starts at 100/s after the burst, plus the slot margin and the stop.
            if left() > 90 + pn / 100 + (60 if args.aws else 0):
                log(f"=== default pacing, N = {pn}")
                pr = measure_fire(binary, workdir, pn, f"pacing-{pn}", 20, 100, 200,
                                  track_cap=0, burst_cap=30 + pn / 80)
                results["pacing"].append(pr)
                log(f"pacing: {pr['rate']}, peak {mib(pr['burst_peak_rss_kib'])} MiB")
                save(results, args.results)
            else:
                results["skipped"].append(f"default pacing run at N={pn}: out of budget")

        if args.aws and os.path.exists(args.aws):
            if left() > 60:
                log("=== cron + aws cli")
                try:
                    results["cron"] = measure_cron(args.aws, binary, workdir)
                    log(f"cron: {results['cron']}")
                except Exception as e:  # noqa: BLE001 - reported in the results
                    results["cron"] = {"error": str(e)}
            else:
                results["skipped"].append("cron comparison: out of budget")
        else:
            results["cron"] = {"error": "the AWS CLI is not installed (.venv-bench)"}
    finally:
        results["suite_seconds"] = round(time.time() - started, 1)
        save(results, args.results)
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    md = render(results)
    write_md(args.md, md)
    log(f"done in {results['suite_seconds']:.0f} s; results in {args.results}, {args.md}")
    return 0


def save(results: dict, outdir: str) -> None:
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "latest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    stamp = results["started_utc"].replace("-", "").replace(":", "").replace("+0000", "Z")
    shutil.copyfile(path, os.path.join(outdir, f"run-{stamp}.json"))


# ---------------------------------------------------------------------------------------------
# BENCHMARKS.md
# ---------------------------------------------------------------------------------------------

BEGIN = "<!-- bench:results:begin (generated by bench/run.sh; edits between these markers are overwritten) -->"
END = "<!-- bench:results:end -->"


def write_md(path: str, section: str) -> None:
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def fmt(v, digits=1, unit="") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def ms(v_s) -> str:
    return "n/a" if v_s is None else f"{v_s * 1000:,.0f}"


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render(res: dict) -> str:
    m = res["machine"]
    per = res["per_size"]
    ns = sorted(per, key=int)
    out = []
    out.append(f"## Results of {res['started_utc']}\n")
    out.append(table(["machine", ""], [
        ["CPU", f"{m['nproc']} × {m['cpu_model']}"], ["RAM", m["mem_total"]],
        ["kernel", m["kernel"]], ["rustc", m["rustc"]], ["binary", m["binary"]],
        ["commit built", res.get("built_commit") or "?"],
        ["commit when the measures started",
         f"{m['git_commit']}{' (+ uncommitted changes)' if m['git_dirty'] else ''}"],
        ["open files limit / ephemeral ports", f"{m['fd_limit']} / {'-'.join(m['ephemeral_ports'])}"],
        ["load average (1 min) when each size started",
         ", ".join(f"N={int(n):,}: {per[n].get('loadavg_at_start', [0])[0]:.2f}" for n in ns)],
        ["suite wall time", f"{res.get('suite_seconds', 0) / 60:.1f} min (+ build "
                            f"{fmt(res.get('build_seconds'), 0)} s)"],
    ]))
    if res["skipped"]:
        out.append("\nNot measured in this run: " + "; ".join(res["skipped"]) + ".")

    # 1. Config and start-up.
    out.append("\n### 1. Config load, start-up, reload\n")
    out.append("`check` = wall time of `orchestrator check --config FILE` (median of 3). Start-up "
               "columns: from spawning the daemon to the timestamp of its log line. Reload: from "
               "`kill -HUP` to the `config_reloaded` line (median of 3, unchanged file).\n")
    rows = []
    for n in ns:
        r = per[n]
        i = r["identical"]
        rows.append([f"{int(n):,}", f"{r['config_bytes'] / 1e6:.2f} MB", ms(r["check"]["wall_s_median"]),
                     fmt(r["check"]["peak_rss_mib"]),
                     ms(i["startup"]["to_config_loaded_s"]),
                     ms(i["startup"]["to_schedules_registered_s"]),
                     ms(i["startup"]["to_recovery_done_s"]),
                     ms(i.get("reload_s_median")),
                     ms(r["distinct"]["startup"]["to_schedules_registered_s"]) if "distinct" in r else "n/a",
                     ms(r["distinct"].get("reload_s_median")) if "distinct" in r else "n/a"])
    out.append(table(["N", "config size", "check (ms)", "check peak RSS (MiB)",
                      "start → config_loaded (ms)", "start → schedules registered (ms)",
                      "start → recovery done (ms)", "SIGHUP → config_reloaded (ms)",
                      "distinct: start → registered (ms)", "distinct: reload (ms)"], rows))

    # 2. Memory.
    out.append("\n### 2. Memory (RSS)\n")
    out.append("Idle = VmRSS 3 s after start-up and again after the idle window. Burst peak = "
               "VmHWM reset (`/proc/PID/clear_refs` = 5) 2 s before the slot and read once all N "
               "StartExecution calls arrived (or the larger of that and 50 ms VmRSS samples). "
               "Reload peak = VmHWM reset before SIGHUP. Peak while tracking = VmHWM from that "
               "same reset until every backup of the burst finished (the burst and every poll "
               "round). After tracking = VmRSS once every backup finished.\n")
    rows = []
    for n in ns:
        r = per[n]
        i, f = r["identical"], r["fire"]
        d = r.get("distinct")
        rows.append([f"{int(n):,}", fmt(mib(i["rss_idle_kib"]["VmRSS"])),
                     fmt(mib(i["rss_after_idle_kib"]["VmRSS"])),
                     fmt(mib(i["rss_after_startup_kib"]["VmHWM"])),
                     fmt(mib(d["rss_idle_kib"]["VmRSS"])) if d else "n/a",
                     fmt(mib(i.get("reload_peak_rss_kib"))),
                     fmt(mib(f["burst_peak_rss_kib"])),
                     fmt(mib(f.get("tracking", {}).get("rss_after_kib", {}).get("VmHWM"))),
                     fmt(mib(f.get("tracking", {}).get("rss_after_kib", {}).get("VmRSS")))])
    out.append(table(["N", "idle RSS (MiB)", "idle RSS after window", "start-up peak (VmHWM)",
                      "idle RSS, distinct schedules", "reload peak", "burst peak (all N fire)",
                      "peak while tracking", "RSS after tracking"], rows))

    # 3. Idle CPU.
    out.append("\n### 3. Idle CPU\n")
    out.append("utime+stime from `/proc/PID/stat` (10 ms ticks) and the sum of the threads' "
               "`/proc/PID/task/*/schedstat` on-CPU nanoseconds (used for the % and per-hour "
               "columns) over a window with no slot due. "
               "*identical*: every target on one daily schedule (one timer). *distinct*: each "
               "target its own second/minute/hour (one timer per target).\n")
    rows = []
    for n in ns:
        for kind in ("identical", "distinct"):
            r = per[n].get(kind)
            if not r:
                continue
            rows.append([f"{int(n):,}", kind, fmt(r["startup"]["timers"]),
                         fmt(r["idle"]["window_s"], 0), fmt(r["idle"]["cpu_s_ticks"], 2),
                         fmt(r["idle"]["cpu_s"], 3), fmt(r["idle"]["pct_one_core"], 3),
                         fmt(r["idle"]["cpu_s_per_hour"], 1)])
    out.append(table(["N", "schedules", "timers", "window (s)", "CPU (s), ticks",
                      "CPU (s), schedstat", "% of one core", "CPU s / hour"], rows))

    # 4. Fire accuracy.
    out.append("\n### 4. Fire accuracy (all N on one 6-field schedule, one slot)\n")
    out.append("start_rate = start_burst = 100,000. Delay = sandbox arrival of the accepted "
               "StartExecution − the slot (ms). Burst CPU = daemon utime+stime from 2 s before "
               "the slot until all N calls arrived (+0.5 s), divided by N for the per-fire "
               "figure.\n")
    rows = []
    for n in ns:
        f = per[n]["fire"]
        dl = f["delay_ms"]
        rows.append([f"{int(n):,}", f"{dl.get('count', 0):,} / {int(n):,}",
                     fmt(f["start_requests"]), fmt(dl.get("min")), fmt(dl.get("p50")),
                     fmt(dl.get("p99")), fmt(dl.get("max")),
                     fmt(f["rate"].get("max_in_any_1s")), fmt(f["burst_cpu_s"], 2),
                     fmt(f["per_fire_cpu_ms"], 3), fmt(f.get("sandbox_burst_cpu_s"), 2),
                     fmt(f.get("burst_max_open_fds")),
                     fmt(f["log_counts"].get(EV_RETRY.decode())),
                     fmt(f["log_counts"].get(LV_ERROR.decode()))])
    out.append(table(["N", "accepted / N", "StartExecution requests", "min (ms)", "p50 (ms)",
                      "p99 (ms)", "max (ms)", "most in any 1 s", "daemon burst CPU (s)",
                      "daemon CPU per fire (ms)", "sandbox burst CPU (s)",
                      "daemon open fds (max)", "start retries logged", "ERROR lines"], rows))
    if res.get("pacing"):
        out.append("\nDefault pacing (start_rate = 100/s, start_burst = 200): the same fire. "
                   "*Pacing lag* = arrival of the k-th start − the earliest instant the token "
                   "bucket (full at the slot) allows it, slot + max(0, (k − burst)/rate); "
                   "negative would mean faster than configured.\n")
        rows = []
        for p in res["pacing"]:
            rp, dl, n = p["rate"], p["delay_ms"], p["n"]
            lag = rp.get("lag_ms", {})
            rows.append([f"{n:,}", f"{dl.get('count', 0):,} / {n:,}",
                         fmt(rp.get("slot_to_last_s"), 2), fmt(rp.get("pacing_min_s"), 2),
                         f"{rp.get('max_in_any_1s')} ({p['start_burst'] + p['start_rate']:g})",
                         f"{lag.get('min')} / {lag.get('p50')} / {lag.get('p99')} / {lag.get('max')}",
                         fmt(mib(p["burst_peak_rss_kib"])), fmt(p.get("burst_max_open_fds")),
                         fmt(p["log_counts"].get(EV_RETRY.decode())),
                         "yes" if pacing_ok(p) else "**no**"])
        out.append(table(["N", "accepted / N", "slot → last start (s)",
                          "pacing minimum (N − burst)/rate (s)",
                          "most in any 1 s (burst + rate; arrival jitter may add a few)",
                          "pacing lag min / p50 / p99 / max (ms)", "peak RSS (MiB)",
                          "open fds (max)", "start retries", "pacing respected"], rows))

    # 5. Tracking.
    out.append("\n### 5. Tracking cost\n")
    out.append(f"After the fire of §4 the sandbox runs each job {JOB_PENDING_S} s CREATED + "
               f"{JOB_RUNNING_S} s RUNNING; the daemon polls with the default poll_interval "
               "(30 s) / max_poll_interval (5 m), describe_rate 8/s, backup_read_rate 5/s. Window "
               "= slot → last `backup_finished` line. Calls = every AWS request the sandbox saw "
               "except StartExecution.\n")
    rows = []
    for n in ns:
        t = per[n]["fire"].get("tracking")
        if not t:
            continue
        ops = ", ".join(f"{k} {v:,}" for k, v in sorted(t["tracking_calls_by_op"].items()))
        rows.append([f"{int(n):,}", f"{t['finished']:,}", fmt(t["window_s"], 0),
                     fmt(t["tracking_calls"]), ops or "-", fmt(t["calls_per_backup"], 3),
                     fmt(t["calls_per_backup_hour"], 2), fmt(t["cpu_s"], 2)])
    out.append(table(["N", "finished", "window (s)", "calls", "by operation",
                      "calls per backup", "calls per backup-hour", "daemon CPU in window (s)"],
                     rows))

    # 6. cron.
    out.append("\n### 6. Side by side: cron + `aws stepfunctions start-execution`\n")
    c = res.get("cron", {})
    if "error" in c:
        out.append(f"Not measured: {c['error']}.")
    elif c:
        out.append(f"{c['runs']} sequential invocations of `{c['version']}` (one crontab line per "
                   "target: `S M H * * * aws stepfunctions start-execution --endpoint-url "
                   "http://127.0.0.1:PORT --state-machine-arn … --name … --input …`), measured "
                   "with `wait4()` rusage (what `/usr/bin/time -v` reports), each forked from a "
                   "small helper process so that its peak RSS is its own.\n")
        out.append(table(["per fire", "wall (ms)", "CPU user+sys (ms)", "peak RSS (MiB)",
                          "failed"], [[
            "aws CLI (mean)", ms(c["wall_s_mean"]), ms(c["cpu_s_mean"]),
            fmt(c["peak_rss_mib_mean"]), c["exit_codes_nonzero"]]]))
        rows = []
        for n in ns:
            f = per[n]["fire"]
            daemon_ms = f["per_fire_cpu_ms"]
            peak = mib(f["burst_peak_rss_kib"])
            rows.append([f"{int(n):,}", fmt(daemon_ms, 3), fmt(c["cpu_s_mean"] * 1000, 0),
                         f"{c['cpu_s_mean'] * 1000 / daemon_ms:,.0f}×" if daemon_ms else "n/a",
                         fmt(peak), fmt(c["peak_rss_mib_mean"] * int(n), 0),
                         f"{c['peak_rss_mib_mean'] * int(n) / peak:,.0f}×" if peak else "n/a",
                         fmt(c["wall_s_mean"] * int(n), 0)])
        out.append("\n" + table(["N", "daemon CPU per fire (ms)", "cron CPU per fire (ms)",
                                 "CPU ratio cron / daemon", "daemon peak RSS (MiB)",
                                 "cron: N processes at once (MiB)", "memory ratio",
                                 "cron: CPU for N fires (s)"], rows))
        dup = c["same_slot_rerun"]
        out.append(f"\nThe same cron line run a second time for the same slot exits "
                   f"{dup['exit_code']} (`{dup['stderr'][:160]}`): deduping needs the name to be "
                   "derived from the slot by the crontab line itself.")

    # 7. Targets.
    out.append("\n### 7. The issue's targets (this machine)\n")
    out.append(table(["target", "measured", "result"], targets(res)))
    return "\n".join(out) + "\n"


def pacing_ok(p: dict) -> bool:
    """All N started, and no k-th start arrived before the bucket allowed it (20 ms tolerance).
    (The most-in-any-1-s count is only indicative: arrival jitter can put the end of the burst
    and a full second of refills into one window.)"""
    return (p["delay_ms"].get("count") == p["n"]
            and p["rate"].get("lag_ms", {}).get("min", -1e9) >= -20)


def targets(res: dict) -> list[list]:
    per = res["per_size"]
    rows = []
    r = per.get("10000")
    if not r:
        return [["all", "N = 10,000 was not run", "n/a"]]
    i, f = r["identical"], r["fire"]
    # Every phase counts: idle, start-up, reload, the same-second burst, the peak while its N
    # backups are followed, the RSS left once every one finished, and the default-pacing run.
    phases = [("idle", mib(i["rss_idle_kib"]["VmRSS"])),
              ("start-up peak", mib(i["rss_after_startup_kib"]["VmHWM"])),
              ("reload peak", mib(i.get("reload_peak_rss_kib"))),
              ("same-second burst peak", mib(f["burst_peak_rss_kib"])),
              ("peak while tracking the burst's backups",
               mib(f.get("tracking", {}).get("rss_after_kib", {}).get("VmHWM"))),
              ("after tracking every backup",
               mib(f.get("tracking", {}).get("rss_after_kib", {}).get("VmRSS")))]
    for p in res.get("pacing", []):
        if p["n"] == 10000:
            phases.append(("default-pacing run peak", mib(p["burst_peak_rss_kib"])))
    phases = [(k, v) for k, v in phases if v is not None]
    over = [k for k, v in phases if v > TARGET_RSS_MIB]
    rows.append(["10,000 targets within 64 MiB RSS",
                 "; ".join(f"{k} {v} MiB" for k, v in phases),
                 "pass" if not over else f"**fail** ({', '.join(over)})"])
    ic = i["idle"]["pct_one_core"]
    rows.append(["idle CPU < 1 % of one core at 10,000 targets",
                 f"{ic:.2f} % (identical schedules)"
                 + (f"; {r['distinct']['idle']['pct_one_core']:.2f} % with 10,000 distinct "
                    "schedules" if "distinct" in r else ""),
                 "pass" if ic < TARGET_IDLE_CPU_PCT else "**fail**"])
    acc = f["delay_ms"].get("count", 0)
    rp = f["rate"]
    ok = acc == 10000 and f["outcomes"].get("accepted") == 10000
    parts = [f"start_rate 100,000/s: {acc:,} / 10,000 accepted, last one "
             f"{rp.get('slot_to_last_s')} s after the slot"]
    verdicts = [ok]
    for p in res.get("pacing", []):
        lag = p["rate"].get("lag_ms", {})
        parts.append(f"default pacing (100/s, burst 200) at N = {p['n']:,}: "
                     f"{p['delay_ms'].get('count', 0):,} accepted, last "
                     f"{p['rate'].get('slot_to_last_s')} s after the slot (pacing minimum "
                     f"{p['rate'].get('pacing_min_s'):.2f} s), lag p99 {lag.get('p99')} ms, "
                     f"{'never faster than configured' if pacing_ok(p) else 'NOT within pacing'}")
        if p["n"] == 10000:
            verdicts.append(pacing_ok(p) and lag.get("p99", 1e9) < 1000)
    rows.append(["10,000 same-second fires all requested within the configured pacing",
                 "; ".join(parts), "pass" if all(verdicts) else "**fail**"])
    p99 = f["delay_ms"].get("p99")
    rows.append(["p99 fire delay < 1 s (N = 10,000)", f"p99 {p99} ms, max {f['delay_ms'].get('max')} ms",
                 "pass" if p99 is not None and p99 < TARGET_P99_MS else "**fail**"])
    for n in sorted(per, key=int):
        if int(n) > 10000:
            g = per[n]["fire"]
            rows.append([f"(beyond the issue) N = {int(n):,}",
                         f"accepted {g['delay_ms'].get('count', 0):,}; p99 "
                         f"{g['delay_ms'].get('p99')} ms; burst peak "
                         f"{mib(g['burst_peak_rss_kib'])} MiB; idle "
                         f"{per[n]['identical']['idle']['pct_one_core']:.2f} %", "info"])
    return rows


if __name__ == "__main__":
    sys.exit(main())
