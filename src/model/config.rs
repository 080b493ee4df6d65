//! The whole validated config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::arn::StateMachineArn;
use crate::fasthash::FastMap;
use crate::lease::LeaseSettings;
use crate::telemetry::LogFormat;

use super::instances::Instances;
use super::rule::Rule;
use super::selection::Selection;

/// The validated config the daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (for logs).
    pub source: String,
    /// Region for the default credential chain when no ARN says otherwise.
    pub region: Option<String>,
    /// Overrides the AWS endpoint (tests, the sandbox); `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// First poll delay of an execution or job; doubles while nothing changes.
    pub poll_interval: Duration,
    /// Ceiling of the poll backoff.
    pub max_poll_interval: Duration,
    /// Log format (the CLI flag wins).
    pub log_format: LogFormat,
    /// Address of the health and metrics listener.
    pub listen: Option<SocketAddr>,
    /// API pacing.
    pub pacing: Pacing,
    /// How long SIGTERM waits for in-flight StartExecution calls.
    pub shutdown_grace: Duration,
    /// How far back restart recovery looks for our executions and jobs.
    pub recovery_lookback: Duration,
    /// Every rule of every target in file order (disabled ones included, flagged); a target's
    /// rules are consecutive. Shared with the scheduler.
    pub rules: Vec<Arc<Rule>>,
    /// `[ha]`: the leader lease; none: every replica fires (active-active).
    pub ha: Option<LeaseSettings>,
    /// The enabled rules of every instance that has more than one (the overlap rule's input).
    pub instances: Instances,
    /// `[[backup]]`s with `select_tags`, in file order: not in `rules` until resolved
    /// ([`crate::selection::effective`]).
    pub selections: Vec<Arc<Selection>>,
    /// How often each selection is resolved again.
    pub selection_refresh: Duration,
    /// Restores: the restore machine and the sweeper's pace.
    pub restore: RestoreGlobals,
    /// SHA-256 of the exact text this config was parsed from: `--watch`'s baseline, so an edit
    /// made at any moment after that read is seen as a change.
    pub content_hash: ContentHash,
}

/// The top-level restore settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreGlobals {
    /// `restore_state_machine_arn`: the stack's restore machine (`STACK-restore`).
    pub state_machine: Option<StateMachineArn>,
    /// `restore_sweep_interval`: how often the sweeper looks for expired restored instances.
    pub sweep_interval: Duration,
    /// `restore_sweep_grace`: how long past its expiry a restored instance may live.
    pub sweep_grace: Duration,
}

impl Default for RestoreGlobals {
    fn default() -> Self {
        RestoreGlobals {
            state_machine: None,
            sweep_interval: Duration::from_secs(15 * 60),
            sweep_grace: Duration::from_secs(30 * 60),
        }
    }
}

/// SHA-256 of a config's text.
pub type ContentHash = [u8; 32];

/// The [`ContentHash`] of `bytes`.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

/// API pacing (token buckets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// StartExecution calls per second.
    pub start_rate: f64,
    /// StartExecution burst.
    pub start_burst: u32,
    /// DescribeExecution / GetExecutionHistory calls per second.
    pub describe_rate: f64,
    /// DescribeBackupJob / ListBackupJobs calls per second.
    pub backup_read_rate: f64,
}

impl Config {
    /// The rules that fire.
    pub fn enabled_rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.rules.iter().filter(|r| r.settings.enabled)
    }

    /// Distinct state machines in use (selections' too), with the regions they run in.
    pub fn state_machines(&self) -> Vec<StateMachineArn> {
        let mut v: Vec<StateMachineArn> = self
            .rules
            .iter()
            .chain(self.selections.iter().flat_map(|s| s.templates.iter()))
            .map(|r| r.settings.state_machine.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The first rule of the target named `name`.
    pub fn first_rule_of(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| &*r.name == name)
    }

    /// The rule `run-now NAME` starts: the target's rule with the longest retention (the first
    /// on a tie), so a manual backup of a multi-rule target is kept as long as any.
    pub fn run_now_rule(&self, name: &str) -> Option<&Arc<Rule>> {
        let mut best: Option<&Arc<Rule>> = None;
        for r in self.rules.iter().filter(|r| &*r.name == name) {
            if best.is_none_or(|b| r.settings.delete_after_days > b.settings.delete_after_days) {
                best = Some(r);
            }
        }
        best
    }

    /// Counts by schedule group, for the summary `check` prints.
    pub fn groups(&self) -> BTreeMap<String, usize> {
        let mut m: FastMap<&str, usize> = FastMap::default();
        for r in self.enabled_rules() {
            *m.entry(r.settings.schedule.group_key()).or_insert(0) += 1;
        }
        m.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
    }
}
