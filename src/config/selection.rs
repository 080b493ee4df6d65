//! `select_tags` / `exclude_tags`: a `[[backup]]` that stands for the instances its tags match.

use std::collections::BTreeMap;

use toml::Spanned;

use super::diagnostics::Report;
use super::raw::RawTarget;
use super::values::tag_ok;
use crate::arn::StateMachineArn;

/// Tags as a selection names them: key = value.
pub(super) type Tags = BTreeMap<String, String>;

/// Checks `select_tags` and `exclude_tags` of a target; for a selection, gives the target a
/// placeholder `resource_arn` in its state machine's region and account (its rules are then
/// validated as any target's) and returns (usable, select, exclude). None: not a selection.
pub(super) fn selection_spec(
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
