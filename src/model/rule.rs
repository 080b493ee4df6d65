//! One rule of one backup target: the unit that fires.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::arn::{InstanceArn, StateMachineArn};
use crate::copies::{CopyPlan, Destination};
use crate::execution;
use crate::hooks::{Document, OnPreHookFailure, PostHookWhen};
use crate::schedule::Schedule;

/// What to do about a slot missed while the daemon was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Start the most recent missed slot once, if within the starting deadline.
    #[default]
    Latest,
    /// Never start a missed slot.
    None,
}

/// What to do when a slot fires while the previous backup of the same resource still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Skip the slot and log it (AWS Backup runs one job per resource at a time anyway).
    #[default]
    Forbid,
    /// Start it regardless.
    Allow,
}

/// One rule of one backup target: the unit that fires. A `[[backup]]` with `schedule` is one
/// rule (its settings' `rule` is `None`); one with `plan` or `[[backup.rule]]`s is one rule per
/// plan rule, all with the target's name. Several rules may name the same instance (see
/// [`crate::rules`]).
///
/// Its own part is the target's name and the instance; everything else is its
/// [`RuleSettings`], shared by every rule set alike (a fleet on one plan shares one per plan
/// rule): read them with [`Rule::settings`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The target's name (unique per `[[backup]]`); appears in logs and execution names.
    /// Shared by every rule of the target.
    pub name: Arc<str>,
    /// The instance.
    pub resource_arn: InstanceArn,
    /// The rule's settings (shared).
    pub settings: Arc<RuleSettings>,
}

/// What a rule does, apart from its target's name and instance (see [`Rule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSettings {
    /// The rule's name in the compact form; `None` for a `[[backup]]` with its own `schedule`.
    pub rule: Option<Arc<str>>,
    /// When, in which zone (shared by every target on one plan rule).
    pub schedule: Arc<Schedule>,
    /// The machine that runs its backup.
    pub state_machine: StateMachineArn,
    /// False: parsed and validated, never fired.
    pub enabled: bool,
    /// Missed-slot policy.
    pub catch_up: CatchUp,
    /// A missed slot older than this is skipped; also the deadline for start retries.
    pub starting_deadline: Duration,
    /// Overlap policy.
    pub concurrency: Concurrency,
    /// Upper bound of a stable per-slot delay that spreads a same-second storm.
    pub jitter: Duration,
    /// StartBackupJob StartWindowMinutes.
    pub start_window_minutes: u32,
    /// StartBackupJob CompleteWindowMinutes.
    pub complete_window_minutes: u32,
    /// Lifecycle DeleteAfterDays.
    pub delete_after_days: u32,
    /// SSM command before the backup (per target: every rule of it runs it).
    pub pre_command: Option<Arc<str>>,
    /// SSM command after the backup.
    pub post_command: Option<Arc<str>>,
    /// SSM document run before the backup (instead of `pre_command`).
    pub pre_document: Option<Arc<Document>>,
    /// SSM document run after the backup starts (instead of `post_command`).
    pub post_document: Option<Arc<Document>>,
    /// When the post hook runs.
    pub post_hook_when: PostHookWhen,
    /// How long the post hook waits for the job to start at most.
    pub hook_max_downtime: Duration,
    /// What a failed pre hook means.
    pub on_pre_hook_failure: OnPreHookFailure,
    /// StartBackupJob `BackupOptions: {"WindowsVSS": "enabled"}`.
    pub windows_vss: bool,
    /// `copy_to`: where each COMPLETED backup is copied (empty: no copies).
    pub copy_to: Arc<[Destination]>,
    /// The target's restore placement and restore test (one per target: every rule of it
    /// shares them).
    pub restores: Arc<super::restore::Restores>,
}

// Hashes the fields that tell most rules apart; equal settings hash alike (a subset of `Eq`).
impl std::hash::Hash for RuleSettings {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rule.hash(state);
        self.schedule.group_key().hash(state);
        self.state_machine.hash(state);
        self.delete_after_days.hash(state);
        self.pre_command.hash(state);
        self.post_command.hash(state);
    }
}

impl RuleSettings {
    /// True when the machine runs a pre or post hook for this rule.
    pub fn has_hooks(&self) -> bool {
        self.pre_command.is_some()
            || self.post_command.is_some()
            || self.pre_document.is_some()
            || self.post_document.is_some()
    }

    /// True when a post hook runs.
    pub fn has_post_hook(&self) -> bool {
        self.post_command.is_some() || self.post_document.is_some()
    }
}

impl Rule {
    /// The rule's settings.
    pub fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    /// The settings to change (copy on write: changing one rule never changes another's).
    pub fn settings_mut(&mut self) -> &mut RuleSettings {
        Arc::make_mut(&mut self.settings)
    }

    /// The part of execution names that stands for this rule: the target's name for a
    /// `[[backup]]` with its own schedule (so its execution names never change),
    /// `{target}-{rule}` for a rule of a plan or of `[[backup.rule]]`.
    pub fn slot_key(&self) -> String {
        match &self.settings.rule {
            Some(rule) => format!("{}-{rule}", self.name),
            None => self.name.to_string(),
        }
    }

    /// The rule's name for logs: its own name, or the target's for a single schedule.
    pub fn rule_name(&self) -> &str {
        self.settings.rule.as_deref().unwrap_or(&self.name)
    }

    /// The execution name of a scheduled slot of this rule.
    pub fn scheduled_name(&self, slot: DateTime<Utc>) -> String {
        execution::scheduled_name(&self.slot_key(), slot)
    }

    /// What the rule's copies need to know; `None` when it has no `copy_to`.
    pub fn copy_plan(&self) -> Option<Arc<CopyPlan>> {
        (!self.settings.copy_to.is_empty()).then(|| {
            Arc::new(CopyPlan {
                rule: self.rule_name().into(),
                destinations: self.settings.copy_to.clone(),
                state_machine: self.settings.state_machine.clone(),
            })
        })
    }
}
