//! `orchestrator`: scheduled, on-demand AWS Backup jobs through AWS Step Functions.
//!
//! The flow of one backup, and the module that owns each step:
//! - [`config`]: `backups.toml` → a validated [`config::Config`] (ARNs, schedules, zones).
//! - [`schedule`]: pure cron maths: the three accepted syntaxes, time zones, daylight saving.
//! - [`scheduler`]: the timer loop (tokio-cron-scheduler); turns slots into [`launcher::Fire`]s.
//! - [`rules`]: several rules per instance (today's `[[backup]]`s, plans, inline rules) and
//!   what a fired slot becomes; [`overlap`]: pure: which slots of an instance merge.
//! - [`execution`]: pure: the execution name of a slot and the execution input; [`fasthash`]:
//!   the hasher of the maps a config load builds.
//! - [`launcher`]: a fire → a started execution: pacing, retries, overlap and catch-up rules.
//! - [`tracker`]: follows executions and backup jobs to their terminal state, then the copy
//!   jobs of completed backups; [`copies`]: pure: `copy_to` destinations, copy idempotency
//!   tokens, the `CopyTo` input member, and the life of one copy.
//! - [`lifecycle`]: pure: the states of one backup and the transitions worth logging.
//! - [`hooks`]: pure: hook documents, their timing settings, and what a hook execution's
//!   history says about them (`hook_finished`, downtime).
//! - [`aws`]: the AWS boundary: our traits and types; `aws::sfn` and `aws::backup` implement
//!   them with the SDK.
//! - [`lease`]: the leader lease (`[ha]`): pure holder/standby state, its driver over
//!   [`aws::LeaseTable`].
//! - [`recovery`]: at start, what was in flight and which missed slots to catch up.
//! - [`selection`]: pure: tag selections (`select_tags`), their expansion into targets named
//!   `{target}-{instance id}`, diffs and refresh backoff; [`refresh`]: the loop that resolves
//!   them through [`aws::TagSearch`] and what the daemon keeps of their last sets.
//! - [`metrics`], [`http`]: Prometheus metrics, `/healthz`, `/readyz`.
//! - [`signals`], [`telemetry`], [`clock`], [`pacing`]: OS signals, structured logs, the one
//!   clock, token buckets.
//! - [`status`]: pure: coverage (overdue = no success within the longest gap between slots plus a
//!   margin), the listing plan, the table and JSON of `orchestrator status`; `status::read`
//!   reads AWS Backup through [`aws::BackupJobs`].
//! - [`when`]: pure: `next --from` times (RFC 3339, or local in each target's zone).
//! - [`watch`]: pure: `--watch`'s decisions about each look at the config file.
//! - [`cli`]: the command line; [`dist`]: its man pages and shell completions, for packages;
//!   [`demo`]: `demo --replicas N`, replica processes with the lease and a killed leader.
//! - [`app`]: wires the above into the daemon.
//!
//! The local AWS-compatible endpoint that `demo`, `sandbox`, the tests and the benchmarks use is
//! the workspace crate `aws-sandbox` (`crates/aws-sandbox`).

pub mod app;
pub mod arn;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod copies;
pub mod demo;
pub mod dist;
pub mod execution;
pub mod fasthash;
pub mod hooks;
pub mod http;
pub mod launcher;
pub mod lease;
pub mod lifecycle;
pub mod metrics;
pub mod overlap;
pub mod pacing;
pub mod recovery;
pub mod refresh;
pub mod rules;
pub mod schedule;
pub mod scheduler;
pub mod selection;
pub mod signals;
pub mod status;
pub mod telemetry;
pub mod tracker;
pub mod watch;
pub mod when;
