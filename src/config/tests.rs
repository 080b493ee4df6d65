//! The loader's tests: what each step reports, and where.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::diagnostics::line_col;
use super::*;
use crate::hooks::{self, OnPreHookFailure, PostHookWhen};
use crate::model::{CatchUp, Concurrency, RuleSettings};
use crate::telemetry::LogFormat;

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
        c.rules
            .iter()
            .find(|t| t.settings.rule.as_deref() == Some(n))
            .unwrap()
    };
    let daily = &rule("daily").settings.copy_to;
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0].vault.as_str(), DR);
    assert_eq!(
        daily[0].delete_after_days, 7,
        "defaults to the backup's retention"
    );
    let monthly = &rule("monthly").settings.copy_to;
    assert_eq!(
        monthly
            .iter()
            .map(|d| (d.vault.region.as_str(), d.delete_after_days))
            .collect::<Vec<_>>(),
        [("eu-west-1", 365), ("us-west-2", 90)]
    );
    assert!(
        rule("hourly").settings.copy_to.is_empty(),
        "[] turns copies off"
    );
    assert!(ok(&minimal()).rules[0].settings.copy_to.is_empty());
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
    assert_eq!(c.rules.len(), 1);
    let t = &c.rules[0];
    assert_eq!(&*t.name, "web");
    assert!(t.settings.enabled);
    assert_eq!(t.settings.catch_up, CatchUp::Latest);
    assert_eq!(t.settings.concurrency, Concurrency::Forbid);
    assert_eq!(t.settings.schedule.timezone(), Tz::UTC);
    assert_eq!(t.settings.start_window_minutes, 60);
    assert_eq!(t.settings.delete_after_days, 35);
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
    let t = &c.rules[0];
    assert_eq!(t.settings.catch_up, CatchUp::None);
    assert_eq!(t.settings.jitter, Duration::from_secs(60));
    assert_eq!(t.settings.delete_after_days, 7);
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
    let text = minimal().replace("ec2:us-east-1", "ec2:eu-west-1").replace(
        "schedule = ",
        "state_machine_arn = \"arn:aws:states:eu-west-1:123456789012:stateMachine:b\"\nschedule = ",
    );
    let c = ok(&text);
    assert_eq!(c.rules[0].settings.state_machine.region, "eu-west-1");
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
    assert_eq!(c.rules.len(), 1200);
    assert_eq!(
        c.rules[600].settings.pre_command.as_deref(),
        Some("[[backup]]\n[[backup]]\n")
    );
    assert_eq!(c.rules[1199].settings.jitter, Duration::from_secs(60));
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
    assert_eq!(c.rules.len(), 1200);
    assert_eq!(&*c.rules[1199].name, "t1199");
    assert_eq!(c.rules[1199].settings.jitter, Duration::from_secs(60));
    // 1,200 targets set alike share one Settings.
    assert!(Arc::ptr_eq(&c.rules[0].settings, &c.rules[1199].settings));
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
        let target = format!("[[backup]]\nname = \"t{i:04}\"\nresource_arn = \"{arn}\"\n{rules}");
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
    assert_eq!(halves.rules, in_order.rules);
    assert_eq!(halves.instances, in_order.instances);
    assert!(halves.instances.len() > 1000);
    // Settings alike are shared across the halves as in one run.
    let distinct = |c: &Config| {
        let ptrs: std::collections::HashSet<*const RuleSettings> =
            c.rules.iter().map(|t| Arc::as_ptr(&t.settings)).collect();
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
        .rules
        .iter()
        .map(|t| {
            (
                t.slot_key(),
                t.settings.delete_after_days,
                t.settings.jitter,
            )
        })
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
    assert_eq!(
        c.rules[2].settings.schedule.timezone(),
        chrono_tz::Europe::Berlin
    );
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
    assert_eq!(ok(&text).rules.len(), 2);
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
        find("plan[0].rule[1].name", 9).contains("two rules named `daily` (the first on line 5)")
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
    let t = &c.rules[0];
    let pre = t.settings.pre_document.as_ref().unwrap();
    assert_eq!(
        (pre.name.as_str(), pre.version.as_deref()),
        ("orchestrator-systemd-unit", Some("2"))
    );
    assert_eq!(pre.parameters["unit"], "postgresql");
    assert_eq!(
        t.settings.post_document.as_ref().unwrap().parameters["action"],
        "start"
    );
    assert_eq!(
        t.settings.post_hook_when,
        PostHookWhen::Completed,
        "the alias post_command_when"
    );
    assert_eq!(
        t.settings.on_pre_hook_failure,
        OnPreHookFailure::Skip,
        "the alias on_pre_command_failure"
    );
    assert_eq!(t.settings.hook_max_downtime, Duration::from_secs(1200));
    assert!(t.settings.windows_vss && t.settings.has_hooks() && t.settings.has_post_hook());

    let plain = ok(&minimal());
    let t = &plain.rules[0];
    assert_eq!(
        (
            t.settings.post_hook_when,
            t.settings.on_pre_hook_failure,
            t.settings.hook_max_downtime,
            t.settings.windows_vss
        ),
        (
            PostHookWhen::Started,
            OnPreHookFailure::Backup,
            hooks::DEFAULT_MAX_DOWNTIME,
            false
        )
    );
    assert!(!t.settings.has_hooks());
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
        c.rules.is_empty(),
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
    assert_eq!(s.templates[0].settings.rule.as_deref(), Some("d"));
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

const RESTORE_SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:backup-restore";

fn with_restores(body: &str) -> String {
    format!("restore_state_machine_arn = \"{RESTORE_SM}\"\n{body}")
}

#[test]
fn restore_tests_are_layered_target_over_plan_over_defaults() {
    let c = ok(&with_restores(&format!(
        r#"state_machine_arn = "{SM}"
restore_sweep_interval = "5m"
[defaults]
restore = {{ subnet_id = "subnet-0123456789abcdef0", security_group_ids = ["sg-0123456789abcdef0"] }}
restore_test = {{ schedule = "0 4 * * 0", within_days = 3 }}

[[plan]]
name = "fleet"
restore_test = {{ schedule = "0 5 * * 6", pick = "random", validate_document = {{ name = "orchestrator-validate", parameters = {{ query = "select 1" }} }} }}
[[plan.rule]]
name = "daily"
schedule = "0 3 * * *"

[[backup]]
name = "a"
resource_arn = "{EC2}"
plan = "fleet"

[[backup]]
name = "b"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef1"
plan = "fleet"
restore_test = {{ schedule = "0 6 * * *", max_restore_minutes = 20, instance_type = "t3.small" }}

[[backup]]
name = "c"
resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef2"
schedule = "0 2 * * *"
"#
    )));
    assert_eq!(c.restore.sweep_interval, Duration::from_secs(300));
    assert_eq!(
        c.restore.state_machine.as_ref().unwrap().name,
        "backup-restore"
    );
    let test = |name: &str| {
        c.first_rule_of(name)
            .unwrap()
            .settings()
            .restores
            .test
            .clone()
            .unwrap()
    };
    let a = test("a");
    assert_eq!(a.schedule.expression(), "0 5 * * 6");
    assert_eq!(a.pick, crate::model::Pick::Random);
    assert_eq!(a.within_days, 7);
    assert_eq!(
        a.validate_document.as_ref().unwrap().parameters["query"],
        "select 1"
    );
    // The placement comes from [defaults].restore under the plan's test.
    assert_eq!(
        a.placement.subnet_id.as_deref(),
        Some("subnet-0123456789abcdef0")
    );
    let b = test("b");
    assert_eq!(b.schedule.expression(), "0 6 * * *");
    assert_eq!((b.max_restore_minutes, b.keep_minutes), (20, 30));
    assert_eq!(b.placement.instance_type.as_deref(), Some("t3.small"));
    let c_test = test("c");
    assert_eq!(
        (c_test.schedule.expression(), c_test.within_days),
        ("0 4 * * 0", 3)
    );
    // One check per table: the plan's targets share it.
    assert!(Arc::ptr_eq(
        &c.first_rule_of("a").unwrap().settings().restores,
        &c.first_rule_of("a").unwrap().settings().restores
    ));
}

#[test]
fn bad_restore_values_name_their_field_and_line() {
    let d = errors(&with_restores(&format!(
        r#"state_machine_arn = "{SM}"
[[backup]]
name = "web"
resource_arn = "{EC2}"
schedule = "0 3 * * *"
restore = {{ subnet_id = "vpc-1", security_group_ids = [] }}
restore_test = {{ schedule = "61 * * * *", within_days = 0, keep_minutes = 5000, validate_document = {{ name = "a b" }} }}
"#
    )));
    let text: Vec<String> = d.iter().map(ToString::to_string).collect();
    let has = |field: &str| {
        assert!(
            text.iter().any(|t| t.contains(field) && t.contains(":7:")
                || t.contains(field) && t.contains(":8:")),
            "{field} not in {text:#?}"
        );
    };
    has("backup[0].restore.subnet_id");
    has("backup[0].restore.security_group_ids");
    has("backup[0].restore_test.schedule");
    has("backup[0].restore_test.within_days");
    has("backup[0].restore_test.keep_minutes");
    has("backup[0].restore_test.validate_document.name");
}

#[test]
fn a_restore_test_needs_the_restore_machine_and_unknown_keys_are_refused() {
    let d = errors(&format!(
        "{}restore_test = {{ schedule = \"0 4 * * 0\" }}\n",
        minimal()
    ));
    assert!(
        d.iter()
            .any(|d| d.to_string().contains("restore_state_machine_arn")),
        "{d:?}"
    );
    let d = errors(&with_restores(&format!(
        "{}restore_test = {{ schedule = \"0 4 * * 0\", iam_instance_profile = \"admin\" }}\n",
        minimal()
    )));
    assert!(
        d.iter()
            .any(|d| d.to_string().contains("iam_instance_profile")),
        "{d:?}"
    );
}
