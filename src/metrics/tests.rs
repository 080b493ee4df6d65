use super::*;

fn cover(targets: &[(&str, Option<f64>, &[&str])]) -> Vec<Cover> {
    targets
        .iter()
        .map(|(t, gap, dests)| Cover {
            target: (*t).into(),
            expected_interval: *gap,
            destinations: dests.iter().map(|d| (*d).into()).collect(),
        })
        .collect()
}

/// The sample lines of `text` that start with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn removed_targets_lose_their_series() {
    let m = Metrics::new();
    m.execution_started("web");
    m.execution_started("db");
    m.slot_skipped("db", "previous_backup_running");
    m.execution_failed("db");
    m.set_next_fire(&"db".into(), Utc::now());
    let text = m.encode();
    assert!(
        text.contains("orchestrator_executions_started_total{target=\"db\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("orchestrator_executions_failed_total{target=\"db\"} 1"),
        "{text}"
    );
    m.retain_targets(&HashSet::from(["web"]));
    let text = m.encode();
    assert!(!text.contains("target=\"db\""), "{text}");
    assert!(
        text.contains("orchestrator_executions_started_total{target=\"web\"} 1"),
        "{text}"
    );
    assert_eq!(m.target_names(), vec![Arc::<str>::from("web")]);
}

#[test]
fn every_family_is_declared_before_its_first_series() {
    let text = Metrics::new().encode();
    for name in [
        "executions_failed",
        "backups_finished",
        "slots_skipped",
        "aws_api_errors",
        "copies_finished",
        "last_success_timestamp_seconds",
        "backup_expected_interval_seconds",
        "execution_input_mismatches",
        "ready",
        "restore_tests",
        "restore_duration_seconds",
        "last_restore_test_success_timestamp_seconds",
        "restored_resources_expired",
    ] {
        assert!(
            text.contains(&format!("# TYPE orchestrator_{name} ")),
            "{name} undeclared:\n{text}"
        );
    }
    // A family for a standby or a replica without [ha]: no series at all.
    assert!(!text.contains("target="), "{text}");
    assert!(!text.contains("ha_lease"), "{text}");
}

#[test]
fn covered_targets_have_their_series_from_the_start() {
    let m = Metrics::new();
    let dr = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
    m.cover(&cover(&[
        ("web", Some(86_400.0), &[dr]),
        ("once", None, &[]),
    ]));
    let text = m.encode();
    assert_eq!(
        lines(&text, "orchestrator_backup_expected_interval_seconds{"),
        ["orchestrator_backup_expected_interval_seconds{target=\"web\"} 86400.0"]
    );
    for t in ["web", "once"] {
        for line in [
            format!("orchestrator_last_success_timestamp_seconds{{target=\"{t}\"}} 0.0"),
            format!("orchestrator_executions_failed_total{{target=\"{t}\"}} 0"),
            format!("orchestrator_execution_input_mismatches_total{{target=\"{t}\"}} 0"),
            format!("orchestrator_backups_finished_total{{target=\"{t}\",state=\"FAILED\"}} 0"),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }
    assert!(text.contains(&format!(
        "orchestrator_copies_finished_total{{target=\"web\",destination=\"{dr}\",state=\"FAILED\"}} 0"
    )));
    assert!(text.contains(&format!(
        "orchestrator_last_copy_success_timestamp_seconds{{target=\"web\",destination=\"{dr}\"}} 0.0"
    )));

    // A seed and a later success only move the gauge forward.
    let t0 = DateTime::parse_from_rfc3339("2026-12-01T03:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    m.seed_last_success("web", t0);
    m.seed_last_success("web", t0 - chrono::Duration::days(1));
    m.seed_last_copy("web", dr, t0);
    let text = m.encode();
    assert!(
        text.contains("orchestrator_last_success_timestamp_seconds{target=\"web\"} 1796094000.0"),
        "{text}"
    );
    assert!(text.contains(
        "destination=\"arn:aws:backup:us-west-2:123456789012:backup-vault:dr\"} 1796094000.0"
    ));

    // A failure adds to the zero; a reload that disables `once` stops judging it.
    m.execution_failed("web");
    m.cover(&cover(&[("web", Some(3600.0), &[dr])]));
    let text = m.encode();
    assert!(text.contains("orchestrator_executions_failed_total{target=\"web\"} 1"));
    assert!(!text.contains("orchestrator_executions_failed_total{target=\"once\"}"));
    assert!(!text.contains("orchestrator_backup_expected_interval_seconds{target=\"once\"}"));
    assert!(text.contains("orchestrator_backup_expected_interval_seconds{target=\"web\"} 3600.0"));
}

#[test]
fn the_ha_lease_gauge_exists_only_once_set_and_restore_methods_fill_their_families() {
    let m = Metrics::new();
    m.set_ha_lease(std::time::Duration::from_secs(30));
    m.set_ready(true);
    m.restore_test_finished("db", "slow", 4000.0, 3600.0);
    m.set_last_restore_test_success("web", None);
    m.set_restore_test_expected_interval("web", 604_800.0);
    m.set_restored_resources(3, 1);
    let text = m.encode();
    for line in [
        "orchestrator_ha_lease_seconds 30.0",
        "orchestrator_ready 1",
        "orchestrator_restore_tests_total{target=\"db\",result=\"slow\"} 1",
        "orchestrator_last_restore_duration_seconds{target=\"db\"} 4000.0",
        "orchestrator_restore_max_duration_seconds{target=\"db\"} 3600.0",
        "orchestrator_last_restore_test_success_timestamp_seconds{target=\"web\"} 0.0",
        "orchestrator_restore_test_expected_interval_seconds{target=\"web\"} 604800.0",
        "orchestrator_restored_resources_alive 3",
        "orchestrator_restored_resources_expired 1",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    m.retain_targets(&HashSet::from(["web"]));
    assert!(!m.encode().contains("target=\"db\""));
}
