use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::names::{parse_test_name, test_part};
use super::*;
use crate::aws::{ExecutionDetail, ExecutionStatus};

fn point(arn: &str, day: u32, status: &str) -> RecoveryPoint {
    RecoveryPoint {
        arn: arn.to_string(),
        vault_name: "v".to_string(),
        resource_arn: "i".to_string(),
        status: status.to_string(),
        created: Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap(),
    }
}

#[test]
fn latest_is_the_newest_completed_at_or_before_the_time() {
    let points = vec![
        point("a", 1, "COMPLETED"),
        point("b", 3, "COMPLETED"),
        point("c", 4, "PARTIAL"),
        point("d", 6, "COMPLETED"),
    ];
    let at = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    assert_eq!(pick(&points, at, None, Pick::Latest, "x").unwrap().arn, "b");
    assert_eq!(pick(&points, at, Some(1), Pick::Latest, "x"), None);
    let before_all = Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap();
    assert_eq!(pick(&points, before_all, None, Pick::Latest, "x"), None);
}

#[test]
fn random_is_stable_per_seed_and_within_the_window() {
    let points: Vec<_> = (1..=9)
        .map(|d| point(&format!("p{d}"), d, "COMPLETED"))
        .collect();
    let at = Utc.with_ymd_and_hms(2026, 11, 9, 12, 0, 0).unwrap();
    let a = pick(&points, at, Some(3), Pick::Random, "test-web-1").unwrap();
    assert_eq!(
        a,
        pick(&points, at, Some(3), Pick::Random, "test-web-1").unwrap()
    );
    assert!(a.created >= at - chrono::Duration::days(3));
    let picked: std::collections::HashSet<_> = (0..40)
        .map(|i| {
            pick(&points, at, None, Pick::Random, &format!("s{i}"))
                .unwrap()
                .arn
                .clone()
        })
        .collect();
    assert!(picked.len() > 3, "{picked:?}");
}

#[test]
fn placement_falls_back_to_the_recovery_points_metadata() {
    let meta: BTreeMap<String, String> = [
        ("InstanceType", "t3.micro"),
        ("SubnetId", "subnet-11111111"),
        ("SecurityGroupIds", "[\"sg-11111111\"]"),
        ("IamInstanceProfileName", "admin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mine = RestorePlacement {
        subnet_id: Some("subnet-22222222".to_string()),
        ..RestorePlacement::default()
    };
    let r = resolve(&mine, &meta).unwrap();
    assert_eq!(r.subnet_id, "subnet-22222222");
    assert_eq!(r.instance_type, "t3.micro");
    assert_eq!(r.security_group_ids, vec!["sg-11111111"]);
    assert!(!r.keep_instance_profile);
    assert!(resolve(&RestorePlacement::default(), &BTreeMap::new()).is_err());
}

#[test]
fn names_are_stable_and_short() {
    let slot = Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap();
    assert_eq!(test_name("web", slot), "test-web-20261129T030000Z");
    assert_eq!(
        parse_test_name("test-web-20261129T030000Z"),
        Some(("web", slot))
    );
    let long = "x".repeat(200);
    assert!(test_name(&long, slot).len() <= 80);
    assert!(parse_test_name(&test_name(&long, slot)).is_some_and(|(p, _)| p == test_part(&long)));
    assert_eq!(restore_name("web", "{}"), restore_name("web", "{}"));
    assert_ne!(restore_name("web", "{}"), restore_name("web", "{ }"));
    assert!(restore_name(&long, "{}").len() <= 80);
    assert_eq!(
        sweep_name("i-0123", slot, 1),
        "sweep-i-0123-20261129T030000Z"
    );
    assert_eq!(
        sweep_name("i-0123", slot, 2),
        "sweep-i-0123-20261129T030000Z-2"
    );
    assert!(sweep_name(&long, slot, 5).len() <= 80);
}

#[test]
fn the_input_has_only_the_members_the_machine_takes() {
    let slot = Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap();
    let test = RestoreTest {
        schedule: std::sync::Arc::new(
            crate::schedule::Schedule::parse("0 3 * * 0", chrono_tz::Tz::UTC).unwrap(),
        ),
        pick: Pick::Latest,
        within_days: 7,
        max_restore_minutes: 60,
        keep_minutes: 30,
        validate_document: None,
        placement: RestorePlacement::default(),
        enabled: true,
    };
    let place = Resolved {
        instance_type: "t3.micro".into(),
        subnet_id: "subnet-11111111".into(),
        security_group_ids: vec!["sg-11111111".into()],
        keep_instance_profile: false,
    };
    let input = test_input(
        "web",
        "arn:i",
        &point("arn:rp", 1, "COMPLETED"),
        &place,
        &test,
        slot,
    );
    let v: serde_json::Value = serde_json::from_str(&input.to_json()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    // serde_json's map is sorted.
    assert_eq!(
        keys,
        [
            "Action",
            "ExpiresAt",
            "InstanceType",
            "KeepSeconds",
            "MaxRestoreSeconds",
            "RecoveryPointArn",
            "ResourceArn",
            "ScheduledFor",
            "SecurityGroupIds",
            "SubnetId",
            "Target"
        ]
    );
    assert_eq!(v["Action"], "test");
    assert_eq!(v["ExpiresAt"], "2026-11-29T05:10:00Z");
}

#[test]
fn reports_come_from_the_output_or_the_cause() {
    let report = r#"{"Action":"test","RestoreJobId":"j","RestoreStatus":"COMPLETED",
        "RestoreRequestedAt":"2026-11-29T03:00:00.000Z","InstanceRunningAt":"2026-11-29T03:04:30.500Z",
        "StatusChecks":"passed","Validation":{"Status":"SUCCESSFUL","Message":"ok","CommandId":"c"},
        "ValidationReported":false,"Cleanup":{"Status":"DELETED","Error":null}}"#;
    let mut d = ExecutionDetail {
        execution_arn: "a".into(),
        name: "n".into(),
        status: ExecutionStatus::Succeeded,
        input: None,
        output: Some(report.into()),
        error: None,
        cause: None,
        start_date: Utc::now(),
        stop_date: None,
    };
    let r = Report::of(&d).unwrap();
    assert_eq!(r.restore_seconds(), Some(270.5));
    assert_eq!(r.cleanup.status.as_deref(), Some("DELETED"));
    let max = Duration::from_secs(300);
    assert_eq!(outcome(&d.status, Some(&r), max), Outcome::Passed);
    assert_eq!(
        outcome(&d.status, Some(&r), Duration::from_secs(200)),
        Outcome::Slow
    );
    d.status = ExecutionStatus::Failed;
    d.output = None;
    d.cause = Some(report.into());
    assert!(Report::of(&d).is_some());
    assert_eq!(outcome(&d.status, Some(&r), max), Outcome::Failed);
    d.cause = Some("InputRefused: no".into());
    assert_eq!(Report::of(&d), None);
}
