//! What the sandbox records about the requests it answered: counters by operation and by
//! client, and every StartExecution with its arrival time (to measure how late slots fire).

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters of what the sandbox answered, since start or the last reset.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// AWS requests received (admin requests are not counted).
    pub requests: u64,
    /// AWS requests by operation name.
    pub by_operation: BTreeMap<String, u64>,
    /// AWS requests by the access key id that signed them, then by operation (unsigned
    /// requests are not counted here): which client made which calls.
    pub by_access_key: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests throttled, answered 5xx or dropped, plus connections dropped on accept.
    pub faults_injected: u64,
    /// StartExecution calls that created an execution.
    pub start_execution_accepted: u64,
    /// StartExecution calls answered with an existing RUNNING execution.
    pub start_execution_duplicates: u64,
    /// StartExecution calls refused with ExecutionAlreadyExists.
    pub already_exists: u64,
    /// Requests that waited for injected latency.
    pub delayed: u64,
}

/// One StartExecution request as it arrived: for measuring how late a slot was fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartTime {
    /// The execution name asked for.
    pub name: String,
    /// `ScheduledFor` from the input, when present.
    pub input_scheduled_for: Option<String>,
    /// When the request arrived, epoch milliseconds by the sandbox's clock.
    pub received_at_ms: i64,
    /// `accepted`, `duplicate`, `already_exists`, `rejected`, `throttled`, `server_error`
    /// or `dropped`.
    pub outcome: &'static str,
    /// The access key id that signed the request (SigV4 `Credential=`), when signed: which
    /// client sent it.
    pub access_key: Option<String>,
}

/// The counters and the start times, which are reset together.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub stats: Stats,
    pub start_times: Vec<StartTime>,
}

impl Ledger {
    /// Counts one AWS request: by operation, by signing key, and whether it was faulted or
    /// delayed.
    pub(crate) fn count(
        &mut self,
        operation: &str,
        access_key: Option<&str>,
        faulted: bool,
        delayed: bool,
    ) {
        let stats = &mut self.stats;
        stats.requests += 1;
        *stats.by_operation.entry(operation.to_string()).or_default() += 1;
        if let Some(key) = access_key {
            *stats
                .by_access_key
                .entry(key.to_string())
                .or_default()
                .entry(operation.to_string())
                .or_default() += 1;
        }
        if faulted {
            stats.faults_injected += 1;
        }
        if delayed {
            stats.delayed += 1;
        }
    }

    /// Forgets every counter and start time.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}
