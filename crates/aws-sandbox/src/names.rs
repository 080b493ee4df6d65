//! Step Functions' rules for names and ARNs: which execution names StartExecution accepts,
//! the shapes of state machine and execution ARNs, and the opaque page tokens the sandbox
//! hands out. Pure.

/// Step Functions' limit on an execution name, in characters.
const MAX_NAME_CHARS: usize = 80;
/// Characters Step Functions refuses in a name, besides whitespace and control characters.
const FORBIDDEN_NAME_CHARS: &str = "<>{}[]?*\"#%\\^|~`$&,;:/";

/// Step Functions' rule for execution names (aws-facts.md, StartExecution).
pub(crate) fn is_valid_execution_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&chars)
        && !name.chars().any(|c| {
            c.is_whitespace()
                || FORBIDDEN_NAME_CHARS.contains(c)
                || ('\u{0}'..='\u{1f}').contains(&c)
                || ('\u{7f}'..='\u{9f}').contains(&c)
        })
}

/// `arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`.
pub(crate) fn is_state_machine_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "states"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5] == "stateMachine"
        && !parts[6].is_empty()
}

/// The execution ARN of `name` on a state machine.
pub(crate) fn execution_arn(machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// An execution ARN → (state machine ARN, name).
pub(crate) fn parse_execution_arn(arn: &str) -> Option<(String, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    let well_formed = parts.len() == 8
        && parts[0] == "arn"
        && parts[2] == "states"
        && parts[5] == "execution"
        && !parts[6].is_empty()
        && !parts[7].is_empty();
    if !well_formed {
        return None;
    }
    let machine = format!(
        "arn:{}:states:{}:{}:stateMachine:{}",
        parts[1], parts[3], parts[4], parts[6]
    );
    Some((machine, parts[7]))
}

/// Takes up to `max` items; the item after them, if any, is where the next page starts.
pub(crate) fn take_page<T>(mut items: impl Iterator<Item = T>, max: usize) -> (Vec<T>, Option<T>) {
    let page: Vec<T> = items.by_ref().take(max).collect();
    (page, items.next())
}

/// The number in a page token `{prefix}{n}` the sandbox issued.
pub(crate) fn parse_token(token: &str, prefix: &str) -> Option<u32> {
    token.strip_prefix(prefix)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:backup";

    #[test]
    fn names_follow_the_step_functions_rules() {
        assert!(is_valid_execution_name("web-1-20261129T100000Z"));
        assert!(is_valid_execution_name(&"x".repeat(80)));
        assert!(is_valid_execution_name("ünïcode.ok"));
        assert!(!is_valid_execution_name(""));
        assert!(!is_valid_execution_name(&"x".repeat(81)));
        for bad in [
            "a b", "a:b", "a/b", "a$b", "a\u{1}b", "a\u{85}b", "a\tb", "a`b",
        ] {
            assert!(!is_valid_execution_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn execution_arn_replaces_the_resource_type() {
        assert_eq!(
            execution_arn(SM, "n1"),
            "arn:aws:states:us-east-1:123456789012:execution:backup:n1"
        );
        let arn = execution_arn(SM, "n1");
        let (machine, name) = parse_execution_arn(&arn).unwrap();
        assert_eq!((machine.as_str(), name), (SM, "n1"));
        assert!(is_state_machine_arn(SM));
        assert!(!is_state_machine_arn(&arn));
    }

    #[test]
    fn pages_stop_at_max_and_name_the_next_item() {
        assert_eq!(take_page(1..=5, 2), (vec![1, 2], Some(3)));
        assert_eq!(take_page(1..=2, 2), (vec![1, 2], None));
        assert_eq!(parse_token("e1.7", "e1."), Some(7));
        assert_eq!(parse_token("x7", "e1."), None);
    }
}
