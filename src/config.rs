//! `backups.toml`: raw serde structs, then validation into a typed [`Config`].
//!
//! Every problem is collected and reported at once, each with file, line, column and field, so
//! an operator fixes a file in one pass. Unknown keys are errors (a typo must not silently turn
//! a setting off).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::arn::{InstanceArn, StateMachineArn};
use crate::fasthash::{FastMap, FastSet};
use crate::hooks::{self, Document, OnPreHookFailure, PostHookWhen};
use crate::schedule::Schedule;

/// The environment variable that may hold the whole TOML text (ECS: an SSM parameter as a secret).
pub const CONFIG_TOML_ENV: &str = "ORCHESTRATOR_CONFIG_TOML";
/// AWS Backup's smallest start window.
pub const MIN_START_WINDOW_MINUTES: u32 = 60;
/// Default StartExecution pacing: well below the smallest regional refill (150/s).
pub const DEFAULT_START_RATE: f64 = 100.0;
/// Default StartExecution burst: well below the smallest regional bucket (800).
pub const DEFAULT_START_BURST: u32 = 200;
/// Default DescribeExecution pacing: below the smallest regional refill (10/s).
pub const DEFAULT_DESCRIBE_RATE: f64 = 8.0;
/// How often tag selections are resolved again, by default.
pub const DEFAULT_SELECTION_REFRESH: Duration = Duration::from_secs(300);
/// Default pacing of AWS Backup read calls (DescribeBackupJob, ListBackupJobs).
pub const DEFAULT_BACKUP_READ_RATE: f64 = 5.0;

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// The file (or `<env ORCHESTRATOR_CONFIG_TOML>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as a path: `backup[2].schedule`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

/// Why a config could not be loaded: every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The path.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and is wrong.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line (journald, CloudWatch).
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

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
    /// Targets in file order (disabled ones included, flagged), one per rule; shared with the
    /// scheduler.
    pub targets: Vec<Arc<Target>>,
    /// `[ha]`: the leader lease; none: every replica fires (active-active).
    pub ha: Option<crate::lease::LeaseSettings>,
    /// The enabled rules of every instance that has more than one (the overlap rule's input).
    pub instances: crate::rules::Instances,
    /// `[[backup]]`s with `select_tags`, in file order: not in `targets` until resolved
    /// ([`crate::selection::effective`]).
    pub selections: Vec<Arc<crate::selection::Selection>>,
    /// How often each selection is resolved again.
    pub selection_refresh: Duration,
    /// SHA-256 of the exact text this config was parsed from: `--watch`'s baseline, so an edit
    /// made at any moment after that read is seen as a change.
    pub content_hash: ContentHash,
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

/// One rule of one backup target: the unit that fires. A `[[backup]]` with `schedule` is one
/// (its `rule` is `None`); one with `plan` or `[[backup.rule]]`s is one per rule, all with the
/// target's name. Several of them may name the same instance (see [`crate::rules`]).
///
/// Its own part is the name and the instance; everything else is its [`Settings`], shared by
/// every target whose rule is set alike (a fleet on one plan shares one per rule), and read
/// through `Deref`: `t.schedule`, `t.delete_after_days`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The target's name (unique per `[[backup]]`); appears in logs and execution names.
    /// Shared by every rule of the target.
    pub name: Arc<str>,
    /// The instance.
    pub resource_arn: InstanceArn,
    /// The rule's settings (shared).
    pub settings: Arc<Settings>,
}

impl std::ops::Deref for Target {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// Copy on write: changing one target's setting never changes another's.
impl std::ops::DerefMut for Target {
    fn deref_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }
}

/// What a rule of a target does, apart from its name and instance (see [`Target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
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
    /// `copy_to`: where the state machine copies each COMPLETED backup (empty: no copies).
    pub copy_to: Arc<[crate::copies::Destination]>,
}

// Hashes the fields that tell most rules apart; equal settings hash alike (a subset of `Eq`).
impl std::hash::Hash for Settings {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rule.hash(state);
        self.schedule.group_key().hash(state);
        self.state_machine.hash(state);
        self.delete_after_days.hash(state);
        self.pre_command.hash(state);
        self.post_command.hash(state);
    }
}

impl Settings {
    /// True when the machine runs a pre or post hook for this target.
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

/// A hook document as the file writes it: `{ name = "...", version = "3", parameters = {...} }`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    name: String,
    version: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

// ---- raw structs: what the file says, with spans ----

/// One `copy_to` entry: `{ vault_arn = "arn:…:backup-vault:NAME", delete_after_days = 90 }`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawCopy {
    vault_arn: Option<Spanned<String>>,
    delete_after_days: Option<Spanned<i64>>,
}

/// A `copy_to` array as written.
type RawCopies = Spanned<Vec<Spanned<RawCopy>>>;

/// Moves a `copy_to` and the spans inside it by `by` bytes.
fn shift_copies(v: Option<RawCopies>, by: usize) -> Option<RawCopies> {
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
struct RawGlobal {
    state_machine_arn: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    max_poll_interval: Option<Spanned<String>>,
    log_format: Option<Spanned<LogFormat>>,
    listen: Option<Spanned<String>>,
    start_rate: Option<Spanned<f64>>,
    start_burst: Option<Spanned<u32>>,
    describe_rate: Option<Spanned<f64>>,
    backup_read_rate: Option<Spanned<f64>>,
    shutdown_grace: Option<Spanned<String>>,
    recovery_lookback: Option<Spanned<String>>,
    selection_refresh: Option<Spanned<String>>,
}

/// `[ha]`: the leader lease.
#[derive(Deserialize, Default)]
struct RawHa {
    lease_table: Option<Spanned<String>>,
    lease_duration: Option<Spanned<String>>,
    renew_interval: Option<Spanned<String>>,
    owner_id: Option<Spanned<String>>,
}

/// Settings a target may set and `[defaults]` may default.
#[derive(Deserialize, Default, Clone)]
struct RawPolicy {
    catch_up: Option<Spanned<CatchUp>>,
    starting_deadline: Option<Spanned<String>>,
    concurrency: Option<Spanned<Concurrency>>,
    jitter: Option<Spanned<String>>,
    start_window_minutes: Option<Spanned<u32>>,
    complete_window_minutes: Option<Spanned<u32>>,
    delete_after_days: Option<Spanned<u32>>,
    pre_document: Option<Spanned<RawDocument>>,
    post_document: Option<Spanned<RawDocument>>,
    #[serde(alias = "post_command_when")]
    post_hook_when: Option<Spanned<PostHookWhen>>,
    hook_max_downtime: Option<Spanned<String>>,
    #[serde(alias = "on_pre_command_failure")]
    on_pre_hook_failure: Option<Spanned<OnPreHookFailure>>,
    windows_vss: Option<Spanned<bool>>,
    copy_to: Option<RawCopies>,
}

// Not `flatten`ed from RawPolicy: serde's flatten buffers values and loses toml's spans.
#[derive(Deserialize)]
struct RawTarget {
    name: Option<Spanned<String>>,
    resource_arn: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    state_machine_arn: Option<Spanned<String>>,
    enabled: Option<Spanned<bool>>,
    pre_command: Option<Spanned<String>>,
    post_command: Option<Spanned<String>>,
    catch_up: Option<Spanned<CatchUp>>,
    starting_deadline: Option<Spanned<String>>,
    concurrency: Option<Spanned<Concurrency>>,
    jitter: Option<Spanned<String>>,
    start_window_minutes: Option<Spanned<u32>>,
    complete_window_minutes: Option<Spanned<u32>>,
    delete_after_days: Option<Spanned<u32>>,
    pre_document: Option<Spanned<RawDocument>>,
    post_document: Option<Spanned<RawDocument>>,
    #[serde(alias = "post_command_when")]
    post_hook_when: Option<Spanned<PostHookWhen>>,
    hook_max_downtime: Option<Spanned<String>>,
    #[serde(alias = "on_pre_command_failure")]
    on_pre_hook_failure: Option<Spanned<OnPreHookFailure>>,
    windows_vss: Option<Spanned<bool>>,
    copy_to: Option<RawCopies>,
    plan: Option<Spanned<String>>,
    select_tags: Option<Spanned<BTreeMap<String, String>>>,
    exclude_tags: Option<Spanned<BTreeMap<String, String>>>,
}

/// One `[[plan.rule]]` or `[[backup.rule]]`: a schedule and the settings it overrides.
#[derive(Deserialize, Default, Clone)]
struct RawRule {
    name: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    catch_up: Option<Spanned<CatchUp>>,
    starting_deadline: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    start_window_minutes: Option<Spanned<u32>>,
    complete_window_minutes: Option<Spanned<u32>>,
    delete_after_days: Option<Spanned<u32>>,
    copy_to: Option<RawCopies>,
}

/// A `[[plan]]`: named rules that targets share with `plan = "NAME"`.
struct RawPlan {
    path: String,
    span: Range<usize>,
    name: Option<Spanned<String>>,
    rules: Vec<(String, Range<usize>, RawRule)>,
}

/// Names of the keys each section accepts (the raw structs above).
const GLOBAL_KEYS: &[&str] = &[
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
    "defaults",
    "backup",
    "plan",
    "ha",
];
const HA_KEYS: &[&str] = &[
    "lease_table",
    "lease_duration",
    "renew_interval",
    "owner_id",
];
const POLICY_KEYS: &[&str] = &[
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
];
const TARGET_KEYS: &[&str] = &[
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
const PLAN_KEYS: &[&str] = &["name", "rule"];
/// Keys of a rule (`[[plan.rule]]`, `[[backup.rule]]`); `concurrency` and hooks stay per target.
const RULE_KEYS: &[&str] = &[
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

/// Collects diagnostics against one source text.
struct Report<'a> {
    file: &'a str,
    text: &'a str,
    /// Offset of the piece being parsed (its spans count from its own start).
    base: usize,
    diags: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        Report {
            file,
            text,
            base: 0,
            diags: Vec::new(),
        }
    }

    fn push(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, self.base + span.start);
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Reports every key of `table` that is not in `known` (all of them, not just the first).
    fn unknown_keys(&mut self, table: &DeTable<'_>, known: &[&[&str]], path: &str) {
        for key in table.keys() {
            if !known.iter().any(|k| k.contains(&key.get_ref().as_ref())) {
                let mut all: Vec<&str> = known.iter().flat_map(|k| k.iter().copied()).collect();
                all.sort_unstable();
                self.push(
                    key.span(),
                    join(path, key.get_ref()),
                    format!("unknown key (expected one of: {})", all.join(", ")),
                );
            }
        }
    }

    /// Deserializes one table, reporting a type error at its own span.
    fn table<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
        let mut owned = value.clone();
        owned.get_mut().make_owned();
        match T::deserialize(ValueDeserializer::from(owned)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(value.span());
                // Name the key whose value holds the error, not only the table.
                let field = value
                    .get_ref()
                    .as_table()
                    .and_then(|t| {
                        t.iter()
                            .find(|(_, v)| v.span().start <= span.start && span.end <= v.span().end)
                    })
                    .map_or_else(|| path.to_string(), |(k, _)| join(path, k.get_ref()));
                self.push(span, field, e.message().to_string());
                None
            }
        }
    }
}

/// The rules of a `[[backup]]` or `[[plan]]`: each with its path, its absolute span and its keys.
type RawRules = Option<(Range<usize>, Vec<(String, Range<usize>, RawRule)>)>;
/// A `[[backup]]` as read: its path, its span, and its keys and rules (`None`: not a table).
type RawTargetAt = (String, Range<usize>, Option<(RawTarget, RawRules)>);
/// One rule of a target before its values are checked: rule name, schedule, settings, path.
type Unit = (Option<Arc<str>>, Option<Arc<Schedule>>, RawPolicy, Arc<str>);

impl Report<'_> {
    /// Reads a `rule` array of tables (of a target or a plan at `path`); spans made absolute.
    fn rules(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        path: &str,
        base: usize,
    ) -> Vec<(String, Range<usize>, RawRule)> {
        let Some(items) = v.get_ref().as_array() else {
            self.push(
                v.span(),
                join(path, "rule"),
                "must be an array of tables: [[…rule]]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let rpath = format!("{path}.rule[{i}]");
            let span = item.span().start + base..item.span().end + base;
            let Some(t) = item.get_ref().as_table() else {
                self.push(item.span(), rpath, "must be a table: [[…rule]]");
                continue;
            };
            self.unknown_keys(t, &[RULE_KEYS], &rpath);
            if let Some(raw) = self.table::<RawRule>(item, &rpath) {
                out.push((rpath, span, raw.shifted(base)));
            }
        }
        out
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses `250ms`, `30s`, `5m`, `1h30m`, `2d` (units may be combined, largest first).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration (expected e.g. 30s, 5m, 1h30m)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration (expected e.g. 30s, 5m, 1h30m)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let step = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => return Err(format!("`{s}`: a unit is missing (ms, s, m, h, d)")),
            other => return Err(format!("`{s}`: unknown unit `{other}` (ms, s, m, h, d)")),
        };
        total = total.saturating_add(step);
    }
    Ok(total)
}

/// Loads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    from_bytes(bytes, &file)
}

/// Validates the bytes of a config file already read (`--watch` parses what it compared).
pub fn from_bytes(bytes: Vec<u8>, file: &str) -> Result<Config, ConfigError> {
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Read {
        file: file.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    parse(&text, file)
}

/// Loads the config from `path`, or from [`CONFIG_TOML_ENV`] when no path is given.
pub fn load_from(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => load(p),
        None => match std::env::var(CONFIG_TOML_ENV) {
            Ok(text) => parse(&text, &format!("<env {CONFIG_TOML_ENV}>")),
            Err(_) => Err(ConfigError::Invalid(vec![Diagnostic {
                file: "<command line>".into(),
                line: 0,
                column: 0,
                field: "--config".into(),
                message: format!("no config: pass --config FILE or set {CONFIG_TOML_ENV}"),
            }])),
        },
    }
}

/// Targets parsed in one piece: the TOML parser holds several times a document's size while it
/// works; in pieces of this many `[[backup]]` tables the start-up peak stays small at 100,000
/// targets.
const TARGETS_PER_CHUNK: usize = 500;

/// Splits the text before every [`TARGETS_PER_CHUNK`]-th `[[backup]]` header (outside multi-line
/// strings), returning each piece with its byte offset, and the offset of the last table header
/// that is not a target's (`[defaults]`, `[[plan]]`, `[ha]`, …; 0 when there is none): targets
/// can be validated once the piece holding it has been read; and the number of `[[backup]]`s.
fn chunks(text: &str) -> (Vec<(usize, &str)>, usize, usize) {
    let mut cuts = vec![0];
    let mut headers = 0usize;
    let mut settled_at = 0;
    // A line at `offset` that starts (after blanks) with `[`, from there to its end.
    let mut header = |offset: usize, trimmed: &str| {
        let target = trimmed.strip_prefix("[[").and_then(|r| {
            let (name, _) = r.split_once("]]")?;
            (name.trim() == "backup").then_some(())
        });
        if target.is_some() {
            if headers > 0 && headers.is_multiple_of(TARGETS_PER_CHUNK) {
                cuts.push(offset);
            }
            headers += 1;
        } else if !is_target_table(trimmed) {
            settled_at = offset;
        }
    };
    let bytes = text.as_bytes();
    let multi_line = ["\"\"\"", "'''"]
        .iter()
        .any(|d| memchr::memmem::find(bytes, d.as_bytes()).is_some());
    if !multi_line {
        // The usual file: every `[` that only blanks precede on its line opens a header.
        for at in memchr::memchr_iter(b'[', bytes) {
            let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
            if text[start..at].trim_start().is_empty() {
                let end = memchr::memchr(b'\n', &bytes[at..]).map_or(text.len(), |i| at + i + 1);
                header(start, &text[at..end]);
            }
        }
    } else {
        let mut in_string: Option<&'static str> = None;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if in_string.is_none() && trimmed.starts_with('[') {
                header(offset, trimmed);
            }
            // Track multi-line string delimiters so that a header-like line inside one is no cut.
            let mut rest = if in_string.is_some() {
                line
            } else {
                line.split('#').next().unwrap_or("")
            };
            while let Some((i, delim)) = triple_quote(rest, in_string) {
                in_string = if in_string.is_some() {
                    None
                } else {
                    Some(delim)
                };
                rest = &rest[i + 3..];
            }
            offset += line.len();
        }
    }
    cuts.push(text.len());
    let pieces = cuts.windows(2).map(|w| (w[0], &text[w[0]..w[1]])).collect();
    (pieces, settled_at, headers)
}

/// The first `"""` or `'''` in `s` (of `only`'s kind when given): its offset and itself.
fn triple_quote(s: &str, only: Option<&'static str>) -> Option<(usize, &'static str)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'"', b'\'', &b[from..]).map(|i| i + from) {
        let c = b[i];
        let delim = if c == b'"' { "\"\"\"" } else { "'''" };
        if b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&c) && only.is_none_or(|o| o == delim) {
            return Some((i, delim));
        }
        from = i + 1;
    }
    None
}

/// True for a header line of a target's own table (`[[backup.rule]]`, `[backup.x]`). Anything
/// else that starts with `[` counts as another table: at worst, validation waits longer.
fn is_target_table(line: &str) -> bool {
    let name = line.trim_start_matches('[');
    let first = name.split(['.', ']']).next().unwrap_or("").trim();
    matches!(first, "backup" | "\"backup\"" | "'backup'")
}

/// Moves a value's span by `by` bytes (a piece's spans count from the piece's start).
fn shift<T>(v: Option<Spanned<T>>, by: usize) -> Option<Spanned<T>> {
    v.map(|s| {
        let span = s.span();
        Spanned::new(span.start + by..span.end + by, s.into_inner())
    })
}

macro_rules! shift_fields {
    ($raw:expr, $by:expr; $($field:ident),+) => {
        $( $raw.$field = shift($raw.$field.take(), $by); )+
    };
}

impl RawRule {
    fn shifted(mut self, by: usize) -> Self {
        shift_fields!(self, by; name, schedule, timezone, catch_up, starting_deadline, jitter,
            start_window_minutes, complete_window_minutes, delete_after_days);
        self.copy_to = shift_copies(self.copy_to.take(), by);
        self
    }
}

/// Reads the pieces of a config text one at a time ([`chunks`]): the top-level settings,
/// `[defaults]`, `[ha]`, `[[plan]]`s, and each piece's `[[backup]]`s, raw. Targets are handed
/// on piece by piece, so that at most one piece's raw tables are held at once.
struct Reader<'a> {
    r: Report<'a>,
    pieces: std::vec::IntoIter<(usize, &'a str)>,
    global: Option<RawGlobal>,
    defaults: Option<RawPolicy>,
    ha: Option<(Range<usize>, RawHa)>,
    plans: Vec<RawPlan>,
    saw_backup: bool,
    /// `[[backup]]`s read so far (their numbering in messages).
    targets: usize,
}

impl<'a> Reader<'a> {
    /// Reads `pieces`, numbering their targets from `first_target`.
    fn new(
        r: Report<'a>,
        pieces: std::vec::IntoIter<(usize, &'a str)>,
        first_target: usize,
    ) -> Self {
        Reader {
            r,
            pieces,
            global: None,
            defaults: None,
            ha: None,
            plans: Vec::new(),
            saw_backup: false,
            targets: first_target,
        }
    }

    /// Reads the next piece: its targets, or `None` after the last.
    fn piece(&mut self) -> Option<Vec<RawTargetAt>> {
        let (base, chunk) = self.pieces.next()?;
        let r = &mut self.r;
        r.base = base;
        let mut raw_targets = Vec::new();
        let root = match DeTable::parse(chunk) {
            Ok(root) => root,
            Err(e) => {
                r.push(
                    e.span().unwrap_or(0..0),
                    "(syntax)",
                    e.message().to_string(),
                );
                return Some(raw_targets);
            }
        };
        let root_span = root.span();
        let root_table = root.get_ref();
        r.unknown_keys(root_table, &[GLOBAL_KEYS], "");
        // Top-level settings precede every table header, so they are all in the first piece.
        if self.global.is_none() {
            let mut globals = DeTable::new();
            for (k, v) in root_table.iter() {
                if !matches!(k.get_ref().as_ref(), "backup" | "defaults" | "plan" | "ha") {
                    globals.insert(k.clone(), v.clone());
                }
            }
            let value = Spanned::new(root_span.clone(), DeValue::Table(globals));
            let mut g: RawGlobal = r.table(&value, "(top level)").unwrap_or_default();
            shift_fields!(g, base; state_machine_arn, region, endpoint_url, timezone,
                poll_interval, max_poll_interval, log_format, listen, start_rate, start_burst,
                describe_rate, backup_read_rate, shutdown_grace, recovery_lookback,
                selection_refresh);
            self.global = Some(g);
        }
        let (defaults, ha, plans) = (&mut self.defaults, &mut self.ha, &mut self.plans);
        for (key, v) in root_table.iter() {
            match key.get_ref().as_ref() {
                "defaults" => match v.get_ref().as_table() {
                    Some(_) if defaults.is_some() => {
                        r.push(key.span(), "defaults", "duplicate [defaults] table");
                    }
                    Some(t) => {
                        r.unknown_keys(t, &[POLICY_KEYS], "defaults");
                        let mut d: RawPolicy = r.table(v, "defaults").unwrap_or_default();
                        shift_fields!(d, base; catch_up, starting_deadline, concurrency, jitter,
                            start_window_minutes, complete_window_minutes, delete_after_days,
                            pre_document, post_document, post_hook_when, hook_max_downtime,
                            on_pre_hook_failure, windows_vss);
                        d.copy_to = shift_copies(d.copy_to.take(), base);
                        *defaults = Some(d);
                    }
                    None => r.push(v.span(), "defaults", "must be a table: [defaults]"),
                },
                "ha" => match v.get_ref().as_table() {
                    Some(_) if ha.is_some() => {
                        r.push(key.span(), "ha", "duplicate [ha] table");
                    }
                    Some(t) => {
                        r.unknown_keys(t, &[HA_KEYS], "ha");
                        let mut h: RawHa = r.table(v, "ha").unwrap_or_default();
                        shift_fields!(h, base; lease_table, lease_duration, renew_interval,
                            owner_id);
                        let span = key.span().start + base..key.span().end + base;
                        *ha = Some((span, h));
                    }
                    None => r.push(v.span(), "ha", "must be a table: [ha]"),
                },
                "backup" => {
                    self.saw_backup = true;
                    let Some(items) = v.get_ref().as_array() else {
                        r.push(v.span(), "backup", "must be an array of tables: [[backup]]");
                        continue;
                    };
                    for item in items.iter() {
                        // Numbered across pieces: messages name the target's place in the file.
                        let path = format!("backup[{}]", self.targets);
                        self.targets += 1;
                        let span = item.span().start + base..item.span().end + base;
                        let Some(t) = item.get_ref().as_table() else {
                            r.push(item.span(), path.clone(), "must be a table: [[backup]]");
                            raw_targets.push((path, span, None));
                            continue;
                        };
                        r.unknown_keys(t, &[TARGET_KEYS, POLICY_KEYS], &path);
                        let rules = t.get("rule").map(|v| {
                            let span = v.span().start + base..v.span().end + base;
                            (span, r.rules(v, &path, base))
                        });
                        let raw = r.table::<RawTarget>(item, &path).map(|mut raw| {
                            shift_fields!(raw, base; name, resource_arn, schedule, timezone,
                                state_machine_arn, enabled, pre_command, post_command, catch_up,
                                starting_deadline, concurrency, jitter, start_window_minutes,
                                complete_window_minutes, delete_after_days, pre_document,
                                post_document, post_hook_when, hook_max_downtime,
                                on_pre_hook_failure, windows_vss, plan, select_tags,
                                exclude_tags);
                            raw.copy_to = shift_copies(raw.copy_to.take(), base);
                            (raw, rules)
                        });
                        raw_targets.push((path, span, raw));
                    }
                }
                "plan" => {
                    let Some(items) = v.get_ref().as_array() else {
                        r.push(v.span(), "plan", "must be an array of tables: [[plan]]");
                        continue;
                    };
                    for item in items.iter() {
                        let path = format!("plan[{}]", plans.len());
                        let span = item.span().start + base..item.span().end + base;
                        let Some(t) = item.get_ref().as_table() else {
                            r.push(item.span(), path.clone(), "must be a table: [[plan]]");
                            continue;
                        };
                        r.unknown_keys(t, &[PLAN_KEYS], &path);
                        let name = t.get("name").and_then(|n| match n.get_ref().as_str() {
                            Some(s) => Some(Spanned::new(
                                n.span().start + base..n.span().end + base,
                                s.to_string(),
                            )),
                            None => {
                                r.push(n.span(), join(&path, "name"), "must be a string");
                                None
                            }
                        });
                        let rules = match t.get("rule") {
                            Some(v) => r.rules(v, &path, base),
                            None => Vec::new(),
                        };
                        plans.push(RawPlan {
                            path,
                            span,
                            name,
                            rules,
                        });
                    }
                }
                _ => {}
            }
        }
        Some(raw_targets)
    }
}

/// Parses and validates TOML text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_with(text, file, Read::InHalves).0
}

/// How a file's targets were read and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// In file order, by one thread.
    InOrder,
    /// A large file's later pieces in two halves, one per thread ([`Taken::join`]).
    InHalves,
}

/// [`parse`], reading as `read` says, and how it was read. When the halves cannot be joined as
/// they are (a name taken in both, or a file odd enough that the second half would number its
/// targets apart) the file is parsed again in order, so that every message is the one reading
/// in order gives.
fn parse_with(text: &str, file: &str, read: Read) -> (Result<Config, ConfigError>, Read) {
    let (pieces, settled_at, headers) = chunks(text);
    let piece_count = pieces.len();
    let mut reader = Reader::new(Report::new(file, text), pieces.into_iter(), 0);
    // `[defaults]`, `[[plan]]`s and `[ha]` may follow the targets: read up to the last of them
    // before validating any target (in the usual file, where they come first, that is the first
    // piece); the targets of the later pieces are then read and validated one piece at a time.
    let mut pending: Vec<RawTargetAt> = Vec::new();
    while reader
        .pieces
        .as_slice()
        .first()
        .is_some_and(|(at, _)| *at <= settled_at)
    {
        pending.extend(reader.piece().unwrap_or_default());
    }
    let syntax = |r: &Report<'_>| r.diags.iter().any(|d| d.field == "(syntax)");
    if syntax(&reader.r) {
        // What follows a syntax error would only be noise.
        return (Err(ConfigError::Invalid(reader.r.diags)), Read::InOrder);
    }
    let global = reader.global.take().unwrap_or_default();
    let defaults = reader.defaults.take().unwrap_or_default();
    let plans = std::mem::take(&mut reader.plans);
    let ha = reader.ha.take();
    // From here on every span is absolute.
    let mut r = Report::new(file, text);
    let settled = settle(&mut r, global, defaults, plans);
    let usable = |(path, span, raw): RawTargetAt| raw.map(|raw| (path, span, raw));
    let (all, read) = if reader.pieces.len() == 0 || read == Read::InOrder {
        let later = std::iter::from_fn(|| reader.piece()).flatten();
        let targets = pending.into_iter().chain(later).filter_map(usable);
        (
            settled.context(headers).take(&mut r, targets).all(),
            Read::InOrder,
        )
    } else {
        // Two cores at work on a large file: this thread reads and validates the first half of
        // the targets, a second one the other half, each one piece at a time.
        let mut first = reader.pieces.as_slice().to_vec();
        let to_first = (first.len() * TARGETS_PER_CHUNK).saturating_sub(pending.len())
            / (2 * TARGETS_PER_CHUNK);
        let second = first.split_off(to_first);
        reader.pieces = first.into_iter();
        // Every piece but the first starts at a multiple of TARGETS_PER_CHUNK `[[backup]]`s
        // ([`chunks`]): the second half numbers its targets from there, checked below against
        // the count the first half reaches.
        let second_from = (piece_count - second.len()) * TARGETS_PER_CHUNK;
        let mut later = Reader::new(Report::new(file, text), second.into_iter(), second_from);
        later.global = Some(RawGlobal::default());
        let first_count = pending.len() + reader.pieces.len() * TARGETS_PER_CHUNK;
        let (mine, (theirs, theirs_diags)) = std::thread::scope(|scope| {
            let settled = &settled;
            let later = &mut later;
            let second = scope.spawn(move || {
                let mut r = Report::new(file, text);
                let targets = std::iter::from_fn(|| later.piece()).flatten();
                let count = headers.saturating_sub(first_count);
                let taken = settled
                    .context(count)
                    .take(&mut r, targets.filter_map(usable));
                (taken, r.diags)
            });
            let more = std::iter::from_fn(|| reader.piece()).flatten();
            let targets = pending.into_iter().chain(more).filter_map(usable);
            let mine = settled.context(first_count).take(&mut r, targets);
            let theirs = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (mine, theirs)
        });
        let numbered_alike = reader.targets == second_from
            && later.defaults.is_none()
            && later.ha.is_none()
            && later.plans.is_empty();
        let joined = numbered_alike.then(|| mine.join(theirs)).flatten();
        let Some(all) = joined else {
            return parse_with(text, file, Read::InOrder);
        };
        reader.r.diags.append(&mut later.r.diags);
        reader.saw_backup |= later.saw_backup;
        r.diags.extend(theirs_diags);
        (all, Read::InHalves)
    };
    if syntax(&reader.r) {
        return (Err(ConfigError::Invalid(reader.r.diags)), read);
    }
    if !reader.saw_backup {
        reader.r.push(0..0, "backup", "no [[backup]] targets");
    }
    let mut config = settled.finish(&mut r, all);
    config.ha = ha.and_then(|(span, h)| validate_ha(&mut r, span, h));
    // The pieces' own problems first, then the values', as a reader meets them.
    let mut diags = reader.r.diags;
    diags.append(&mut r.diags);
    if diags.is_empty() {
        return (Ok(config), read);
    }
    // A target's bad value is met once per rule of it: report it once.
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert(d.clone()));
    (Err(ConfigError::Invalid(diags)), read)
}

fn duration_field(
    r: &mut Report<'_>,
    v: &Option<Spanned<String>>,
    field: &str,
    default: Duration,
) -> Duration {
    duration_at(r, v, || field.to_string(), default)
}

/// [`duration_field`] whose field path is formatted only if the value is wrong (300,000 rules a
/// load).
fn duration_at(
    r: &mut Report<'_>,
    v: &Option<Spanned<String>>,
    field: impl FnOnce() -> String,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => match parse_duration(s.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                r.push(s.span(), field(), e);
                default
            }
        },
    }
}

fn validate_ha(
    r: &mut Report<'_>,
    span: Range<usize>,
    h: RawHa,
) -> Option<crate::lease::LeaseSettings> {
    let table = match &h.lease_table {
        None => {
            r.push(
                span,
                "ha.lease_table",
                "missing: the DynamoDB table of the lease",
            );
            None
        }
        Some(t) => {
            let name = t.get_ref();
            // DynamoDB table names: 3-255 of [A-Za-z0-9_.-].
            let ok = (3..=255).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                r.push(
                    t.span(),
                    "ha.lease_table",
                    "must be a DynamoDB table name: 3 to 255 of A-Z a-z 0-9 _ - .",
                );
            }
            ok.then(|| name.clone())
        }
    };
    let duration = duration_field(
        r,
        &h.lease_duration,
        "ha.lease_duration",
        Duration::from_secs(30),
    );
    let renew_interval = duration_field(
        r,
        &h.renew_interval,
        "ha.renew_interval",
        Duration::from_secs(10),
    );
    if duration < Duration::from_secs(3)
        && let Some(s) = &h.lease_duration
    {
        r.push(s.span(), "ha.lease_duration", "must be at least 3s");
    }
    // Two renewals fit before the holder's own deadline: one failed call costs no leadership.
    let usable = duration.saturating_sub(crate::lease::skew_margin(duration));
    if (renew_interval.is_zero() || renew_interval * 2 > usable)
        && let Some(s) = h.renew_interval.as_ref().or(h.lease_duration.as_ref())
    {
        r.push(
            s.span(),
            "ha.renew_interval",
            format!(
                "must be more than zero and at most {usable:?} / 2 (lease_duration minus its \
                 skew margin of a quarter, halved)"
            ),
        );
    }
    let owner_id = match &h.owner_id {
        Some(o) if o.get_ref().trim().is_empty() => {
            r.push(o.span(), "ha.owner_id", "must not be empty");
            None
        }
        Some(o) => Some(o.get_ref().clone()),
        None => Some(crate::lease::default_owner_id()),
    };
    Some(crate::lease::LeaseSettings {
        table: table?,
        duration,
        renew_interval,
        owner_id: owner_id?,
    })
}

fn rate_field(r: &mut Report<'_>, v: &Option<Spanned<f64>>, field: &str, default: f64) -> f64 {
    match v {
        Some(s) if !(s.get_ref().is_finite() && *s.get_ref() > 0.0) => {
            r.push(
                s.span(),
                field,
                "must be a positive number of calls per second",
            );
            default
        }
        Some(s) => *s.get_ref(),
        None => default,
    }
}

fn zone_field(r: &mut Report<'_>, v: &Spanned<String>, field: &str) -> Option<Tz> {
    match v.get_ref().parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            r.push(
                v.span(),
                field,
                format!(
                    "unknown time zone `{}` (expected an IANA name like UTC, Europe/Berlin, Asia/Tokyo)",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

/// The file's settings apart from its targets, checked: the config still without targets, and
/// what validating a target needs (shared by the threads that validate a large file's halves).
struct Settled {
    config: Config,
    selection_refresh: Option<Spanned<String>>,
    defaults: RawPolicy,
    default_tz: Tz,
    default_machine: Option<StateMachineArn>,
    plans: HashMap<String, Plan>,
}

/// Checks the top-level settings, `[defaults]` and the `[[plan]]`s.
fn settle(r: &mut Report<'_>, g: RawGlobal, defaults: RawPolicy, plans: Vec<RawPlan>) -> Settled {
    let default_machine = g.state_machine_arn.as_ref().and_then(|s| {
        StateMachineArn::parse(s.get_ref())
            .map_err(|e| r.push(s.span(), "state_machine_arn", e))
            .ok()
    });
    let default_tz = match &g.timezone {
        Some(z) => zone_field(r, z, "timezone").unwrap_or(Tz::UTC),
        None => Tz::UTC,
    };
    let poll_interval = duration_field(
        r,
        &g.poll_interval,
        "poll_interval",
        Duration::from_secs(30),
    );
    let max_poll_interval = duration_field(
        r,
        &g.max_poll_interval,
        "max_poll_interval",
        Duration::from_secs(300).max(poll_interval),
    );
    if poll_interval.is_zero()
        && let Some(s) = &g.poll_interval
    {
        r.push(s.span(), "poll_interval", "must be more than zero");
    }
    if max_poll_interval < poll_interval
        && let Some(s) = &g.max_poll_interval
    {
        r.push(
            s.span(),
            "max_poll_interval",
            "must not be less than poll_interval",
        );
    }
    let listen = g.listen.as_ref().and_then(|s| {
        s.get_ref()
            .parse::<SocketAddr>()
            .map_err(|_| {
                r.push(
                    s.span(),
                    "listen",
                    format!(
                        "`{}` is not an address:port like 127.0.0.1:9464",
                        s.get_ref()
                    ),
                )
            })
            .ok()
    });
    if let Some(u) = &g.endpoint_url
        && !(u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://"))
    {
        r.push(
            u.span(),
            "endpoint_url",
            "must start with http:// or https://",
        );
    }
    let start_burst = match &g.start_burst {
        Some(b) if *b.get_ref() == 0 => {
            r.push(b.span(), "start_burst", "must be at least 1");
            DEFAULT_START_BURST
        }
        Some(b) => *b.get_ref(),
        None => DEFAULT_START_BURST,
    };
    let pacing = Pacing {
        start_rate: rate_field(r, &g.start_rate, "start_rate", DEFAULT_START_RATE),
        start_burst,
        describe_rate: rate_field(r, &g.describe_rate, "describe_rate", DEFAULT_DESCRIBE_RATE),
        backup_read_rate: rate_field(
            r,
            &g.backup_read_rate,
            "backup_read_rate",
            DEFAULT_BACKUP_READ_RATE,
        ),
    };
    let shutdown_grace = duration_field(
        r,
        &g.shutdown_grace,
        "shutdown_grace",
        Duration::from_secs(10),
    );
    let recovery_lookback = duration_field(
        r,
        &g.recovery_lookback,
        "recovery_lookback",
        Duration::from_secs(24 * 3600),
    );

    let defaults = checked_defaults(r, defaults);
    let plans = check_plans(r, plans);
    Settled {
        config: Config {
            source: r.file.to_string(),
            region: g.region.map(Spanned::into_inner),
            endpoint_url: g.endpoint_url.map(Spanned::into_inner),
            poll_interval,
            max_poll_interval,
            log_format: g.log_format.map(Spanned::into_inner).unwrap_or_default(),
            listen,
            pacing,
            shutdown_grace,
            recovery_lookback,
            targets: Vec::new(),
            ha: None,
            instances: crate::rules::Instances::default(),
            selections: Vec::new(),
            selection_refresh: DEFAULT_SELECTION_REFRESH,
            content_hash: content_hash(r.text.as_bytes()),
        },
        selection_refresh: g.selection_refresh,
        defaults,
        default_tz,
        default_machine,
        plans,
    }
}

impl Settled {
    /// A context to validate `count` targets in file order.
    fn context(&self, count: usize) -> Targets<'_> {
        Targets {
            defaults: &self.defaults,
            default_tz: self.default_tz,
            default_machine: self.default_machine.as_ref(),
            plans: &self.plans,
            // Sized once: growing maps of 100,000s of keys was a tenth of a load. The prefixes
            // are sized at the first target, which tells how many rules a target has.
            seen: FastMap::with_capacity_and_hasher(count, Default::default()),
            exec_parts: FastMap::default(),
            schedules: FastMap::default(),
            settings: FastSet::default(),
            count,
            no_copies: Arc::from(Vec::new()),
        }
    }

    /// The config with its targets: the checks that need all of them, then the rules by
    /// instance.
    fn finish(self, r: &mut Report<'_>, all: AllTargets) -> Config {
        let mut config = self.config;
        // `{selection}-i-…` names belong to the selection's instances.
        for s in &all.selections {
            let prefix = format!("{}-i-", s.name);
            for (name, at) in all.names.iter().flatten() {
                if name.starts_with(&prefix) {
                    r.push(
                        at.clone(),
                        "backup.name",
                        format!(
                            "`{name}` would clash with the instances of the selection `{}` (named {prefix}…)",
                            s.name
                        ),
                    );
                }
            }
        }
        let g = &self.selection_refresh;
        config.selection_refresh =
            duration_field(r, g, "selection_refresh", DEFAULT_SELECTION_REFRESH);
        if config.selection_refresh < Duration::from_secs(1)
            && let Some(s) = g
        {
            r.push(s.span(), "selection_refresh", "must be at least 1s");
        }
        config.instances = crate::rules::Instances::of(&all.targets);
        config.targets = all.targets;
        config.selections = all.selections;
        config
    }
}

/// Targets validated in file order, with the names, execution-name prefixes and settings they
/// took ([`Targets::take`]).
struct Taken {
    targets: Vec<Arc<Target>>,
    selections: Vec<Arc<crate::selection::Selection>>,
    names: FastMap<Arc<str>, Range<usize>>,
    exec_parts: FastMap<String, Option<String>>,
    settings: FastSet<Arc<Settings>>,
}

/// Every target of a file, validated.
struct AllTargets {
    targets: Vec<Arc<Target>>,
    selections: Vec<Arc<crate::selection::Selection>>,
    /// Where each target name is written, per run validated apart.
    names: Vec<FastMap<Arc<str>, Range<usize>>>,
}

impl Taken {
    /// All the targets, when these are all.
    fn all(self) -> AllTargets {
        AllTargets {
            targets: self.targets,
            selections: self.selections,
            names: vec![self.names],
        }
    }

    /// The targets of this run followed by those of `later` (validated apart, from where this
    /// run ends): the same as one run over both, unless a name or an execution-name prefix of
    /// `later` is taken in this one (then None: that message is one run's to give). Settings
    /// alike are shared across both.
    fn join(self, later: Taken) -> Option<AllTargets> {
        let clash = later.names.keys().any(|n| self.names.contains_key(n))
            || later
                .exec_parts
                .keys()
                .any(|p| self.exec_parts.contains_key(p));
        if clash {
            return None;
        }
        let mut same: FastMap<*const Settings, Arc<Settings>> = FastMap::default();
        for s in &later.settings {
            if let Some(mine) = self.settings.get(s) {
                same.insert(Arc::as_ptr(s), mine.clone());
            }
        }
        let mut targets = self.targets;
        targets.reserve_exact(later.targets.len());
        for mut t in later.targets {
            if let (Some(mine), Some(t)) =
                (same.get(&Arc::as_ptr(&t.settings)), Arc::get_mut(&mut t))
            {
                t.settings = mine.clone();
            }
            targets.push(t);
        }
        let mut selections = self.selections;
        selections.extend(later.selections);
        Some(AllTargets {
            targets,
            selections,
            names: vec![self.names, later.names],
        })
    }
}

/// Tags as a selection names them: key = value.
type Tags = BTreeMap<String, String>;

/// Checks `select_tags` and `exclude_tags` of a target; for a selection, gives the target a
/// placeholder `resource_arn` in its state machine's region and account (its rules are then
/// validated as any target's) and returns (usable, select, exclude). None: not a selection.
fn selection_spec(
    r: &mut Report<'_>,
    path: &str,
    t: &mut RawTarget,
    default_machine: Option<&StateMachineArn>,
) -> Option<(bool, Tags, Tags)> {
    use crate::selection::{MAX_TAG_KEYS, TEMPLATE_INSTANCE};
    let f = |k: &str| format!("{path}.{k}");
    let Some(select) = t.select_tags.take() else {
        if let Some(e) = &t.exclude_tags {
            r.push(
                e.span(),
                f("exclude_tags"),
                "only a selection (select_tags) excludes instances",
            );
        }
        return None;
    };
    let mut ok = true;
    if let Some(a) = &t.resource_arn {
        r.push(
            a.span(),
            f("resource_arn"),
            "a target has either resource_arn (one instance) or select_tags (instances by tag), not both",
        );
        ok = false;
    }
    let exclude = t.exclude_tags.take();
    for (tags, key, min) in [
        (Some(&select), "select_tags", 1),
        (exclude.as_ref(), "exclude_tags", 0),
    ] {
        let Some(tags) = tags else { continue };
        let n = tags.get_ref().len();
        if n < min {
            r.push(
                tags.span(),
                f(key),
                "empty: name at least one tag, like { backup = \"daily\" }",
            );
            ok = false;
        } else if n > MAX_TAG_KEYS {
            r.push(
                tags.span(),
                f(key),
                format!("{n} keys: GetResources takes at most {MAX_TAG_KEYS} tag keys"),
            );
            ok = false;
        }
        for (k, v) in tags.get_ref() {
            if let Err(e) = tag_ok(k, v) {
                r.push(tags.span(), format!("{}.{k}", f(key)), e);
                ok = false;
            }
        }
    }
    let machine = match &t.state_machine_arn {
        Some(s) => StateMachineArn::parse(s.get_ref()).ok(),
        None => default_machine.cloned(),
    };
    if machine.is_none() && t.state_machine_arn.is_none() {
        r.push(
            select.span(),
            f("select_tags"),
            "a selection searches its state machine's region and account: set state_machine_arn at the top or in this target",
        );
    }
    // The rules are validated as any target's, on a placeholder instance of the machine's
    // region and account (a bad selection's are checked too, then dropped).
    let (partition, region, account) = machine
        .as_ref()
        .map_or(("aws", "us-east-1", "000000000000"), |m| {
            (m.partition.as_str(), m.region.as_str(), m.account.as_str())
        });
    if t.resource_arn.is_none() {
        t.resource_arn = Some(Spanned::new(
            select.span(),
            format!("arn:{partition}:ec2:{region}:{account}:instance/{TEMPLATE_INSTANCE}"),
        ));
    }
    let exclude = exclude.map(Spanned::into_inner).unwrap_or_default();
    Some((ok && machine.is_some(), select.into_inner(), exclude))
}

/// AWS tag rules: keys of 1-128 characters, values of at most 256, both of letters, digits,
/// spaces and `_ . : / = + - @` (`aws:` keys, set by AWS, may be selected on).
fn tag_ok(key: &str, value: &str) -> Result<(), String> {
    let chars_ok = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
    };
    if key.is_empty() || key.chars().count() > 128 || !chars_ok(key) {
        return Err(format!(
            "tag key `{key}`: use 1-128 of letters, digits, spaces and _ . : / = + - @"
        ));
    }
    if value.chars().count() > 256 || !chars_ok(value) {
        return Err(format!(
            "tag value `{value}`: use at most 256 of letters, digits, spaces and _ . : / = + - @"
        ));
    }
    Ok(())
}

/// Reports each bad `[defaults]` value once, under `defaults.KEY`, and drops it, so that the
/// targets that inherit it fall back to the built-in default instead of repeating the error.
fn checked_defaults(r: &mut Report<'_>, mut d: RawPolicy) -> RawPolicy {
    let check_duration = |v: &mut Option<Spanned<String>>, key: &str, r: &mut Report<'_>| {
        if let Some(s) = v.as_ref()
            && let Err(e) = parse_duration(s.get_ref())
        {
            r.push(s.span(), format!("defaults.{key}"), e);
            *v = None;
        }
    };
    check_duration(&mut d.starting_deadline, "starting_deadline", r);
    check_duration(&mut d.jitter, "jitter", r);
    if let Some(s) = d.hook_max_downtime.as_ref()
        && let Err(e) = max_downtime(s.get_ref())
    {
        r.push(s.span(), "defaults.hook_max_downtime", e);
        d.hook_max_downtime = None;
    }
    for (key, doc) in [
        ("pre_document", &mut d.pre_document),
        ("post_document", &mut d.post_document),
    ] {
        if let Some(raw) = doc.as_ref()
            && !document_field(r, raw, &format!("defaults.{key}")).1
        {
            *doc = None;
        }
    }
    if let Some(v) = &d.start_window_minutes
        && *v.get_ref() < MIN_START_WINDOW_MINUTES
    {
        r.push(
            v.span(),
            "defaults.start_window_minutes",
            format!("AWS Backup needs at least {MIN_START_WINDOW_MINUTES}"),
        );
        d.start_window_minutes = None;
    }
    if let Some(v) = &d.delete_after_days
        && *v.get_ref() == 0
    {
        r.push(v.span(), "defaults.delete_after_days", "must be at least 1");
        d.delete_after_days = None;
    }
    d
}

/// `hook_max_downtime`: a duration within the machine's bounds.
fn max_downtime(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < hooks::MIN_MAX_DOWNTIME || d > hooks::MAX_MAX_DOWNTIME {
        return Err(format!(
            "`{s}`: must be between {}s and {}h (the machine polls the job every 10 s while \
             it waits, and an execution holds at most 25,000 history events)",
            hooks::MIN_MAX_DOWNTIME.as_secs(),
            hooks::MAX_MAX_DOWNTIME.as_secs() / 3600
        ));
    }
    Ok(d)
}

/// A hook document, checked; reports each problem under `field.name` etc. at the document.
/// Returns the document and whether it was good.
fn document_field(
    r: &mut Report<'_>,
    raw: &Spanned<RawDocument>,
    field: &str,
) -> (Option<Document>, bool) {
    let d = raw.get_ref();
    let doc = Document {
        name: d.name.clone(),
        version: d.version.clone(),
        parameters: d.parameters.clone(),
    };
    let problems = hooks::check_document(&doc);
    let good = problems.is_empty();
    for (sub, message) in problems {
        r.push(raw.span(), format!("{field}.{sub}"), message);
    }
    (Some(doc), good)
}

/// The longest target name we accept.
const MAX_TARGET_NAME_LEN: usize = 128;
/// The longest rule name we accept (it is part of execution names).
const MAX_RULE_NAME_LEN: usize = 32;

/// A `[[plan]]` after its rules were checked (each bad value reported once, then dropped).
struct Plan {
    /// False when a rule of it is unusable: its targets are then left out, not reported again.
    usable: bool,
    rules: Vec<CheckedRule>,
}

/// A rule whose own values were checked.
struct CheckedRule {
    path: Arc<str>,
    name: Arc<str>,
    raw: RawRule,
    /// Its own zone, if it names one.
    tz: Option<Tz>,
}

/// What validating a run of targets in file order shares.
struct Targets<'a> {
    defaults: &'a RawPolicy,
    default_tz: Tz,
    default_machine: Option<&'a StateMachineArn>,
    plans: &'a HashMap<String, Plan>,
    seen: FastMap<Arc<str>, Range<usize>>,
    /// Execution-name prefixes taken, with the rule's slot key when it differs from the prefix.
    exec_parts: FastMap<String, Option<String>>,
    /// Plan rules' schedules, parsed once per zone (100,000 targets on one plan share three).
    schedules: FastMap<(usize, usize, Tz), Option<Arc<Schedule>>>,
    /// Every distinct [`Settings`] so far: targets set alike share one.
    settings: FastSet<Arc<Settings>>,
    /// How many `[[backup]]`s the file has.
    count: usize,
    /// The empty `copy_to` every rule without copies shares.
    no_copies: Arc<[crate::copies::Destination]>,
}

impl Targets<'_> {
    /// Validates `raw_targets` in file order.
    fn take(
        mut self,
        r: &mut Report<'_>,
        raw_targets: impl Iterator<Item = (String, Range<usize>, (RawTarget, RawRules))>,
    ) -> Taken {
        let mut targets = Vec::with_capacity(self.count);
        let mut selections = Vec::new();
        for (path, span, (mut t, rules)) in raw_targets {
            let select = selection_spec(r, &path, &mut t, self.default_machine);
            let validated = self.validate(r, &path, span, t, rules);
            match select {
                None => targets.extend(validated.into_iter().map(Arc::new)),
                Some((false, _, _)) => {}
                Some(_) if validated.is_empty() => {}
                Some((true, select, exclude)) => {
                    let sm = &validated[0].state_machine;
                    selections.push(Arc::new(crate::selection::Selection {
                        name: validated[0].name.to_string(),
                        select,
                        exclude,
                        partition: sm.partition.clone(),
                        region: sm.region.clone(),
                        account: sm.account.clone(),
                        templates: validated.into_iter().map(Arc::new).collect(),
                    }));
                }
            }
        }
        Taken {
            targets,
            selections,
            names: self.seen,
            exec_parts: self.exec_parts,
            settings: self.settings,
        }
    }

    /// The shared copy of `settings`.
    fn shared(&mut self, settings: Settings) -> Arc<Settings> {
        if let Some(s) = self.settings.get(&settings) {
            return s.clone();
        }
        let s = Arc::new(settings);
        self.settings.insert(s.clone());
        s
    }
}

/// Checks a list of rules (of a plan or a target): names, duplicates, and each value once.
fn check_rules(r: &mut Report<'_>, rules: Vec<(String, Range<usize>, RawRule)>) -> Plan {
    let mut usable = !rules.is_empty();
    let mut names: HashMap<String, Range<usize>> = HashMap::new();
    let mut out = Vec::with_capacity(rules.len());
    for (path, span, mut raw) in rules {
        let f = |k: &str| format!("{path}.{k}");
        let name = match &raw.name {
            None => {
                r.push(span.clone(), f("name"), "missing (every rule needs a name)");
                None
            }
            Some(n) => {
                let s = n.get_ref();
                let good = s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
                if s.is_empty() || s.len() > MAX_RULE_NAME_LEN || !good {
                    r.push(
                        n.span(),
                        f("name"),
                        format!("`{s}`: use 1-{MAX_RULE_NAME_LEN} of A-Z a-z 0-9 - _"),
                    );
                    None
                } else if let Some(first) = names.get(s) {
                    let (line, _) = line_col(r.text, first.start);
                    r.push(
                        n.span(),
                        f("name"),
                        format!("two rules named `{s}` (the first on line {line})"),
                    );
                    None
                } else {
                    names.insert(s.clone(), n.span());
                    Some(Arc::<str>::from(s.as_str()))
                }
            }
        };
        if raw.schedule.is_none() {
            r.push(span.clone(), f("schedule"), "missing (a cron expression)");
        }
        let tz = raw
            .timezone
            .as_ref()
            .map(|z| zone_field(r, z, &f("timezone")));
        for (v, key) in [
            (&mut raw.starting_deadline, "starting_deadline"),
            (&mut raw.jitter, "jitter"),
        ] {
            if let Some(s) = v.as_ref()
                && let Err(e) = parse_duration(s.get_ref())
            {
                r.push(s.span(), f(key), e);
                *v = None;
            }
        }
        if let Some(v) = &raw.start_window_minutes
            && *v.get_ref() < MIN_START_WINDOW_MINUTES
        {
            r.push(
                v.span(),
                f("start_window_minutes"),
                format!("AWS Backup needs at least {MIN_START_WINDOW_MINUTES}"),
            );
            raw.start_window_minutes = None;
        }
        if let Some(v) = &raw.delete_after_days
            && *v.get_ref() == 0
        {
            r.push(v.span(), f("delete_after_days"), "must be at least 1");
            raw.delete_after_days = None;
        }
        match (name, &raw.schedule, tz) {
            (Some(name), Some(_), None | Some(Some(_))) => out.push(CheckedRule {
                path: path.into(),
                name,
                tz: tz.flatten(),
                raw,
            }),
            _ => usable = false,
        }
    }
    Plan { usable, rules: out }
}

/// Checks every `[[plan]]` once; targets then only look them up.
fn check_plans(r: &mut Report<'_>, plans: Vec<RawPlan>) -> HashMap<String, Plan> {
    let mut out: HashMap<String, (Range<usize>, Plan)> = HashMap::new();
    for p in plans {
        let Some(name) = p.name else {
            r.push(
                p.span.clone(),
                format!("{}.name", p.path),
                "missing (targets name a plan with plan = \"NAME\")",
            );
            continue;
        };
        if p.rules.is_empty() {
            r.push(
                name.span(),
                format!("{}.rule", p.path),
                "a plan needs at least one [[plan.rule]]",
            );
        }
        let checked = check_rules(r, p.rules);
        if let Some((first, _)) = out.get(name.get_ref()) {
            let (line, _) = line_col(r.text, first.start);
            r.push(
                name.span(),
                format!("{}.name", p.path),
                format!("a plan `{}` exists already (line {line})", name.get_ref()),
            );
            continue;
        }
        out.insert(name.get_ref().clone(), (name.span(), checked));
    }
    out.into_iter().map(|(k, (_, p))| (k, p)).collect()
}

impl Targets<'_> {
    /// Validates one `[[backup]]` into one [`Target`] per rule (none if anything is wrong).
    fn validate(
        &mut self,
        r: &mut Report<'_>,
        path: &str,
        span: Range<usize>,
        t: RawTarget,
        inline: RawRules,
    ) -> Vec<Target> {
        let f = |k: &str| format!("{path}.{k}");
        let mut ok = true;

        let name = match &t.name {
            None => {
                r.push(
                    span.clone(),
                    f("name"),
                    "missing (every [[backup]] needs a unique name)",
                );
                ok = false;
                Arc::from("")
            }
            Some(n) => {
                let s = n.get_ref();
                let name: Arc<str> = Arc::from(s.as_str());
                let good_chars = s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if s.is_empty() || s.len() > MAX_TARGET_NAME_LEN || !good_chars {
                    r.push(
                        n.span(),
                        f("name"),
                        format!("`{s}`: use 1-{MAX_TARGET_NAME_LEN} of A-Z a-z 0-9 - _ ."),
                    );
                    ok = false;
                } else if let Some(first) = self.seen.get(s.as_str()) {
                    let (line, _) = line_col(r.text, first.start);
                    r.push(
                        n.span(),
                        f("name"),
                        format!("`{s}` is used already (line {line})"),
                    );
                    ok = false;
                } else {
                    self.seen.insert(name.clone(), n.span());
                }
                name
            }
        };

        let resource_arn = match &t.resource_arn {
            None => {
                r.push(
                    span.clone(),
                    f("resource_arn"),
                    "missing (the EC2 instance ARN to back up, or select_tags)",
                );
                None
            }
            Some(a) => InstanceArn::parse(a.get_ref())
                .map_err(|e| r.push(a.span(), f("resource_arn"), e))
                .ok(),
        };

        let tz = match &t.timezone {
            Some(z) => zone_field(r, z, &f("timezone")),
            None => Some(self.default_tz),
        };

        let state_machine = match &t.state_machine_arn {
            Some(s) => StateMachineArn::parse(s.get_ref())
                .map_err(|e| r.push(s.span(), f("state_machine_arn"), e))
                .ok(),
            None => {
                if self.default_machine.is_none() {
                    r.push(
                        span.clone(),
                        f("state_machine_arn"),
                        "no state machine: set state_machine_arn at the top or in this target",
                    );
                }
                self.default_machine.cloned()
            }
        };

        if let (Some(res), Some(sm)) = (&resource_arn, &state_machine) {
            let at = t
                .resource_arn
                .as_ref()
                .map(Spanned::span)
                .unwrap_or(span.clone());
            if res.region() != sm.region {
                r.push(
                    at.clone(),
                    f("resource_arn"),
                    format!(
                        "the instance is in {} but its state machine runs in {}: AWS Backup backs up resources in its own region",
                        res.region(), sm.region
                    ),
                );
            } else if res.account() != sm.account || res.partition() != sm.partition {
                r.push(
                    at,
                    f("resource_arn"),
                    format!(
                        "the instance is in account {} but its state machine in {}: StartBackupJob needs the same account",
                        res.account(), sm.account
                    ),
                );
            }
        }

        let command = |c: &Option<Spanned<String>>, key: &str, r: &mut Report<'_>| {
            c.as_ref().and_then(|c| {
                if c.get_ref().trim().is_empty() {
                    r.push(
                        c.span(),
                        f(key),
                        "empty command (leave the key out instead)",
                    );
                    None
                } else {
                    Some(Arc::<str>::from(c.get_ref().as_str()))
                }
            })
        };
        let pre_command = command(&t.pre_command, "pre_command", r);
        let post_command = command(&t.post_command, "post_command", r);

        // The rules: the target's own schedule (today's form), a plan, or inline rules.
        let own = merge(&t, self.defaults);
        // Hooks stay per target: every rule of it runs them. A target's own document is checked
        // here; an inherited one was checked in [defaults].
        let policy = &own;
        let document = |own: &Option<Spanned<RawDocument>>,
                        merged: &Option<Spanned<RawDocument>>,
                        key: &str,
                        r: &mut Report<'_>| match (own, merged) {
            (Some(raw), _) => {
                let (doc, good) = document_field(r, raw, &f(key));
                doc.filter(|_| good)
            }
            (None, Some(raw)) => {
                document_field(
                    &mut Report {
                        diags: Vec::new(),
                        ..*r
                    },
                    raw,
                    "",
                )
                .0
            }
            (None, None) => None,
        };
        let pre_document =
            document(&t.pre_document, &policy.pre_document, "pre_document", r).map(Arc::new);
        let post_document =
            document(&t.post_document, &policy.post_document, "post_document", r).map(Arc::new);
        for (cmd, doc, key) in [
            (&t.pre_command, &policy.pre_document, "pre_command"),
            (&t.post_command, &policy.post_document, "post_command"),
        ] {
            if let (Some(c), Some(_)) = (cmd, doc) {
                r.push(
                    c.span(),
                    f(key),
                    format!(
                        "the target has a {} too: a hook is either a document or a command",
                        key.replace("command", "document")
                    ),
                );
            }
        }
        let hook_max_downtime = match &policy.hook_max_downtime {
            None => hooks::DEFAULT_MAX_DOWNTIME,
            Some(s) => max_downtime(s.get_ref()).unwrap_or_else(|e| {
                // An inherited bad default was reported (and dropped) in [defaults].
                r.push(s.span(), f("hook_max_downtime"), e);
                hooks::DEFAULT_MAX_DOWNTIME
            }),
        };
        let post_hook_when = policy
            .post_hook_when
            .clone()
            .map(Spanned::into_inner)
            .unwrap_or_default();
        let on_pre_hook_failure = policy
            .on_pre_hook_failure
            .clone()
            .map(Spanned::into_inner)
            .unwrap_or_default();
        let windows_vss = policy.windows_vss.clone().is_some_and(Spanned::into_inner);
        let mut units: Vec<Unit> = Vec::new();
        let compact = t.plan.is_some() || inline.is_some();
        let mut conflict = false;
        if let (Some(s), true) = (&t.schedule, compact) {
            r.push(
                s.span(),
                f("schedule"),
                "a target has either its own schedule or rules (plan = \"…\" or [[backup.rule]]), not both",
            );
            conflict = true;
        }
        if let (Some(p), Some((rspan, _))) = (&t.plan, &inline) {
            r.push(
                p.span(),
                f("plan"),
                format!(
                    "a target has either plan = \"…\" or [[backup.rule]]s (line {}), not both",
                    line_col(r.text, rspan.start).0
                ),
            );
            conflict = true;
        }
        ok &= !conflict;
        match (&t.schedule, &t.plan, inline) {
            (_, _, _) if conflict => {}
            (None, None, None) => {
                r.push(
                    span.clone(),
                    f("schedule"),
                    "missing (a cron expression, plan = \"…\" or [[backup.rule]]s)",
                );
                ok = false;
            }
            (Some(s), None, None) => {
                let schedule = tz.and_then(|tz| {
                    Schedule::parse(s.get_ref(), tz)
                        .map_err(|e| r.push(s.span(), f("schedule"), e.message))
                        .ok()
                        .map(Arc::new)
                });
                units.push((None, schedule, own, Arc::from(path)));
            }
            (None, Some(p), None) => match self.plans.get(p.get_ref()) {
                None => {
                    let mut known: Vec<&str> = self.plans.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    r.push(
                        p.span(),
                        f("plan"),
                        format!(
                            "no [[plan]] named `{}` (plans: {})",
                            p.get_ref(),
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    ok = false;
                }
                Some(plan) if !plan.usable => ok = false,
                Some(plan) => {
                    // Plans are not added to while targets are validated: the address names it.
                    let plan_index = plan as *const Plan as usize;
                    for (i, rule) in plan.rules.iter().enumerate() {
                        let Some(zone) = rule.tz.or(tz) else {
                            continue;
                        };
                        let schedule = self
                            .schedules
                            .entry((plan_index, i, zone))
                            .or_insert_with(|| {
                                let s = rule.raw.schedule.as_ref().expect("checked");
                                Schedule::parse(s.get_ref(), zone)
                                    .map_err(|e| {
                                        r.push(
                                            s.span(),
                                            format!("{}.schedule", rule.path),
                                            e.message,
                                        )
                                    })
                                    .ok()
                                    .map(Arc::new)
                            })
                            .clone();
                        units.push((
                            Some(rule.name.clone()),
                            schedule,
                            over(&rule.raw, &own),
                            rule.path.clone(),
                        ));
                    }
                }
            },
            (None, None, Some((rspan, rules))) => {
                if rules.is_empty() {
                    r.push(rspan, f("rule"), "no rules");
                    ok = false;
                }
                let checked = check_rules(r, rules);
                ok &= checked.usable;
                for rule in checked.rules {
                    let Some(zone) = rule.tz.or(tz) else {
                        continue;
                    };
                    let s = rule.raw.schedule.as_ref().expect("checked");
                    let schedule = Schedule::parse(s.get_ref(), zone)
                        .map_err(|e| r.push(s.span(), format!("{}.schedule", rule.path), e.message))
                        .ok()
                        .map(Arc::new);
                    units.push((Some(rule.name), schedule, over(&rule.raw, &own), rule.path));
                }
            }
            _ => {}
        }

        let mut out = Vec::with_capacity(units.len());
        // Room for every target still to come with as many rules as this one (four at most): a
        // plan fleet grows the map once, not by doubling through 300,000 keys.
        if self.exec_parts.capacity() - self.exec_parts.len() < units.len() {
            let to_come = self.count.saturating_sub(self.seen.len()) + 1;
            self.exec_parts
                .reserve(units.len().clamp(1, 4).saturating_mul(to_come));
        }
        for (rule, schedule, policy, rule_path) in units {
            // A value's error names where it was written: the rule, the target or [defaults].
            let at = |key: &str, from_rule: bool| {
                if from_rule {
                    format!("{rule_path}.{key}")
                } else {
                    f(key)
                }
            };
            let slot_key = match &rule {
                Some(rule) => format!("{name}-{rule}"),
                None => name.to_string(),
            };
            if ok && !name.is_empty() {
                // Keyed by the prefix, with the slot key beside it only when they differ: no
                // copy of either for the usual short plain name.
                let (prefix, full) = if crate::execution::is_plain_part(&slot_key, 63) {
                    (slot_key, None)
                } else {
                    (crate::execution::target_part(&slot_key, 63), Some(slot_key))
                };
                match self.exec_parts.entry(prefix) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        let (part, other) = (o.key(), o.get().as_deref().unwrap_or(o.key()));
                        let mine = full.as_deref().unwrap_or(part);
                        r.push(
                            t.name.as_ref().map_or(span.clone(), Spanned::span),
                            f("name"),
                            format!(
                                "`{mine}` and `{other}` give the same execution name prefix `{part}`"
                            ),
                        );
                        ok = false;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(full);
                    }
                }
            }
            let from_rule = rule.is_some();
            let starting_deadline = duration_at(
                r,
                &policy.starting_deadline,
                || at("starting_deadline", false),
                Duration::from_secs(3600),
            );
            let jitter = duration_at(r, &policy.jitter, || at("jitter", false), Duration::ZERO);
            if let (Some(j), false) = (&policy.jitter, jitter < starting_deadline) {
                r.push(
                    j.span(),
                    at("jitter", from_rule),
                    "must be shorter than starting_deadline",
                );
                ok = false;
            }
            let start_window_minutes = policy
                .start_window_minutes
                .as_ref()
                .map_or(MIN_START_WINDOW_MINUTES, |v| *v.get_ref());
            if let Some(v) = &policy.start_window_minutes
                && *v.get_ref() < MIN_START_WINDOW_MINUTES
            {
                r.push(
                    v.span(),
                    at("start_window_minutes", false),
                    format!("AWS Backup needs at least {MIN_START_WINDOW_MINUTES}"),
                );
                ok = false;
            }
            let complete_window_minutes = policy
                .complete_window_minutes
                .as_ref()
                .map_or(7 * 24 * 60, |v| *v.get_ref());
            if let Some(v) = &policy.complete_window_minutes
                && *v.get_ref() <= start_window_minutes
            {
                r.push(
                    v.span(),
                    at("complete_window_minutes", from_rule),
                    "must be more than start_window_minutes",
                );
                ok = false;
            }
            let delete_after_days = policy
                .delete_after_days
                .as_ref()
                .map_or(35, |v| *v.get_ref());
            if let Some(v) = &policy.delete_after_days
                && *v.get_ref() == 0
            {
                r.push(
                    v.span(),
                    at("delete_after_days", false),
                    "must be at least 1",
                );
                ok = false;
            }
            // Named where it was written: the target, [defaults], or the rule.
            let copy_path = || match &policy.copy_to {
                Some(c) if t.copy_to.as_ref().is_some_and(|o| o.span() == c.span()) => f("copy_to"),
                Some(c)
                    if self
                        .defaults
                        .copy_to
                        .as_ref()
                        .is_some_and(|o| o.span() == c.span()) =>
                {
                    "defaults.copy_to".to_string()
                }
                _ => format!("{rule_path}.copy_to"),
            };
            let partition = state_machine.as_ref().map(|m| m.partition.as_str());
            let copy_to = match &policy.copy_to {
                None => Some(Vec::new()),
                Some(c) => copy_destinations(r, c, &copy_path(), partition, delete_after_days),
            };
            let (Some(resource_arn), Some(schedule), Some(state_machine), Some(copy_to)) =
                (&resource_arn, schedule, &state_machine, copy_to)
            else {
                ok = false;
                continue;
            };
            let settings = Settings {
                rule,
                schedule,
                state_machine: state_machine.clone(),
                enabled: t.enabled.as_ref().is_none_or(|e| *e.get_ref()),
                catch_up: policy.catch_up.map(Spanned::into_inner).unwrap_or_default(),
                starting_deadline,
                concurrency: policy
                    .concurrency
                    .map(Spanned::into_inner)
                    .unwrap_or_default(),
                jitter,
                start_window_minutes,
                complete_window_minutes,
                delete_after_days,
                pre_command: pre_command.clone(),
                post_command: post_command.clone(),
                pre_document: pre_document.clone(),
                post_document: post_document.clone(),
                post_hook_when,
                hook_max_downtime,
                on_pre_hook_failure,
                windows_vss,
                copy_to: if copy_to.is_empty() {
                    self.no_copies.clone()
                } else {
                    copy_to.into()
                },
            };
            out.push(Target {
                name: name.clone(),
                resource_arn: resource_arn.clone(),
                settings: self.shared(settings),
            });
        }
        if ok { out } else { Vec::new() }
    }
}

/// The longest retention a copy may ask for (100 years; AWS Backup takes a long).
const MAX_COPY_DELETE_AFTER_DAYS: i64 = 36_500;

/// Checks a `copy_to` list: each entry a backup vault ARN in the machine's `partition`, a
/// retention of 1 day or more (default: the backup's `delete_after_days`), no destination twice.
fn copy_destinations(
    r: &mut Report<'_>,
    raw: &RawCopies,
    field: &str,
    partition: Option<&str>,
    default_days: u32,
) -> Option<Vec<crate::copies::Destination>> {
    let mut out = Vec::new();
    let mut good = true;
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    for (i, item) in raw.get_ref().iter().enumerate() {
        let path = format!("{field}[{i}]");
        let c = item.get_ref();
        let days = match &c.delete_after_days {
            None => Some(default_days),
            Some(d) if (1..=MAX_COPY_DELETE_AFTER_DAYS).contains(d.get_ref()) => {
                Some(*d.get_ref() as u32)
            }
            Some(d) => {
                r.push(
                    d.span(),
                    format!("{path}.delete_after_days"),
                    format!(
                        "{} days: a copy is kept 1 to {MAX_COPY_DELETE_AFTER_DAYS} days",
                        d.get_ref()
                    ),
                );
                None
            }
        };
        let vault = match &c.vault_arn {
            None => {
                r.push(
                    item.span(),
                    format!("{path}.vault_arn"),
                    "missing (the destination backup vault's ARN)",
                );
                None
            }
            Some(a) => match crate::arn::BackupVaultArn::parse(a.get_ref()) {
                Err(e) => {
                    r.push(
                        a.span(),
                        format!("{path}.vault_arn"),
                        format!("not a backup vault ARN: {e}"),
                    );
                    None
                }
                Ok(v) if partition.is_some_and(|p| p != v.partition) => {
                    r.push(
                        a.span(),
                        format!("{path}.vault_arn"),
                        format!(
                            "partition `{}` is not the state machine's `{}`: AWS Backup copies \
                             only within a partition",
                            v.partition,
                            partition.unwrap_or_default()
                        ),
                    );
                    None
                }
                Ok(v) => {
                    if let Some(first) = seen.get(v.as_str()) {
                        let (line, _) = line_col(r.text, first.start);
                        r.push(
                            a.span(),
                            format!("{path}.vault_arn"),
                            format!("`{v}` is a destination already (line {line})"),
                        );
                        None
                    } else {
                        seen.insert(v.to_string(), a.span());
                        Some(v)
                    }
                }
            },
        };
        match (vault, days) {
            (Some(vault), Some(delete_after_days)) => out.push(crate::copies::Destination {
                vault,
                delete_after_days,
            }),
            _ => good = false,
        }
    }
    good.then_some(out)
}

/// A rule's own settings over its target's (which are already over `[defaults]`).
fn over(rule: &RawRule, target: &RawPolicy) -> RawPolicy {
    let t = target.clone();
    RawPolicy {
        catch_up: rule.catch_up.clone().or(t.catch_up.clone()),
        starting_deadline: rule
            .starting_deadline
            .clone()
            .or(t.starting_deadline.clone()),
        jitter: rule.jitter.clone().or(t.jitter.clone()),
        start_window_minutes: rule
            .start_window_minutes
            .clone()
            .or(t.start_window_minutes.clone()),
        complete_window_minutes: rule
            .complete_window_minutes
            .clone()
            .or(t.complete_window_minutes.clone()),
        delete_after_days: rule
            .delete_after_days
            .clone()
            .or(t.delete_after_days.clone()),
        copy_to: rule.copy_to.clone().or(t.copy_to.clone()),
        ..t
    }
}

/// A target's own settings over `[defaults]`.
fn merge(o: &RawTarget, defaults: &RawPolicy) -> RawPolicy {
    let d = defaults.clone();
    let o = RawPolicy {
        catch_up: o.catch_up.clone(),
        starting_deadline: o.starting_deadline.clone(),
        concurrency: o.concurrency.clone(),
        jitter: o.jitter.clone(),
        start_window_minutes: o.start_window_minutes.clone(),
        complete_window_minutes: o.complete_window_minutes.clone(),
        delete_after_days: o.delete_after_days.clone(),
        pre_document: o.pre_document.clone(),
        post_document: o.post_document.clone(),
        post_hook_when: o.post_hook_when.clone(),
        hook_max_downtime: o.hook_max_downtime.clone(),
        on_pre_hook_failure: o.on_pre_hook_failure.clone(),
        windows_vss: o.windows_vss.clone(),
        copy_to: o.copy_to.clone(),
    };
    RawPolicy {
        catch_up: o.catch_up.or(d.catch_up),
        starting_deadline: o.starting_deadline.or(d.starting_deadline),
        concurrency: o.concurrency.or(d.concurrency),
        jitter: o.jitter.or(d.jitter),
        start_window_minutes: o.start_window_minutes.or(d.start_window_minutes),
        complete_window_minutes: o.complete_window_minutes.or(d.complete_window_minutes),
        delete_after_days: o.delete_after_days.or(d.delete_after_days),
        pre_document: o.pre_document.or(d.pre_document),
        post_document: o.post_document.or(d.post_document),
        post_hook_when: o.post_hook_when.or(d.post_hook_when),
        hook_max_downtime: o.hook_max_downtime.or(d.hook_max_downtime),
        on_pre_hook_failure: o.on_pre_hook_failure.or(d.on_pre_hook_failure),
        windows_vss: o.windows_vss.or(d.windows_vss),
        copy_to: o.copy_to.or(d.copy_to),
    }
}

impl Config {
    /// The targets that fire.
    pub fn enabled_targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.targets.iter().filter(|t| t.enabled)
    }

    /// Distinct state machines in use (selections' too), with the regions they run in.
    pub fn state_machines(&self) -> Vec<StateMachineArn> {
        let mut v: Vec<StateMachineArn> = self
            .targets
            .iter()
            .chain(self.selections.iter().flat_map(|s| s.templates.iter()))
            .map(|t| t.state_machine.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Targets by name.
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| &*t.name == name)
    }

    /// The rule `run-now NAME` starts: the target's rule with the longest retention (the first
    /// on a tie), so a manual backup of a multi-rule target is kept as long as any.
    pub fn run_now_target(&self, name: &str) -> Option<&Arc<Target>> {
        let mut best: Option<&Arc<Target>> = None;
        for t in self.targets.iter().filter(|t| &*t.name == name) {
            if best.is_none_or(|b| t.delete_after_days > b.delete_after_days) {
                best = Some(t);
            }
        }
        best
    }

    /// Counts by schedule group, for the summary `check` prints.
    pub fn groups(&self) -> BTreeMap<String, usize> {
        let mut m: FastMap<&str, usize> = FastMap::default();
        for t in self.enabled_targets() {
            *m.entry(t.schedule.group_key()).or_insert(0) += 1;
        }
        m.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:backup";
    const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

    fn ok(text: &str) -> Config {
        parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(text: &str) -> Vec<Diagnostic> {
        match parse(text, "t.toml") {
            Ok(_) => panic!("expected errors"),
            Err(ConfigError::Invalid(d)) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn minimal() -> String {
        format!(
            "state_machine_arn = \"{SM}\"\n\n[[backup]]\nname = \"web\"\nresource_arn = \"{EC2}\"\nschedule = \"0 3 * * *\"\n"
        )
    }

    const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
    const DR2: &str = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr";

    #[test]
    fn copy_to_is_layered_rule_over_target_over_defaults() {
        let c = ok(&format!(
            "state_machine_arn = \"{SM}\"\n\
             [defaults]\ncopy_to = [{{ vault_arn = \"{DR}\" }}]\n\
             [[backup]]\nname = \"web\"\nresource_arn = \"{EC2}\"\ndelete_after_days = 7\n\
             [[backup.rule]]\nname = \"daily\"\nschedule = \"0 3 * * *\"\n\
             [[backup.rule]]\nname = \"monthly\"\nschedule = \"0 4 1 * *\"\n\
             copy_to = [{{ vault_arn = \"{DR2}\", delete_after_days = 365 }}, {{ vault_arn = \"{DR}\", delete_after_days = 90 }}]\n\
             [[backup.rule]]\nname = \"hourly\"\nschedule = \"0 * * * *\"\ncopy_to = []\n"
        ));
        let rule = |n: &str| {
            c.targets
                .iter()
                .find(|t| t.rule.as_deref() == Some(n))
                .unwrap()
        };
        let daily = &rule("daily").copy_to;
        assert_eq!(daily.len(), 1);
        assert_eq!(daily[0].vault.as_str(), DR);
        assert_eq!(
            daily[0].delete_after_days, 7,
            "defaults to the backup's retention"
        );
        let monthly = &rule("monthly").copy_to;
        assert_eq!(
            monthly
                .iter()
                .map(|d| (d.vault.region.as_str(), d.delete_after_days))
                .collect::<Vec<_>>(),
            [("eu-west-1", 365), ("us-west-2", 90)]
        );
        assert!(rule("hourly").copy_to.is_empty(), "[] turns copies off");
        assert!(ok(&minimal()).targets[0].copy_to.is_empty());
    }

    #[test]
    fn bad_copy_to_entries_are_reported_where_they_are_written() {
        let text = format!(
            "state_machine_arn = \"{SM}\"\n\n[[backup]]\nname = \"web\"\nresource_arn = \"{EC2}\"\n\
             schedule = \"0 3 * * *\"\ncopy_to = [\n\
             {{ vault_arn = \"arn:aws:s3:::bucket\" }},\n\
             {{ vault_arn = \"arn:aws-cn:backup:cn-north-1:123456789012:backup-vault:dr\" }},\n\
             {{ vault_arn = \"{DR}\", delete_after_days = 0 }},\n\
             {{ vault_arn = \"{DR2}\" }},\n\
             {{ vault_arn = \"{DR2}\" }},\n]\n"
        );
        let d = errors(&text);
        let find = |field: &str| {
            d.iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("{field} in {d:#?}"))
        };
        let arn = find("backup[0].copy_to[0].vault_arn");
        assert_eq!((arn.line, arn.column), (8, 15));
        assert!(
            arn.message.contains("not a backup vault ARN"),
            "{}",
            arn.message
        );
        let partition = find("backup[0].copy_to[1].vault_arn");
        assert_eq!(partition.line, 9);
        assert!(
            partition.message.contains("partition"),
            "{}",
            partition.message
        );
        let days = find("backup[0].copy_to[2].delete_after_days");
        assert_eq!(days.line, 10);
        assert!(days.message.contains("1 to"), "{}", days.message);
        let dup = find("backup[0].copy_to[4].vault_arn");
        assert_eq!(dup.line, 12);
        assert!(dup.message.contains("line 11"), "{}", dup.message);
        let typo = errors(&minimal().replace(
            "schedule =",
            &format!("copy_to = [{{ vault = \"{DR}\" }}]\nschedule ="),
        ));
        assert!(
            typo.iter()
                .any(|x| x.line == 6 && x.message.contains("unknown field `vault`")),
            "{typo:#?}"
        );
    }

    #[test]
    fn a_bad_copy_to_in_defaults_is_named_there_once() {
        let text = format!(
            "state_machine_arn = \"{SM}\"\n[defaults]\ncopy_to = [{{ vault_arn = \"dr\" }}]\n\
             [[backup]]\nname = \"a\"\nresource_arn = \"{EC2}\"\nschedule = \"0 3 * * *\"\n\
             [[backup]]\nname = \"b\"\nresource_arn = \"{}\"\nschedule = \"0 3 * * *\"\n",
            EC2.replace("i-0123456789abcdef0", "i-0123456789abcdef1")
        );
        let d = errors(&text);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].field, "defaults.copy_to[0].vault_arn");
        assert_eq!(d[0].line, 3);
    }

    #[test]
    fn without_ha_there_is_no_lease() {
        assert_eq!(ok(&minimal()).ha, None);
    }

    #[test]
    fn ha_takes_its_keys_and_defaults_the_rest() {
        let c = ok(&format!(
            "{}\n[ha]\nlease_table = \"orchestrator-lease\"\n",
            minimal()
        ));
        let ha = c.ha.expect("ha");
        assert_eq!(ha.table, "orchestrator-lease");
        assert_eq!(ha.duration, Duration::from_secs(30));
        assert_eq!(ha.renew_interval, Duration::from_secs(10));
        assert!(ha.owner_id.ends_with(&format!("-{}", std::process::id())));
        let c = ok(&format!(
            "{}\n[ha]\nlease_table = \"t.1\"\nlease_duration = \"1m\"\nrenew_interval = \"20s\"\nowner_id = \"a\"\n",
            minimal()
        ));
        let ha = c.ha.expect("ha");
        assert_eq!(
            (ha.duration, ha.renew_interval),
            (Duration::from_secs(60), Duration::from_secs(20))
        );
        assert_eq!(ha.owner_id, "a");
    }

    #[test]
    fn bad_ha_names_file_line_column_and_field() {
        let text = format!(
            "{}\n[ha]\nlease_table = \"no spaces\"\nrenew_interval = \"20s\"\nowner_id = \"\"\ncolour = 1\n",
            minimal()
        );
        let d = errors(&text);
        let find = |field: &str| {
            d.iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("{field} in {d:?}"))
        };
        // minimal() has 6 lines, then a blank one: [ha] is line 8.
        assert_eq!(
            (find("ha.lease_table").line, find("ha.lease_table").column),
            (9, 15)
        );
        assert_eq!(find("ha.renew_interval").line, 10);
        assert_eq!(find("ha.owner_id").line, 11);
        assert_eq!(find("ha.colour").line, 12);
        let d = errors(&format!("{}\n[ha]\nlease_duration = \"2s\"\n", minimal()));
        assert!(
            d.iter().any(|x| x.field == "ha.lease_table" && x.line == 8),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x.field == "ha.lease_duration" && x.line == 9),
            "{d:?}"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ok(&minimal());
        assert_eq!(c.targets.len(), 1);
        let t = &c.targets[0];
        assert_eq!(&*t.name, "web");
        assert!(t.enabled);
        assert_eq!(t.catch_up, CatchUp::Latest);
        assert_eq!(t.concurrency, Concurrency::Forbid);
        assert_eq!(t.schedule.timezone(), Tz::UTC);
        assert_eq!(t.start_window_minutes, 60);
        assert_eq!(t.delete_after_days, 35);
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.pacing.start_rate, DEFAULT_START_RATE);
    }

    #[test]
    fn defaults_section_applies_and_targets_override() {
        let text = format!(
            "state_machine_arn = \"{SM}\"\n[defaults]\ncatch_up = \"none\"\njitter = \"5m\"\ndelete_after_days = 7\n\n[[backup]]\nname = \"web\"\nresource_arn = \"{EC2}\"\nschedule = \"0 3 * * *\"\njitter = \"1m\"\n"
        );
        let c = ok(&text);
        let t = &c.targets[0];
        assert_eq!(t.catch_up, CatchUp::None);
        assert_eq!(t.jitter, Duration::from_secs(60));
        assert_eq!(t.delete_after_days, 7);
    }

    #[test]
    fn every_error_is_reported_at_once_with_line_column_and_field() {
        let text = format!(
            r#"state_machine_arn = "{SM}"
poll_intervall = "30s"
timezone = "Mars/Olympus"

[[backup]]
name = "web"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-XYZ"
schedule = "0 3 * * *"
colour = "blue"

[[backup]]
name = "web"
resource_arn = "{EC2}"
schedule = "0 3 * * *"
start_window_minutes = 10
"#
        );
        let d = errors(&text);
        let show: Vec<String> = d.iter().map(ToString::to_string).collect();
        let find = |field: &str| {
            d.iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("no error for {field} in {show:#?}"))
        };
        assert_eq!(find("poll_intervall").line, 2);
        assert_eq!(find("timezone").line, 3);
        let arn = find("backup[0].resource_arn");
        assert_eq!((arn.line, arn.column), (7, 16));
        assert!(arn.message.contains("8 or 17"), "{}", arn.message);
        assert_eq!(find("backup[0].colour").line, 9);
        let dup = find("backup[1].name");
        assert_eq!(dup.line, 12);
        assert!(
            dup.message.contains("used already (line 6)"),
            "{}",
            dup.message
        );
        assert_eq!(find("backup[1].start_window_minutes").line, 15);
        assert!(show.iter().all(|s| s.starts_with("t.toml:")), "{show:#?}");
        assert!(d.len() >= 6, "{show:#?}");
    }

    #[test]
    fn syntax_errors_are_located() {
        let d = errors("state_machine_arn = \"x\nfoo = 1\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 1);
    }

    #[test]
    fn type_errors_name_the_field() {
        let text = minimal().replace(
            "schedule = \"0 3 * * *\"",
            "schedule = \"0 3 * * *\"\nenabled = \"yes\"",
        );
        let d = errors(&text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("bool"), "{:?}", d[0]);
        assert_eq!(d[0].line, 7);
        assert_eq!(d[0].field, "backup[0].enabled", "{:?}", d[0]);
    }

    #[test]
    fn missing_pieces_are_named() {
        let d = errors("[[backup]]\nname = \"a\"\n");
        let fields: Vec<&str> = d.iter().map(|x| x.field.as_str()).collect();
        for f in [
            "backup[0].resource_arn",
            "backup[0].schedule",
            "backup[0].state_machine_arn",
        ] {
            assert!(fields.contains(&f), "{fields:?}");
        }
        let d = errors(&format!("state_machine_arn = \"{SM}\"\n"));
        assert_eq!(d[0].field, "backup");
    }

    #[test]
    fn region_and_account_must_match_the_machine() {
        let text = minimal().replace("ec2:us-east-1", "ec2:eu-west-1");
        let d = errors(&text);
        assert!(d[0].message.contains("own region"), "{d:?}");
        let text = minimal().replace("ec2:us-east-1:123456789012", "ec2:us-east-1:210987654321");
        let d = errors(&text);
        assert!(d[0].message.contains("same account"), "{d:?}");
    }

    #[test]
    fn a_target_may_use_its_own_machine_in_another_region() {
        let text = minimal()
            .replace("ec2:us-east-1", "ec2:eu-west-1")
            .replace(
                "schedule = ",
                "state_machine_arn = \"arn:aws:states:eu-west-1:123456789012:stateMachine:b\"\nschedule = ",
            );
        let c = ok(&text);
        assert_eq!(c.targets[0].state_machine.region, "eu-west-1");
        assert_eq!(c.state_machines().len(), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn large_files_are_parsed_in_pieces_with_exact_locations() {
        let mut text = format!("state_machine_arn = \"{SM}\"\n");
        for i in 0..1200 {
            let arn = if i == 1100 {
                "arn:aws:ec2:us-east-1:123456789012:instance/i-bad".to_string()
            } else {
                format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}")
            };
            // A multi-line string whose lines look like headers must not split the file there.
            let extra = if i == 600 {
                "pre_command = \"\"\"\n[[backup]]\n[[backup]]\n\"\"\"\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "[[backup]]\nname = \"t{i}\"\nresource_arn = \"{arn}\"\nschedule = \"0 3 * * *\"\n{extra}"
            ));
        }
        text.push_str("[defaults]\njitter = \"forever\"\n");
        let d = errors(&text);
        let show: Vec<String> = d.iter().map(ToString::to_string).collect();
        let arn = d
            .iter()
            .find(|x| x.field == "backup[1100].resource_arn")
            .expect("located");
        let expected_line = text[..text.find("i-bad").unwrap()].matches('\n').count() + 1;
        assert_eq!((arn.line, arn.column), (expected_line, 16), "{show:#?}");
        let jitter: Vec<&Diagnostic> = d.iter().filter(|x| x.field.ends_with("jitter")).collect();
        assert_eq!(jitter.len(), 1, "a bad default is reported once: {show:#?}");
        assert_eq!(jitter[0].field, "defaults.jitter");
        assert_eq!(jitter[0].line, text.matches('\n').count(), "{show:#?}");
        assert_eq!(chunks(&text).0.len(), 3);

        let ok_text = text
            .replace("i-bad", "i-0000bad0")
            .replace("jitter = \"forever\"", "jitter = \"1m\"");
        let c = ok(&ok_text);
        assert_eq!(c.targets.len(), 1200);
        assert_eq!(
            c.targets[600].pre_command.as_deref(),
            Some("[[backup]]\n[[backup]]\n")
        );
        assert_eq!(c.targets[1199].jitter, Duration::from_secs(60));
    }

    #[test]
    fn headers_are_found_alike_with_and_without_multi_line_strings() {
        // Indented headers, comments, a target's own tables, an array whose lines start with `[`,
        // `[` inside values, and a [defaults] after the targets.
        let mut text = String::from("# [[backup]] in a comment\n");
        for i in 0..1300 {
            let extra = match i % 5 {
                0 => "  [[backup.rule]]\n  name = \"r\"\n",
                1 => "select_tags = [\n  [\"a\"],\n]\n",
                2 => "pre_command = \"echo [[backup]]\" # [x]\n",
                _ => "",
            };
            let indent = if i % 2 == 0 { "\t " } else { "" };
            text.push_str(&format!("{indent}[[backup]]\nname = \"t{i}\"\n{extra}"));
            if i == 900 {
                text.push_str("[defaults]\njitter = \"1m\"\n");
            }
        }
        let (fast, settled, headers) = chunks(&text);
        // The same text with a multi-line string at its end is scanned line by line.
        let with = format!("{text}z = '''\n[[backup]]\n'''\n");
        let (slow, slow_settled, slow_headers) = chunks(&with);
        let starts = |p: &[(usize, &str)]| p.iter().map(|(at, _)| *at).collect::<Vec<_>>();
        assert_eq!(starts(&fast), starts(&slow));
        assert_eq!((settled, headers), (slow_settled, slow_headers));
        assert_eq!(headers, 1300);
        assert_eq!(fast.len(), 3);
        // An array's line that starts with `[` counts as another table: validation waits longer.
        assert_eq!(settled, text.rfind("  [\"a\"],").unwrap());
        assert!(
            fast[1].1.starts_with("\t [[backup]]\nname = \"t500\""),
            "{}",
            &fast[1].1[..40]
        );
        assert!(
            fast[2].1.starts_with("\t [[backup]]\nname = \"t1000\""),
            "{}",
            &fast[2].1[..40]
        );
    }

    #[test]
    fn later_pieces_are_read_beside_the_validation_with_exact_locations() {
        // [defaults] first: the first piece settles them, the later ones are read on the second
        // thread while the first targets are validated.
        let mut text = format!("state_machine_arn = \"{SM}\"\n[defaults]\njitter = \"1m\"\n");
        for i in 0..1200 {
            let arn = if i == 1100 {
                "arn:aws:ec2:us-east-1:123456789012:instance/i-bad".to_string()
            } else {
                format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}")
            };
            let extra = if i == 700 { "colour = \"red\"\n" } else { "" };
            text.push_str(&format!(
                "[[backup]]\nname = \"t{i}\"\nresource_arn = \"{arn}\"\nschedule = \"0 3 * * *\"\n{extra}"
            ));
        }
        let (pieces, settled_at, headers) = chunks(&text);
        assert_eq!((pieces.len(), headers), (3, 1200));
        assert!(settled_at < pieces[1].0, "settled in the first piece");
        let d = errors(&text);
        let show: Vec<String> = d.iter().map(ToString::to_string).collect();
        let line_of = |needle: &str| text[..text.find(needle).unwrap()].matches('\n').count() + 1;
        let colour = d
            .iter()
            .find(|x| x.field == "backup[700].colour")
            .expect("located");
        assert_eq!(colour.line, line_of("colour"), "{show:#?}");
        let arn = d
            .iter()
            .find(|x| x.field == "backup[1100].resource_arn")
            .expect("located");
        assert_eq!((arn.line, arn.column), (line_of("i-bad"), 16), "{show:#?}");
        assert_eq!(d.len(), 2, "{show:#?}");

        let c = ok(&text
            .replace("i-bad", "i-0000bad0")
            .replace("colour = \"red\"\n", ""));
        assert_eq!(c.targets.len(), 1200);
        assert_eq!(&*c.targets[1199].name, "t1199");
        assert_eq!(c.targets[1199].jitter, Duration::from_secs(60));
        // 1,200 targets set alike share one Settings.
        assert!(Arc::ptr_eq(
            &c.targets[0].settings,
            &c.targets[1199].settings
        ));
    }

    const PLAN: &str = "[[plan]]\nname = \"gfs\"\n[[plan.rule]]\nname = \"daily\"\nschedule = \"0 3 * * *\"\n[[plan.rule]]\nname = \"monthly\"\nschedule = \"0 3 1 * *\"\ndelete_after_days = 365\n";

    /// A fleet of `n` targets after `[defaults]` and a plan: most on the plan, every seventh on
    /// its own schedule, every eleventh with inline rules; `edit` rewrites target `i`'s text.
    fn fleet(n: usize, edit: impl Fn(usize, String) -> String) -> String {
        let mut text = format!("state_machine_arn = \"{SM}\"\n[defaults]\njitter = \"1m\"\n{PLAN}");
        for i in 0..n {
            let arn = format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}");
            let rules = match i % 11 {
                0 => "[[backup.rule]]\nname = \"hourly\"\nschedule = \"0 * * * *\"\ndelete_after_days = 2\n".to_string(),
                _ if i % 7 == 0 => "schedule = \"30 2 * * *\"\n".to_string(),
                _ => "plan = \"gfs\"\n".to_string(),
            };
            let target =
                format!("[[backup]]\nname = \"t{i:04}\"\nresource_arn = \"{arn}\"\n{rules}");
            text.push_str(&edit(i, target));
        }
        text
    }

    fn both_ways(text: &str) -> [(Result<Config, ConfigError>, Read); 2] {
        [
            parse_with(text, "t.toml", Read::InHalves),
            parse_with(text, "t.toml", Read::InOrder),
        ]
    }

    fn diagnostics(r: Result<Config, ConfigError>) -> Vec<Diagnostic> {
        match r {
            Err(ConfigError::Invalid(d)) => d,
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn a_large_file_read_in_halves_gives_what_reading_in_order_gives() {
        // 2,300 targets in five pieces: the first settles [defaults] and the plan, the other four
        // are shared out two and two (this thread's half starts with the first piece's targets).
        let text = fleet(2300, |_, t| t);
        let [(halves, how), (in_order, _)] = both_ways(&text);
        assert_eq!(how, Read::InHalves);
        let (halves, in_order) = (halves.unwrap(), in_order.unwrap());
        assert_eq!(halves.targets, in_order.targets);
        assert_eq!(halves.instances, in_order.instances);
        assert!(halves.instances.len() > 1000);
        // Settings alike are shared across the halves as in one run.
        let distinct = |c: &Config| {
            let ptrs: std::collections::HashSet<*const Settings> =
                c.targets.iter().map(|t| Arc::as_ptr(&t.settings)).collect();
            ptrs.len()
        };
        assert_eq!(distinct(&halves), distinct(&in_order));
        assert_eq!(distinct(&halves), 4, "daily, monthly, own schedule, hourly");

        // Mistakes in both halves: the same messages, in the same order.
        let bad = fleet(2300, |i, t| match i {
            100 | 2250 => t.replace("i-0000", "i-x"),
            1600 => format!("{t}colour = \"red\"\n"),
            1900 => format!("{t}jitter = \"forever\"\n"),
            2201 => t.replace("t2201", "t2200"),
            2211 => t.replace(
                "name = \"hourly\"",
                "name = \"h\"\n[[backup.rule]]\nname = \"h\"",
            ),
            _ => t,
        });
        let [(halves, how), (in_order, _)] = both_ways(&bad);
        assert_eq!(how, Read::InHalves);
        let halves = diagnostics(halves);
        assert_eq!(halves, diagnostics(in_order));
        let fields: Vec<&str> = halves.iter().map(|d| d.field.as_str()).collect();
        for field in [
            "backup[100].resource_arn",
            "backup[1600].colour",
            "backup[1900].jitter",
            "backup[2201].name",
            "backup[2250].resource_arn",
        ] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
        assert!(
            fields.iter().any(|f| f.starts_with("backup[2211].rule")),
            "{fields:?}"
        );
    }

    #[test]
    fn a_name_or_prefix_taken_in_both_halves_is_reported_as_reading_in_order_does() {
        let line_of =
            |text: &str, needle: &str| text[..text.find(needle).unwrap()].matches('\n').count() + 1;
        // A name of the first half written again in the second.
        let text = fleet(2300, |i, t| {
            if i == 2200 {
                t.replace("t2200", "t0003")
            } else {
                t
            }
        });
        let [(halves, how), (in_order, _)] = both_ways(&text);
        assert_eq!(how, Read::InOrder, "read again in order");
        let d = diagnostics(halves);
        assert_eq!(d, diagnostics(in_order));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].field, "backup[2200].name");
        let first = line_of(&text, "\"t0003\"");
        assert!(
            d[0].message
                .contains(&format!("`t0003` is used already (line {first})")),
            "{}",
            d[0].message
        );

        // A rule's execution name in the first half, a target's own name in the second.
        // (Target 2205 has its own schedule: its prefix is its name.)
        let text = fleet(2300, |i, t| {
            if i == 2205 {
                t.replace("t2205", "t0003-daily")
            } else {
                t
            }
        });
        let [(halves, how), (in_order, _)] = both_ways(&text);
        assert_eq!(how, Read::InOrder);
        let d = diagnostics(halves);
        assert_eq!(d, diagnostics(in_order));
        assert_eq!(
            (d.len(), d[0].field.as_str()),
            (1, "backup[2205].name"),
            "{d:#?}"
        );
        assert!(
            d[0].message
                .contains("give the same execution name prefix `t0003-daily`")
        );
    }

    #[test]
    fn plans_and_inline_rules_make_one_target_per_rule() {
        let text = format!(
            "state_machine_arn = \"{SM}\"\n[defaults]\njitter = \"1m\"\n{PLAN}\n[[backup]]\nname = \"db\"\nresource_arn = \"{EC2}\"\nplan = \"gfs\"\ndelete_after_days = 7\n\n[[backup]]\nname = \"web\"\nresource_arn = \"{}\"\n[[backup.rule]]\nname = \"hourly\"\nschedule = \"0 * * * *\"\ntimezone = \"Europe/Berlin\"\n",
            EC2.replace("0123456789abcdef0", "12345678")
        );
        let c = ok(&text);
        let got: Vec<(String, u32, Duration)> = c
            .targets
            .iter()
            .map(|t| (t.slot_key(), t.delete_after_days, t.jitter))
            .collect();
        let m = Duration::from_secs(60);
        assert_eq!(
            got,
            vec![
                ("db-daily".into(), 7, m),
                ("db-monthly".into(), 365, m),
                ("web-hourly".into(), 35, m)
            ]
        );
        assert_eq!(c.targets[2].schedule.timezone(), chrono_tz::Europe::Berlin);
        assert_eq!(c.instances.len(), 1, "db has two rules, web one");
    }

    #[test]
    fn rules_whose_execution_names_would_collide_are_refused() {
        // `a-b` (its own schedule) and rule `b` of `a` both fire as `a-b-…`.
        let text = format!(
            r#"state_machine_arn = "{SM}"
[[backup]]
name = "a-b"
resource_arn = "{EC2}"
schedule = "0 3 * * *"

[[backup]]
name = "a"
resource_arn = "{EC2}"
[[backup.rule]]
name = "b"
schedule = "0 4 * * *"
"#
        );
        let d = errors(&text);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!((d[0].line, d[0].field.as_str()), (8, "backup[1].name"));
        assert!(
            d[0].message
                .contains("`a-b` and `a-b` give the same execution name prefix `a-b`"),
            "{}",
            d[0].message
        );
        // A name too long for an execution name gets a hashed prefix, distinct from its neighbours.
        let long = "x".repeat(70);
        let text = format!(
            "state_machine_arn = \"{SM}\"\n[[backup]]\nname = \"{long}1\"\nresource_arn = \"{EC2}\"\nschedule = \"0 3 * * *\"\n[[backup]]\nname = \"{long}2\"\nresource_arn = \"{EC2}\"\nschedule = \"0 3 * * *\"\n"
        );
        assert_eq!(ok(&text).targets.len(), 2);
    }

    #[test]
    fn rule_errors_are_located() {
        let text = format!(
            r#"state_machine_arn = "{SM}"
[[plan]]
name = "gfs"
[[plan.rule]]
name = "daily"
schedule = "0 3 * * *"
colour = "red"
[[plan.rule]]
name = "daily"
schedule = "0 4 * * *"
start_window_minutes = 5
jitter = "soon"

[[backup]]
name = "db"
resource_arn = "{EC2}"
plan = "gfz"

[[backup]]
name = "db2"
resource_arn = "{EC2}"
schedule = "0 3 * * *"
plan = "gfs"

[[backup]]
name = "db3"
resource_arn = "{EC2}"
[[backup.rule]]
schedule = "0 3 * * *"
delete_after_days = 0
[[backup.rule]]
name = "bad name"
schedule = "0 3 * * *"
"#
        );
        let d = errors(&text);
        let show: Vec<String> = d.iter().map(ToString::to_string).collect();
        let find = |field: &str, line: usize| {
            let x = d
                .iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("no error for {field} in {show:#?}"));
            assert_eq!(x.line, line, "{x}");
            x.message.clone()
        };
        assert!(find("plan[0].rule[0].colour", 7).contains("unknown key"));
        assert!(
            find("plan[0].rule[1].name", 9)
                .contains("two rules named `daily` (the first on line 5)")
        );
        assert!(find("plan[0].rule[1].start_window_minutes", 11).contains("at least 60"));
        find("plan[0].rule[1].jitter", 12);
        assert!(find("backup[0].plan", 17).contains("no [[plan]] named `gfz` (plans: gfs)"));
        assert!(find("backup[1].schedule", 22).contains("not both"));
        find("backup[2].rule[0].name", 28);
        assert!(find("backup[2].rule[0].delete_after_days", 30).contains("at least 1"));
        assert!(find("backup[2].rule[1].name", 32).contains("A-Z"));
        let col = d
            .iter()
            .find(|x| x.field == "backup[0].plan")
            .unwrap()
            .column;
        assert_eq!(col, 8, "{show:#?}");
        assert_eq!(d.len(), 9, "each once: {show:#?}");
    }

    #[test]
    fn hook_documents_and_their_settings() {
        let text = format!(
            "state_machine_arn = \"{SM}\"\n[defaults]\nhook_max_downtime = \"20m\"\nwindows_vss = true\n\n[[backup]]\nname = \"db\"\nresource_arn = \"{EC2}\"\nschedule = \"0 3 * * *\"\npre_document = {{ name = \"orchestrator-systemd-unit\", version = \"2\", parameters = {{ action = \"stop\", unit = \"postgresql\" }} }}\npost_document = {{ name = \"orchestrator-systemd-unit\", parameters = {{ action = \"start\", unit = \"postgresql\" }} }}\npost_command_when = \"completed\"\non_pre_command_failure = \"skip\"\n"
        );
        let c = ok(&text);
        let t = &c.targets[0];
        let pre = t.pre_document.as_ref().unwrap();
        assert_eq!(
            (pre.name.as_str(), pre.version.as_deref()),
            ("orchestrator-systemd-unit", Some("2"))
        );
        assert_eq!(pre.parameters["unit"], "postgresql");
        assert_eq!(
            t.post_document.as_ref().unwrap().parameters["action"],
            "start"
        );
        assert_eq!(
            t.post_hook_when,
            PostHookWhen::Completed,
            "the alias post_command_when"
        );
        assert_eq!(
            t.on_pre_hook_failure,
            OnPreHookFailure::Skip,
            "the alias on_pre_command_failure"
        );
        assert_eq!(t.hook_max_downtime, Duration::from_secs(1200));
        assert!(t.windows_vss && t.has_hooks() && t.has_post_hook());

        let plain = ok(&minimal());
        let t = &plain.targets[0];
        assert_eq!(
            (
                t.post_hook_when,
                t.on_pre_hook_failure,
                t.hook_max_downtime,
                t.windows_vss
            ),
            (
                PostHookWhen::Started,
                OnPreHookFailure::Backup,
                hooks::DEFAULT_MAX_DOWNTIME,
                false
            )
        );
        assert!(!t.has_hooks());
    }

    #[test]
    fn bad_hook_settings_are_located() {
        let text = minimal().replace(
            "schedule = \"0 3 * * *\"",
            "schedule = \"0 3 * * *\"\npre_document = { name = \"arn:aws:ssm:x\", parameters = { unit = \"a\" } }\npre_command = \"true\"\nhook_max_downtime = \"5h\"\npost_hook_when = \"later\"",
        );
        let d = errors(&text);
        let show: Vec<String> = d.iter().map(ToString::to_string).collect();
        let find = |field: &str| {
            d.iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("no error for {field} in {show:#?}"))
        };
        // A type error in one table stops that target's other checks: fix it first.
        assert!(
            find("backup[0].post_hook_when").message.contains("started"),
            "{show:#?}"
        );
        let text = minimal().replace(
            "schedule = \"0 3 * * *\"",
            "schedule = \"0 3 * * *\"\npre_document = { name = \"arn:aws:ssm:x\", parameters = { unit = \"a\" } }\npre_command = \"true\"\nhook_max_downtime = \"5h\"",
        );
        let d = errors(&text);
        let show: Vec<String> = d.iter().map(ToString::to_string).collect();
        let find = |field: &str| {
            d.iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("no error for {field} in {show:#?}"))
        };
        assert_eq!(find("backup[0].pre_document.name").line, 7);
        assert_eq!(find("backup[0].pre_command").line, 8);
        assert!(
            find("backup[0].hook_max_downtime").message.contains("4h"),
            "{show:#?}"
        );
        let d = errors(&minimal().replace(
            "schedule = \"0 3 * * *\"",
            "schedule = \"0 3 * * *\"\npost_document = { name = \"ok-doc\", colour = \"x\" }",
        ));
        assert_eq!(d[0].field, "backup[0].post_document", "{d:?}");
        assert!(d[0].message.contains("colour"), "{d:?}");
        assert_eq!(d[0].line, 7);
    }

    #[test]
    fn a_selection_takes_its_keys_and_its_machine_region_and_account() {
        let c = ok(&format!(
            "state_machine_arn = \"{SM}\"\nselection_refresh = \"1s\"\n[[backup]]\nname = \"web\"\nselect_tags = {{ backup = \"daily\", env = \"prod\" }}\nexclude_tags = {{ skip = \"true\" }}\nplan = \"gfs\"\n[[plan]]\nname = \"gfs\"\n[[plan.rule]]\nname = \"d\"\nschedule = \"0 3 * * *\"\n"
        ));
        assert!(
            c.targets.is_empty(),
            "a selection is no target until resolved"
        );
        assert_eq!(c.selection_refresh, Duration::from_secs(1));
        let s = &c.selections[0];
        assert_eq!(
            (s.region.as_str(), s.account.as_str()),
            ("us-east-1", "123456789012")
        );
        assert_eq!(s.select.len(), 2);
        assert_eq!(s.exclude["skip"], "true");
        assert_eq!(s.templates.len(), 1);
        assert_eq!(s.templates[0].rule.as_deref(), Some("d"));
        assert_eq!(c.state_machines().len(), 1);
        assert_eq!(
            ok(&minimal()).selection_refresh,
            DEFAULT_SELECTION_REFRESH,
            "5m by default"
        );
    }

    #[test]
    fn bad_selections_are_located() {
        let many: Vec<String> = (0..51).map(|i| format!("k{i} = \"v\"")).collect();
        let text = format!(
            r#"state_machine_arn = "{SM}"
selection_refresh = "500ms"

[[backup]]
name = "both"
resource_arn = "{EC2}"
select_tags = {{ a = "b" }}
schedule = "0 3 * * *"

[[backup]]
name = "empty"
select_tags = {{}}
schedule = "0 3 * * *"

[[backup]]
name = "many"
select_tags = {{ {} }}
schedule = "0 3 * * *"

[[backup]]
name = "badvalue"
select_tags = {{ a = 1 }}
schedule = "0 3 * * *"

[[backup]]
name = "badkey"
select_tags = {{ "a#b" = "c" }}
schedule = "0 3 * * *"

[[backup]]
name = "stray"
resource_arn = "{EC2}"
exclude_tags = {{ a = "b" }}
schedule = "0 3 * * *"

[[backup]]
name = "web"
select_tags = {{ a = "b" }}
schedule = "0 3 * * *"

[[backup]]
name = "web-i-0123"
resource_arn = "{EC2}"
schedule = "0 3 * * *"
"#,
            many.join(", ")
        );
        let d = errors(&text);
        let at = |field: &str| {
            d.iter()
                .find(|x| x.field == field)
                .unwrap_or_else(|| panic!("no error for {field}: {d:#?}"))
        };
        assert_eq!(at("selection_refresh").line, 2);
        let both = at("backup[0].resource_arn");
        assert_eq!((both.line, both.column), (6, 16));
        assert!(both.message.contains("not both"));
        assert_eq!(at("backup[1].select_tags").line, 12);
        assert!(at("backup[1].select_tags").message.contains("empty"));
        assert!(at("backup[2].select_tags").message.contains("at most 50"));
        assert_eq!(at("backup[3].select_tags").line, 22);
        assert!(
            at("backup[3].select_tags").message.contains("string"),
            "{d:#?}"
        );
        assert!(at("backup[4].select_tags.a#b").message.contains("tag key"));
        assert_eq!(at("backup[5].exclude_tags").line, 33);
        let clash = at("backup.name");
        assert_eq!(clash.line, 42);
        assert!(clash.message.contains("selection `web`"));

        // Without a machine there is no region or account to search.
        let d = errors(
            "[[backup]]\nname = \"web\"\nselect_tags = { a = \"b\" }\nschedule = \"0 3 * * *\"\n",
        );
        let e = d
            .iter()
            .find(|x| x.field == "backup[0].select_tags")
            .unwrap();
        assert_eq!((e.line, e.column), (3, 15));
        assert!(e.message.contains("region and account"));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }
}

#[cfg(test)]
mod fuzz {
    //! No input makes the parser panic: arbitrary text, and mutations of a valid file.
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = include_str!("../config/backups.example.toml");

    /// A file of 1,100 targets in three pieces (the first settles `[defaults]` and the plan; the
    /// other two are read in halves), mixing the plan, own schedules, inline rules and a
    /// selection.
    fn fleet() -> &'static str {
        static FLEET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        FLEET.get_or_init(|| {
            let mut text = String::from(
                "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n[defaults]\njitter = \"1m\"\n[[plan]]\nname = \"gfs\"\n[[plan.rule]]\nname = \"daily\"\nschedule = \"0 3 * * *\"\n[[plan.rule]]\nname = \"monthly\"\nschedule = \"0 3 1 * *\"\ndelete_after_days = 365\n",
            );
            for i in 0..1100 {
                let what = match i % 13 {
                    0 => "[[backup.rule]]\nname = \"hourly\"\nschedule = \"0 * * * *\"\n",
                    5 => "schedule = \"30 2 * * *\"\n",
                    _ => "plan = \"gfs\"\n",
                };
                let key = if i == 1000 {
                    "select_tags = { env = \"prod\" }".to_string()
                } else {
                    format!("resource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}\"")
                };
                text.push_str(&format!("[[backup]]\nname = \"t{i:04}\"\n{key}\n{what}"));
            }
            text
        })
    }

    /// Both ways of reading agree: the same targets, or the same messages in the same order.
    fn agree(a: &Result<Config, ConfigError>, b: &Result<Config, ConfigError>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                a.targets == b.targets && a.instances == b.instances && a.selections == b.selections
            }
            (Err(ConfigError::Invalid(a)), Err(ConfigError::Invalid(b))) => a == b,
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = parse(&text, "fuzz.toml");
        }

        #[test]
        fn tomlish_text_never_panics(text in "[\\[\\]=\"a-z_0-9 .:/*?#LW,()\\-\n]{0,300}") {
            let _ = parse(&text, "fuzz.toml");
        }

        #[test]
        fn schedule_expressions_never_panic(expr in "(cron\\()?[0-9*?/,LW#A-Z\\- ]{0,40}\\)?") {
            if let Ok(s) = Schedule::parse(&expr, chrono_tz::Tz::Europe__Berlin) {
                let _ = s.next_after(chrono::Utc::now());
            }
        }

        #[test]
        fn mutated_valid_config_never_panics(
            cut in 0usize..VALID.len(),
            len in 0usize..40,
            insert in "[\\PC\n]{0,20}",
        ) {
            let mut text = VALID.to_string();
            let start = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let end = (start + len..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            text.replace_range(start..end, &insert);
            if let Err(ConfigError::Invalid(diags)) = parse(&text, "fuzz.toml") {
                prop_assert!(!diags.is_empty());
                for d in diags {
                    prop_assert!(d.line >= 1 || d.field == "backup", "{d}");
                }
            }
        }
    }

    proptest! {
        // Each case parses a 1,100-target file twice.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Reading a large file in halves gives what reading it in order gives, whatever is
        /// cut from it or written into it, wherever (names taken twice, headers, strings, …).
        #[test]
        fn halves_and_reading_in_order_agree_on_edited_fleets(
            edits in proptest::collection::vec((0.0f64..1.0, 0usize..30, prop_oneof![
                Just("\n[[backup]]\n".to_string()),
                Just("\nname = \"t0002\"\n".to_string()),
                Just("\nname = \"t0001-daily\"\nschedule = \"0 1 * * *\"\n".to_string()),
                Just("\n[defaults]\n".to_string()),
                Just("\ncolour = 1\n".to_string()),
                Just("\"\"\"".to_string()),
                Just("\njitter = \"2h\"\n".to_string()),
                "[\\[\\]=\"a-z0-9 .#\n]{0,12}",
            ]), 0..4),
            renames in proptest::collection::vec((0usize..1100, 0usize..1100, any::<bool>()), 0..3),
        ) {
            let mut text = fleet().to_string();
            // Target i takes target j's name, or the execution-name prefix of j's daily rule.
            for (i, j, rule) in renames {
                let to = if rule { format!("t{j:04}-daily") } else { format!("t{j:04}") };
                text = text.replace(&format!("name = \"t{i:04}\""), &format!("name = \"{to}\""));
            }
            for (at, len, insert) in edits {
                let start = ((text.len() as f64 * at) as usize).min(text.len());
                let start = (0..=start).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                let end = (start + len..=text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                text.replace_range(start..end, &insert);
            }
            let (halves, _) = parse_with(&text, "fuzz.toml", Read::InHalves);
            let (in_order, _) = parse_with(&text, "fuzz.toml", Read::InOrder);
            prop_assert!(agree(&halves, &in_order), "{halves:?}\n---\n{in_order:?}");
        }
    }
}
