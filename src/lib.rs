//! `orchestrator`: scheduled, on-demand AWS Backup jobs through AWS Step Functions.
//!
//! The map, by layer, bottom up. A module imports only from its own layer or the ones below
//! (`tests/module_graph.rs` fails CI on any import circle).
//!
//! **Pure logic** (no I/O, no clock):
//! - [`arn`]: typed ARNs; [`schedule`]: cron maths in three syntaxes, zones, daylight saving;
//!   [`overlap`]: which slots of an instance merge; [`pacing`]: token buckets; [`fasthash`]: the
//!   hasher of a config load's maps.
//! - [`execution`]: execution names of slots and the execution input (the contract with the
//!   state machine); [`hooks`]: hook documents and what a hook execution's history says;
//!   [`copies`]: `copy_to` destinations, copy tokens and the life of one copy; [`lifecycle`]: the
//!   life of one backup and the changes worth a log line; [`restore`]: the restore machine's
//!   names and input, which recovery point a restore takes, what its report says.
//!
//! **The model** ([`model`]): the validated config every module reads: a [`model::Rule`] per
//! schedule of a target, its [`model::RuleSettings`], the [`model::Config`].
//!
//! **Domain logic over the model** (pure):
//! - [`rules`]: what a fired slot of an instance with several rules becomes; [`selection`]: tag
//!   selections and their expansion into rules; [`status`]: coverage (overdue or not), the table
//!   and JSON of `orchestrator status` ([`status::read`] reads AWS Backup for it);
//!   [`config_watch`]: `--watch`'s decisions about each look at the config file; [`stack`]: what
//!   the default stack refuses that a config may ask for.
//! - [`config`]: `backups.toml` into the model, in named steps (pieces, globals, plans, one
//!   `[[backup]]` into rules, diagnostics with file:line:column).
//!
//! **The AWS boundary** ([`aws`]): our traits and types; `aws::sfn`, `aws::backup`,
//! `aws::dynamodb`, `aws::tagging` implement them with the SDK; `aws::fake` in memory.
//!
//! **Running parts** (async, over the boundary's traits):
//! - [`scheduler`]: the timers (tokio-cron-scheduler), slots into [`launcher::Fire`]s;
//!   [`launcher`]: a fire into a started execution (pacing, retries, overlap, catch-up);
//!   [`in_flight`]: what each instance has in flight.
//! - [`tracker`]: follows executions and their jobs (backups, copies) to their end, one generic
//!   poll round per kind; [`recovery`]: at start, what was in flight and which missed slots to
//!   catch up; [`refresh`]: resolves tag selections; [`lease`]: the `[ha]` leader lease;
//!   [`restore_tests`]: scheduled restore tests (one execution per slot, followed to its end)
//!   and the sweeper of restored instances past their expiry;
//!   [`coverage`]: each target's expected interval and last successes (seeded from AWS Backup
//!   through [`status::read`]) for the metrics the alert rules read.
//!
//! **Wiring** ([`app`]: the daemon's phases), with [`metrics`], [`http`] (`/healthz`,
//! `/readyz`, `/metrics`), [`signals`], [`telemetry`] (structured logs), [`clock`].
//!
//! **Command line** ([`cli`]): one command, one file.
//!
//! The local AWS-compatible endpoint that `demo`, `sandbox`, the tests and the benchmarks use is
//! the workspace crate `aws-sandbox` (`crates/aws-sandbox`).

// Pure logic.
pub mod arn;
pub mod copies;
pub mod execution;
pub mod fasthash;
pub mod hooks;
pub mod lifecycle;
pub mod overlap;
pub mod pacing;
pub mod restore;
pub mod schedule;

// The model, and the domain logic over it.
pub mod config;
pub mod config_watch;
pub mod model;
pub mod rules;
pub mod selection;
pub mod stack;
pub mod status;

// The AWS boundary.
pub mod aws;

// Running parts.
pub mod coverage;
pub mod in_flight;
pub mod launcher;
pub mod lease;
pub mod recovery;
pub mod refresh;
pub mod restore_tests;
pub mod scheduler;
pub mod tracker;

// Wiring.
pub mod app;
pub mod clock;
pub mod http;
pub mod metrics;
pub mod signals;
pub mod telemetry;

// Command line.
pub mod cli;
