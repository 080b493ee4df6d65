//! No input makes the parser panic: arbitrary text, and mutations of a valid file.
use super::*;
use crate::schedule::Schedule;
use proptest::prelude::*;

const VALID: &str = include_str!("../../config/backups.example.toml");

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
            a.rules == b.rules && a.instances == b.instances && a.selections == b.selections
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
