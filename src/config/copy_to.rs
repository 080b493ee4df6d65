//! `copy_to`: the destinations a rule's backups are copied to.

use std::collections::HashMap;
use std::ops::Range;

use super::diagnostics::{Report, line_col};
use super::raw::RawCopies;

/// The longest retention a copy may ask for (100 years; AWS Backup takes a long).
pub(super) const MAX_COPY_DELETE_AFTER_DAYS: i64 = 36_500;

/// Checks a `copy_to` list: each entry a backup vault ARN in the machine's `partition`, a
/// retention of 1 day or more (default: the backup's `delete_after_days`), no destination twice.
pub(super) fn copy_destinations(
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
