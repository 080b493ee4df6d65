//! The validated configuration the daemon runs: what every other module reads.
//!
//! The bottom of the house: it imports no loader code, only the small value types it holds
//! ([`crate::arn`], [`crate::schedule`], [`crate::hooks`], [`crate::copies`], [`crate::lease`]).
//! [`crate::config`] builds it from `backups.toml`; the scheduler, launcher, tracker, status and
//! the command line read it.
//!
//! - [`rule`]: one [`Rule`] = one schedule of one backup target, with its [`RuleSettings`].
//! - [`config`]: the whole [`Config`] (rules in file order, globals, `[ha]`, selections).
//! - [`instances`]: the rules of every instance that has more than one ([`Instances`]).
//! - [`restore`]: a target's `restore` placement and its `restore_test` ([`RestoreTest`]).
//! - [`selection`]: a `[[backup]]` with `select_tags` ([`Selection`]) before it is resolved.

pub mod config;
pub mod instances;
pub mod restore;
pub mod rule;
pub mod selection;

pub use config::{Config, ContentHash, Pacing, RestoreGlobals, content_hash};
pub use instances::Instances;
pub use restore::{Pick, RestorePlacement, RestoreTest, Restores, ValidateDocument};
pub use rule::{CatchUp, Concurrency, Rule, RuleSettings};
pub use selection::Selection;
