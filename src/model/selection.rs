//! A `[[backup]]` with `select_tags`, before it is resolved into rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::rule::Rule;

/// One `[[backup]]` with `select_tags`: what it matches and what each match becomes. What it
/// keeps, how it expands and how two resolutions differ is [`crate::selection`].
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The target's name: the prefix of every expanded target's name.
    pub name: String,
    /// `select_tags`: all must match.
    pub select: BTreeMap<String, String>,
    /// `exclude_tags`: any match excludes.
    pub exclude: BTreeMap<String, String>,
    /// The partition, region and account (its state machine's).
    pub partition: String,
    /// The region searched.
    pub region: String,
    /// The account the instances belong to.
    pub account: String,
    /// One rule per schedule, with a placeholder instance; each match gets a copy.
    pub templates: Vec<Arc<Rule>>,
}
