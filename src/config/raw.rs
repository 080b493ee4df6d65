//! What the file says: the serde structs of each table, with spans, and the keys each table
//! takes (an unknown key is an error: a typo must not silently turn a setting off).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::hooks::{OnPreHookFailure, PostHookWhen};
use crate::model::{CatchUp, Concurrency};
use crate::telemetry::LogFormat;

macro_rules! shift_fields {
    ($raw:expr, $by:expr; $($field:ident),+) => {
        $( $raw.$field = super::raw::shift($raw.$field.take(), $by); )+
    };
}
pub(super) use shift_fields;

/// A hook document as the file writes it: `{ name = "...", version = "3", parameters = {...} }`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocument {
    pub(super) name: String,
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, String>,
}

/// One `copy_to` entry: `{ vault_arn = "arn:…:backup-vault:NAME", delete_after_days = 90 }`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCopy {
    pub(super) vault_arn: Option<Spanned<String>>,
    pub(super) delete_after_days: Option<Spanned<i64>>,
}

/// `restore = { subnet_id = "subnet-…", security_group_ids = ["sg-…"], instance_type = "…" }`.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestore {
    pub(super) instance_type: Option<String>,
    pub(super) subnet_id: Option<String>,
    pub(super) security_group_ids: Option<Vec<String>>,
    pub(super) keep_instance_profile: Option<bool>,
}

/// `restore_test = { schedule = "…", pick = "latest", within_days = 7, … }`.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestoreTest {
    pub(super) schedule: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) pick: Option<crate::model::Pick>,
    pub(super) within_days: Option<u32>,
    pub(super) max_restore_minutes: Option<u32>,
    pub(super) keep_minutes: Option<u32>,
    pub(super) validate_document: Option<RawValidateDocument>,
    pub(super) instance_type: Option<String>,
    pub(super) subnet_id: Option<String>,
    pub(super) security_group_ids: Option<Vec<String>>,
    pub(super) keep_instance_profile: Option<bool>,
    pub(super) enabled: Option<bool>,
}

/// A restore test's `validate_document = { name = "…", parameters = { … } }`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValidateDocument {
    pub(super) name: String,
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, String>,
}

/// A `copy_to` array as written.
pub(super) type RawCopies = Spanned<Vec<Spanned<RawCopy>>>;

/// Moves a `copy_to` and the spans inside it by `by` bytes.
pub(super) fn shift_copies(v: Option<RawCopies>, by: usize) -> Option<RawCopies> {
    shift(v, by).map(|outer| {
        let span = outer.span();
        let items = outer
            .into_inner()
            .into_iter()
            .map(|item| {
                let span = item.span();
                let mut c = item.into_inner();
                c.vault_arn = shift(c.vault_arn.take(), by);
                c.delete_after_days = shift(c.delete_after_days.take(), by);
                Spanned::new(span.start + by..span.end + by, c)
            })
            .collect();
        Spanned::new(span, items)
    })
}

// Unknown keys are found by `Report::unknown_keys` (all of them, not only serde's first).
#[derive(Deserialize, Default)]
pub(super) struct RawGlobal {
    pub(super) state_machine_arn: Option<Spanned<String>>,
    pub(super) region: Option<Spanned<String>>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) poll_interval: Option<Spanned<String>>,
    pub(super) max_poll_interval: Option<Spanned<String>>,
    pub(super) log_format: Option<Spanned<LogFormat>>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) start_rate: Option<Spanned<f64>>,
    pub(super) start_burst: Option<Spanned<u32>>,
    pub(super) describe_rate: Option<Spanned<f64>>,
    pub(super) backup_read_rate: Option<Spanned<f64>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) recovery_lookback: Option<Spanned<String>>,
    pub(super) selection_refresh: Option<Spanned<String>>,
    pub(super) restore_state_machine_arn: Option<Spanned<String>>,
    pub(super) restore_sweep_interval: Option<Spanned<String>>,
    pub(super) restore_sweep_grace: Option<Spanned<String>>,
}

/// `[ha]`: the leader lease.
#[derive(Deserialize, Default)]
pub(super) struct RawHa {
    pub(super) lease_table: Option<Spanned<String>>,
    pub(super) lease_duration: Option<Spanned<String>>,
    pub(super) renew_interval: Option<Spanned<String>>,
    pub(super) owner_id: Option<Spanned<String>>,
}

/// Settings a target may set and `[defaults]` may default.
#[derive(Deserialize, Default, Clone)]
pub(super) struct RawPolicy {
    pub(super) catch_up: Option<Spanned<CatchUp>>,
    pub(super) starting_deadline: Option<Spanned<String>>,
    pub(super) concurrency: Option<Spanned<Concurrency>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) start_window_minutes: Option<Spanned<u32>>,
    pub(super) complete_window_minutes: Option<Spanned<u32>>,
    pub(super) delete_after_days: Option<Spanned<u32>>,
    pub(super) pre_document: Option<Spanned<RawDocument>>,
    pub(super) post_document: Option<Spanned<RawDocument>>,
    #[serde(alias = "post_command_when")]
    pub(super) post_hook_when: Option<Spanned<PostHookWhen>>,
    pub(super) hook_max_downtime: Option<Spanned<String>>,
    #[serde(alias = "on_pre_command_failure")]
    pub(super) on_pre_hook_failure: Option<Spanned<OnPreHookFailure>>,
    pub(super) windows_vss: Option<Spanned<bool>>,
    pub(super) copy_to: Option<RawCopies>,
    pub(super) restore: Option<Spanned<RawRestore>>,
    pub(super) restore_test: Option<Spanned<RawRestoreTest>>,
}

// Not `flatten`ed from RawPolicy: serde's flatten buffers values and loses toml's spans.
#[derive(Deserialize)]
pub(super) struct RawTarget {
    pub(super) name: Option<Spanned<String>>,
    pub(super) resource_arn: Option<Spanned<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) state_machine_arn: Option<Spanned<String>>,
    pub(super) enabled: Option<Spanned<bool>>,
    pub(super) pre_command: Option<Spanned<String>>,
    pub(super) post_command: Option<Spanned<String>>,
    pub(super) catch_up: Option<Spanned<CatchUp>>,
    pub(super) starting_deadline: Option<Spanned<String>>,
    pub(super) concurrency: Option<Spanned<Concurrency>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) start_window_minutes: Option<Spanned<u32>>,
    pub(super) complete_window_minutes: Option<Spanned<u32>>,
    pub(super) delete_after_days: Option<Spanned<u32>>,
    pub(super) pre_document: Option<Spanned<RawDocument>>,
    pub(super) post_document: Option<Spanned<RawDocument>>,
    #[serde(alias = "post_command_when")]
    pub(super) post_hook_when: Option<Spanned<PostHookWhen>>,
    pub(super) hook_max_downtime: Option<Spanned<String>>,
    #[serde(alias = "on_pre_command_failure")]
    pub(super) on_pre_hook_failure: Option<Spanned<OnPreHookFailure>>,
    pub(super) windows_vss: Option<Spanned<bool>>,
    pub(super) copy_to: Option<RawCopies>,
    pub(super) restore: Option<Spanned<RawRestore>>,
    pub(super) restore_test: Option<Spanned<RawRestoreTest>>,
    pub(super) plan: Option<Spanned<String>>,
    pub(super) select_tags: Option<Spanned<BTreeMap<String, String>>>,
    pub(super) exclude_tags: Option<Spanned<BTreeMap<String, String>>>,
}

/// One `[[plan.rule]]` or `[[backup.rule]]`: a schedule and the settings it overrides.
#[derive(Deserialize, Default, Clone)]
pub(super) struct RawRule {
    pub(super) name: Option<Spanned<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) catch_up: Option<Spanned<CatchUp>>,
    pub(super) starting_deadline: Option<Spanned<String>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) start_window_minutes: Option<Spanned<u32>>,
    pub(super) complete_window_minutes: Option<Spanned<u32>>,
    pub(super) delete_after_days: Option<Spanned<u32>>,
    pub(super) copy_to: Option<RawCopies>,
}

/// A `[[plan]]`: named rules that targets share with `plan = "NAME"`.
pub(super) struct RawPlan {
    pub(super) path: String,
    pub(super) span: Range<usize>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) rules: Vec<(String, Range<usize>, RawRule)>,
    pub(super) restore: Option<Spanned<RawRestore>>,
    pub(super) restore_test: Option<Spanned<RawRestoreTest>>,
}

/// The restore settings of a `[[plan]]` (its other keys are read apart).
#[derive(Deserialize, Default)]
pub(super) struct RawPlanRestores {
    pub(super) restore: Option<Spanned<RawRestore>>,
    pub(super) restore_test: Option<Spanned<RawRestoreTest>>,
}

/// Names of the keys each section accepts (the raw structs above).
pub(super) const GLOBAL_KEYS: &[&str] = &[
    "state_machine_arn",
    "region",
    "endpoint_url",
    "timezone",
    "poll_interval",
    "max_poll_interval",
    "log_format",
    "listen",
    "start_rate",
    "start_burst",
    "describe_rate",
    "backup_read_rate",
    "shutdown_grace",
    "recovery_lookback",
    "selection_refresh",
    "restore_state_machine_arn",
    "restore_sweep_interval",
    "restore_sweep_grace",
    "defaults",
    "backup",
    "plan",
    "ha",
];

pub(super) const HA_KEYS: &[&str] = &[
    "lease_table",
    "lease_duration",
    "renew_interval",
    "owner_id",
];

pub(super) const POLICY_KEYS: &[&str] = &[
    "catch_up",
    "starting_deadline",
    "concurrency",
    "jitter",
    "start_window_minutes",
    "complete_window_minutes",
    "delete_after_days",
    "pre_document",
    "post_document",
    "post_hook_when",
    "post_command_when",
    "hook_max_downtime",
    "on_pre_hook_failure",
    "on_pre_command_failure",
    "windows_vss",
    "copy_to",
    "restore",
    "restore_test",
];

pub(super) const TARGET_KEYS: &[&str] = &[
    "name",
    "resource_arn",
    "schedule",
    "timezone",
    "state_machine_arn",
    "enabled",
    "pre_command",
    "post_command",
    "plan",
    "rule",
    "select_tags",
    "exclude_tags",
];

/// Keys of a `[[plan]]`.
pub(super) const PLAN_KEYS: &[&str] = &["name", "rule", "restore", "restore_test"];

/// Keys of a rule (`[[plan.rule]]`, `[[backup.rule]]`); `concurrency` and hooks stay per target.
pub(super) const RULE_KEYS: &[&str] = &[
    "name",
    "schedule",
    "timezone",
    "catch_up",
    "starting_deadline",
    "jitter",
    "start_window_minutes",
    "complete_window_minutes",
    "delete_after_days",
    "copy_to",
];

/// The rules of a `[[backup]]` or `[[plan]]`: each with its path, its absolute span and its keys.
pub(super) type RawRules = Option<(Range<usize>, Vec<(String, Range<usize>, RawRule)>)>;

/// A `[[backup]]` as read: its path, its span, and its keys and rules (`None`: not a table).
pub(super) type RawTargetAt = (String, Range<usize>, Option<(RawTarget, RawRules)>);

/// Moves a value's span by `by` bytes (a piece's spans count from the piece's start).
pub(super) fn shift<T>(v: Option<Spanned<T>>, by: usize) -> Option<Spanned<T>> {
    v.map(|s| {
        let span = s.span();
        Spanned::new(span.start + by..span.end + by, s.into_inner())
    })
}

impl RawRule {
    pub(super) fn shifted(mut self, by: usize) -> Self {
        shift_fields!(self, by; name, schedule, timezone, catch_up, starting_deadline, jitter,
            start_window_minutes, complete_window_minutes, delete_after_days);
        self.copy_to = shift_copies(self.copy_to.take(), by);
        self
    }
}
