//! Pure: what the default stack (`deploy/cloudformation/orchestrator.yaml`, its parameters at
//! their defaults) refuses that a valid config may still ask for, and the stack parameter that
//! allows it. `check` prints these and the daemon logs them once at start: otherwise the first
//! slot of such a target is the first to say so, with a refused execution (`InputRefused`).

use crate::model::{Config, Rule};

/// The stack's `MinRetentionDays` default: retentions below it are refused.
pub const DEFAULT_MIN_RETENTION_DAYS: u32 = 7;
/// The stack's `MaxRetentionDays` default: retentions above it are refused.
pub const DEFAULT_MAX_RETENTION_DAYS: u32 = 36_500;
/// The stack's `HookDocumentVersion` default: the only document version it sends.
pub const DEFAULT_DOCUMENT_VERSION: &str = "$DEFAULT";

/// One thing the default stack refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The target.
    pub target: String,
    /// The config key.
    pub field: &'static str,
    /// What to change: the stack parameter, or the config.
    pub message: String,
}

/// Every refusal of `config`'s rules (once per target and key).
pub fn refusals(config: &Config) -> Vec<Refusal> {
    let mut out: Vec<Refusal> = Vec::new();
    for r in config
        .rules
        .iter()
        .chain(config.selections.iter().flat_map(|s| s.templates.iter()))
    {
        for refusal in refusals_of(r) {
            if !out.contains(&refusal) {
                out.push(refusal);
            }
        }
    }
    out
}

/// The refusals by config key: how many targets, the first `names` of them, and the first
/// message (a log line per key, not per target: 100,000 targets may share one).
pub fn by_field(refusals: &[Refusal], names: usize) -> Vec<(&'static str, usize, Vec<&str>, &str)> {
    let mut out: Vec<(&'static str, usize, Vec<&str>, &str)> = Vec::new();
    for r in refusals {
        match out.iter_mut().find(|(f, ..)| *f == r.field) {
            Some((_, n, list, _)) => {
                *n += 1;
                if list.len() < names {
                    list.push(&r.target);
                }
            }
            None => out.push((r.field, 1, vec![&r.target], &r.message)),
        }
    }
    out
}

fn refusals_of(r: &Rule) -> Vec<Refusal> {
    let s = r.settings();
    let mut out = Vec::new();
    let mut push = |field: &'static str, message: String| {
        out.push(Refusal {
            target: r.name.to_string(),
            field,
            message,
        })
    };
    for (field, set) in [
        ("pre_command", s.pre_command.is_some()),
        ("post_command", s.post_command.is_some()),
    ] {
        if set {
            push(
                field,
                "a raw shell command: the stack refuses it unless deployed with \
                 AllowRawCommands=true (anyone allowed to start executions could then run any \
                 command as root); prefer pre_document/post_document"
                    .into(),
            );
        }
    }
    for (field, doc) in [
        ("pre_document", &s.pre_document),
        ("post_document", &s.post_document),
    ] {
        let version = doc
            .as_ref()
            .map(|d| d.version.as_deref().unwrap_or(DEFAULT_DOCUMENT_VERSION));
        if let Some(v) = version.filter(|v| *v != DEFAULT_DOCUMENT_VERSION) {
            push(
                field,
                format!(
                    "version `{v}`: the stack sends only its HookDocumentVersion \
                     ({DEFAULT_DOCUMENT_VERSION} by default); deploy it with HookDocumentVersion={v}"
                ),
            );
        }
    }
    let days = std::iter::once(("delete_after_days", s.delete_after_days))
        .chain(s.copy_to.iter().map(|d| ("copy_to", d.delete_after_days)));
    for (field, d) in days {
        if !(DEFAULT_MIN_RETENTION_DAYS..=DEFAULT_MAX_RETENTION_DAYS).contains(&d) {
            push(
                field,
                format!(
                    "{d} days: the stack keeps recovery points {DEFAULT_MIN_RETENTION_DAYS} to \
                     {DEFAULT_MAX_RETENTION_DAYS} days by default (MinRetentionDays, \
                     MaxRetentionDays; the vault lock's minimum too)"
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        crate::config::parse(
            &format!(
                "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n\
                 [[backup]]\nname = \"web\"\n\
                 resource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0\"\n\
                 schedule = \"0 3 * * *\"\n{extra}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn a_plain_target_asks_for_nothing_the_stack_refuses() {
        assert_eq!(refusals(&config("")), vec![]);
    }

    #[test]
    fn raw_commands_pinned_versions_and_short_retention_are_named() {
        let c = config(
            "delete_after_days = 3\npre_command = \"sync\"\n\
             post_document = { name = \"orchestrator-x\", version = \"4\" }\n",
        );
        let fields: Vec<&str> = refusals(&c).iter().map(|r| r.field).collect();
        assert_eq!(
            fields,
            ["pre_command", "post_document", "delete_after_days"]
        );
        assert!(refusals(&c)[0].message.contains("AllowRawCommands"));
        assert!(refusals(&c)[1].message.contains("HookDocumentVersion=4"));
    }
}
