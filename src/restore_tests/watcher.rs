//! Every restore execution in flight (tests and sweeps), followed together. Each round one
//! ListExecutions of the restore machine's RUNNING executions (a page per 1,000) tells which of
//! them ended; only those are described, once each. A few in flight are described directly.
//! Each test's `restore_job_created` comes from its history, a few tests per round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::follow::{Followed, ended, log_job};
use super::parts::Parts;
use crate::arn::StateMachineArn;
use crate::aws::{ExecutionStatus, StepFunctions};
use crate::telemetry::event;

/// Up to this many in flight, each is described every round (cheaper than a listing).
const DESCRIBE_EACH: usize = 8;
/// Histories read per round for `restore_job_created` (the rest wait for the next rounds).
const HISTORIES_PER_ROUND: usize = 32;

/// One execution in flight.
struct Entry {
    f: Followed,
    job_logged: bool,
}

/// Follows what `rx` sends until `stop`.
pub(super) async fn run<S: StepFunctions, B, T>(
    parts: Arc<Parts<S, B, T>>,
    mut rx: mpsc::UnboundedReceiver<Followed>,
    stop: CancellationToken,
) {
    let mut inflight: HashMap<String, Entry> = HashMap::new();
    let mut wait = parts.poll_interval;
    let mut next = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            got = rx.recv() => match got {
                Some(f) => {
                    let key = f.execution_arn.clone();
                    let job_logged = f.resumed;
                    inflight.entry(key).or_insert(Entry { f, job_logged });
                    // Something new: look soon again.
                    wait = parts.poll_interval;
                    next = next.min(tokio::time::Instant::now() + wait);
                    continue;
                }
                None if inflight.is_empty() => return,
                None => {}
            },
            () = tokio::time::sleep_until(next), if !inflight.is_empty() => {}
        }
        let changed = round(&parts, &mut inflight).await;
        wait = if changed {
            parts.poll_interval
        } else {
            (wait * 2).min(parts.max_poll_interval)
        };
        next = tokio::time::Instant::now() + wait;
    }
}

/// One look at everything in flight; true if something ended or its job was seen.
async fn round<S: StepFunctions, B, T>(
    parts: &Parts<S, B, T>,
    inflight: &mut HashMap<String, Entry>,
) -> bool {
    let mut changed = false;
    let candidates: Vec<String> = if inflight.len() <= DESCRIBE_EACH {
        inflight.keys().cloned().collect()
    } else {
        match running(parts, inflight).await {
            Some(running) => inflight
                .keys()
                .filter(|k| !running.contains(*k))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    };
    for key in candidates {
        parts.describes.acquire().await;
        let d = match parts.sfn.describe_execution(&key).await {
            Ok(d) => d,
            Err(e) => {
                warn!(event = event::RESTORE_API_RETRY, execution_arn = %key, error = %e,
                    "cannot read the restore execution; trying again");
                continue;
            }
        };
        if d.status == ExecutionStatus::Running {
            continue;
        }
        let entry = inflight.remove(&key).expect("in flight");
        if !entry.job_logged && entry.f.kind != "sweep" {
            log_job(parts, &entry.f).await;
        }
        ended(parts, &entry.f, d);
        changed = true;
    }
    let mut looked = 0;
    for entry in inflight.values_mut() {
        if entry.job_logged || entry.f.kind == "sweep" {
            continue;
        }
        if looked == HISTORIES_PER_ROUND {
            break;
        }
        looked += 1;
        entry.job_logged = log_job(parts, &entry.f).await;
        changed |= entry.job_logged;
    }
    changed
}

/// The RUNNING executions of every machine with one in flight; `None` if a listing failed
/// (nothing is judged ended this round).
async fn running<S: StepFunctions, B, T>(
    parts: &Parts<S, B, T>,
    inflight: &HashMap<String, Entry>,
) -> Option<HashSet<String>> {
    let machines: HashSet<String> = inflight.keys().filter_map(|k| machine_of(k)).collect();
    let mut out = HashSet::new();
    for m in machines {
        let machine = StateMachineArn::parse(&m).ok()?;
        let mut token = None;
        loop {
            parts.describes.acquire().await;
            let page = match parts
                .sfn
                .list_executions(&machine, Some(ExecutionStatus::Running), token.take())
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    warn!(event = event::RESTORE_API_RETRY, error = %e,
                        "cannot list the restore machine's running executions; trying again");
                    return None;
                }
            };
            out.extend(page.items.into_iter().map(|e| e.execution_arn));
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    Some(out)
}

/// `arn:…:execution:MACHINE:NAME` → `arn:…:stateMachine:MACHINE`.
fn machine_of(execution_arn: &str) -> Option<String> {
    let (head, _name) = execution_arn.rsplit_once(':')?;
    Some(head.replacen(":execution:", ":stateMachine:", 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_execution_names_its_machine() {
        assert_eq!(
            super::machine_of("arn:aws:states:us-east-1:1:execution:x-restore:test-web-1"),
            Some("arn:aws:states:us-east-1:1:stateMachine:x-restore".to_string())
        );
    }
}
