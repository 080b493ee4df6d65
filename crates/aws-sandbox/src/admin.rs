//! The admin surface under `/_sandbox/`: what the sandbox saw (executions, jobs, commands,
//! counters) and the knobs tests turn (faults, timings, rules, instances). JSON in and out;
//! never faulted, never counted.

use hyper::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::basics::now_ms;
use super::copy::CopyRule;
use super::faults::FaultsJson;
use super::jobs::JobTiming;
use super::reply::Reply;
use super::restores::RestoreRule;
use super::shared::{Inner, Shared};
use super::ssm::CommandRule;
use super::tagging::TaggedInstance;

/// `POST /_sandbox/restore-metadata`: what restores of one instance get back.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataSet {
    arn: String,
    metadata: std::collections::BTreeMap<String, String>,
}

/// Where the admin surface lives; no AWS path starts with it.
pub(crate) const PREFIX: &str = "/_sandbox/";

/// Answers one admin request (`path` without the prefix).
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    let reply = match *method {
        Method::GET => report(shared, path),
        Method::POST => set(shared, path, body),
        _ => None,
    };
    reply.unwrap_or_else(|| {
        Reply::json(
            404,
            &json!({ "error": format!("no admin endpoint {method} {PREFIX}{path}") }),
        )
    })
}

/// The GET endpoints: snapshots of what the sandbox holds now.
fn report(shared: &Shared, path: &str) -> Option<Reply> {
    let now = now_ms();
    let mut inner = shared.inner();
    let reply = match path {
        "stats" => Reply::json(200, &inner.ledger.stats),
        "executions" => Reply::json(200, &inner.world.executions(now)),
        "transitions" => Reply::json(200, &inner.world.transitions(now)),
        "jobs" => Reply::json(200, &inner.world.jobs(now)),
        "start-times" => Reply::json(200, &inner.ledger.start_times),
        "copy-jobs" => Reply::json(200, &inner.world.copy_jobs(now)),
        "restore-jobs" => Reply::json(200, &inner.world.restore_jobs(now)),
        "restored-instances" => Reply::json(200, &inner.world.restored_instances(now)),
        "recovery-points" => Reply::json(200, &inner.world.recovery_points(now)),
        "ssm-commands" => Reply::json(200, &inner.world.ssm_commands(now)),
        "instances" => Reply::json(200, &inner.tagging.list()),
        "faults" => {
            drop(inner);
            Reply::json(200, &FaultsJson::from(&*shared.faults()))
        }
        p => {
            let table = p.strip_prefix("dynamodb/")?;
            Reply::json(200, &inner.dynamodb.items(table))
        }
    };
    Some(reply)
}

/// The POST endpoints: knobs, each replacing what it sets.
fn set(shared: &Shared, path: &str, body: &[u8]) -> Option<Reply> {
    let reply = match path {
        "copy-rules" => apply(shared, body, |i, rules: Vec<CopyRule>| {
            i.world.set_copy_rules(rules);
            json!({ "ok": true })
        }),
        "restore-rules" => apply(shared, body, |i, rules: Vec<RestoreRule>| {
            i.world.set_restore_rules(rules);
            json!({ "ok": true })
        }),
        "restore-metadata" => apply(shared, body, |i, set: MetadataSet| {
            i.world.set_restore_metadata(&set.arn, set.metadata);
            json!({ "ok": true })
        }),
        "ssm-rules" => apply(shared, body, |i, rules: Vec<CommandRule>| {
            i.world.set_command_rules(rules);
            json!({ "ok": true })
        }),
        "job-timings" => apply(shared, body, |i, timings: Vec<JobTiming>| {
            i.world.set_job_timings(timings);
            json!({ "ok": true })
        }),
        "instances" => apply(shared, body, |i, list: Vec<TaggedInstance>| {
            i.tagging.put(list);
            json!({ "ok": true })
        }),
        "instances/remove" => apply(
            shared,
            body,
            |i, which: Vec<String>| json!({ "removed": i.tagging.remove(&which) }),
        ),
        "tagging-access" => apply(shared, body, |i, v: Value| {
            let denied = v["denied"].as_bool().unwrap_or(false);
            i.tagging.set_denied(denied);
            json!({ "denied": denied })
        }),
        "task-delays" => apply(shared, body, |i, delays: Vec<u64>| {
            i.world.set_task_delays(delays);
            json!({ "ok": true })
        }),
        "faults" => set_faults(shared, body),
        "reset-stats" => {
            let mut inner = shared.inner();
            inner.ledger.reset();
            Reply::json(200, &inner.ledger.stats)
        }
        _ => return None,
    };
    Some(reply)
}

/// Parses the body as `T` and applies it; a body that does not parse is a 400 naming why.
fn apply<T: DeserializeOwned>(
    shared: &Shared,
    body: &[u8],
    change: impl FnOnce(&mut Inner, T) -> Value,
) -> Reply {
    match serde_json::from_slice::<T>(body) {
        Ok(value) => Reply::json(200, &change(&mut shared.inner(), value)),
        Err(e) => Reply::json(400, &json!({ "error": e.to_string() })),
    }
}

fn set_faults(shared: &Shared, body: &[u8]) -> Reply {
    let parsed = serde_json::from_slice::<FaultsJson>(body)
        .map_err(|e| e.to_string())
        .and_then(FaultsJson::into_faults);
    match parsed {
        Ok(faults) => {
            let reply = Reply::json(200, &FaultsJson::from(&faults));
            *shared.faults() = faults;
            reply
        }
        Err(message) => Reply::json(400, &json!({ "error": message })),
    }
}
