//! What a target's restores use and how its restore tests run: the `restore` and
//! `restore_test` settings of a `[[backup]]`, `[[plan]]` or `[defaults]`, validated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::schedule::Schedule;

/// Where and how a restored instance runs: each `None` is the recovery point's own value
/// (its restore metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RestorePlacement {
    /// `InstanceType`.
    pub instance_type: Option<String>,
    /// `SubnetId`.
    pub subnet_id: Option<String>,
    /// `SecurityGroupIds` (1 to 5).
    pub security_group_ids: Option<Vec<String>>,
    /// Keep the recovery point's instance profile (the stack must allow it); else none.
    pub keep_instance_profile: Option<bool>,
}

impl RestorePlacement {
    /// `self`'s values, and `under`'s where `self` has none.
    pub fn over(&self, under: &RestorePlacement) -> RestorePlacement {
        RestorePlacement {
            instance_type: self
                .instance_type
                .clone()
                .or_else(|| under.instance_type.clone()),
            subnet_id: self.subnet_id.clone().or_else(|| under.subnet_id.clone()),
            security_group_ids: self
                .security_group_ids
                .clone()
                .or_else(|| under.security_group_ids.clone()),
            keep_instance_profile: self.keep_instance_profile.or(under.keep_instance_profile),
        }
    }
}

/// Which recovery point a restore test restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// The newest COMPLETED one within the window.
    #[default]
    Latest,
    /// One of the window's COMPLETED ones, chosen by the test's name (the same slot always
    /// picks the same point).
    Random,
}

/// The validation SSM document a test runs on the restored instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidateDocument {
    /// The document's name (the stack lets the machine send only names with its prefix).
    pub name: String,
    /// Its parameters, one string each.
    pub parameters: BTreeMap<String, String>,
}

/// One target's scheduled restore test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTest {
    /// When it runs.
    pub schedule: Arc<Schedule>,
    /// Which recovery point.
    pub pick: Pick,
    /// Only recovery points created within this many days before the slot.
    pub within_days: u32,
    /// From the restore request until the instance runs and passes its status checks; longer
    /// is `slow` (and the machine gives up at this time).
    pub max_restore_minutes: u32,
    /// How long the restored instance is kept after the checks before it is deleted.
    pub keep_minutes: u32,
    /// Run on the restored instance; its exit status is the verdict.
    pub validate_document: Option<ValidateDocument>,
    /// Where the test restores (over the target's `restore`).
    pub placement: RestorePlacement,
    /// False: the test is configured but does not run.
    pub enabled: bool,
}

impl RestoreTest {
    /// `max_restore_minutes` as a duration.
    pub fn max_restore(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_restore_minutes) * 60)
    }

    /// `keep_minutes` as a duration.
    pub fn keep(&self) -> Duration {
        Duration::from_secs(u64::from(self.keep_minutes) * 60)
    }
}

/// A target's restore settings: its placement for on-demand restores, its test if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restores {
    /// `restore = {…}`.
    pub placement: RestorePlacement,
    /// `restore_test = {…}` (its placement already over `placement`).
    pub test: Option<Arc<RestoreTest>>,
}
