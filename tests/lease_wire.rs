//! The lease's DynamoDB client (`aws::dynamodb::SdkLeaseTable`, the real SDK) against the
//! sandbox's DynamoDB subset over HTTP: the claim and release conditions, the old item in both
//! answers, and the errors a fault makes.

mod common;

use aws_sandbox::{Faults, Sandbox, SandboxConfig};
use backup_orchestrator::aws::dynamodb::SdkLeaseTable;
use backup_orchestrator::aws::{Claim, ErrorKind, LeaseRecord, LeaseTable};

async fn table() -> (Sandbox, SdkLeaseTable) {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let config = common::sdk_config(&sandbox.endpoint_url()).await;
    (sandbox, SdkLeaseTable::new(&config, "orchestrator-lease"))
}

#[tokio::test]
async fn claims_follow_the_condition_and_release_deletes_only_our_own() {
    let (_sandbox, t) = table().await;
    assert_eq!(
        t.claim("l", "a", 0, 30_000).await.unwrap(),
        Claim::Won { previous: None }
    );
    let a = LeaseRecord {
        owner: "a".into(),
        expires_at_ms: 30_000,
    };
    assert_eq!(
        t.claim("l", "b", 29_999, 60_000).await.unwrap(),
        Claim::HeldByOther {
            holder: Some(a.clone())
        }
    );
    // a renews its own lease before expiry.
    assert_eq!(
        t.claim("l", "a", 10_000, 40_000).await.unwrap(),
        Claim::Won { previous: Some(a) }
    );
    // After expiry by b's clock, b wins and learns whose lease it replaced.
    let won = t.claim("l", "b", 40_001, 70_001).await.unwrap();
    assert_eq!(
        won,
        Claim::Won {
            previous: Some(LeaseRecord {
                owner: "a".into(),
                expires_at_ms: 40_000
            })
        }
    );
    // a's release deletes nothing of b's.
    t.release("l", "a").await.unwrap();
    assert!(matches!(
        t.claim("l", "c", 50_000, 80_000).await.unwrap(),
        Claim::HeldByOther { .. }
    ));
    t.release("l", "b").await.unwrap();
    assert_eq!(
        t.claim("l", "c", 50_000, 80_000).await.unwrap(),
        Claim::Won { previous: None }
    );
}

#[tokio::test]
async fn faults_on_dynamodb_operations_are_retryable_errors() {
    let (sandbox, t) = table().await;
    sandbox.set_faults(Faults {
        throttle_next: 1,
        only_operations: Some(vec!["PutItem".into()]),
        ..Faults::default()
    });
    let e = t.claim("l", "a", 0, 30_000).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::Throttled, Some("ThrottlingException"))
    );
    sandbox.set_faults(Faults {
        drop_connections: true,
        only_operations: Some(vec!["PutItem".into(), "DeleteItem".into()]),
        ..Faults::default()
    });
    let e = t.claim("l", "a", 0, 30_000).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.kind, ErrorKind::Transient);
    sandbox.set_faults(Faults::default());
    assert!(matches!(
        t.claim("l", "a", 0, 30_000).await.unwrap(),
        Claim::Won { .. }
    ));
    assert_eq!(sandbox.stats().by_operation.get("PutItem"), Some(&3));
}
