//! Tag selections' client (`aws::tagging::SdkTagSearch`, the real SDK) against the sandbox's
//! GetResources over HTTP: paging over 1,234 matching instances, TagFilters' AND semantics,
//! ResourceTypeFilters, and the error shapes (throttling, access denied, a bad page size, an
//! expired token) as the SDK parses them.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sandbox::{Faults, Sandbox, SandboxConfig, TaggedInstance};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use backup_orchestrator::aws::tagging::SdkTagSearch;
use backup_orchestrator::aws::{ErrorKind, TagQuery, TagSearch};

async fn setup() -> (Sandbox, aws_types::SdkConfig) {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let config = common::sdk_config(&sandbox.endpoint_url()).await;
    (sandbox, config)
}

fn instance(n: u32, tags: &[(&str, &str)]) -> TaggedInstance {
    TaggedInstance {
        arn: format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{n:017x}"),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn query(filters: &[(&str, &str)]) -> TagQuery {
    TagQuery {
        region: "us-east-1".into(),
        resource_types: vec!["ec2:instance".into()],
        tag_filters: filters
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect(),
    }
}

#[tokio::test]
async fn pages_over_1234_matching_instances_with_and_filters() {
    let (sandbox, sdk) = setup().await;
    // 1,234 match both tags; 300 only one of them; 100 match but are excluded later by the
    // daemon (the service does not exclude).
    let mut all = Vec::new();
    for n in 0..1234 {
        all.push(instance(n, &[("backup", "daily"), ("env", "prod")]));
    }
    for n in 2000..2300 {
        all.push(instance(n, &[("backup", "daily"), ("env", "dev")]));
    }
    sandbox.put_instances(all);
    let tags = SdkTagSearch::new(sdk);
    let found = tags
        .find(&query(&[("backup", "daily"), ("env", "prod")]))
        .await
        .unwrap();
    assert_eq!(found.resources.len(), 1234);
    assert_eq!(found.calls, 13, "100 a page");
    let arns: BTreeSet<&str> = found.resources.iter().map(|r| r.arn.as_str()).collect();
    assert_eq!(arns.len(), 1234, "no resource twice across pages");
    assert!(
        found.resources[0]
            .tags
            .contains(&("env".to_string(), "prod".to_string()))
    );
    assert_eq!(sandbox.stats().by_operation["GetResources"], 13);
    // One filter: both sets.
    let found = tags.find(&query(&[("backup", "daily")])).await.unwrap();
    assert_eq!(found.resources.len(), 1534);
    // Another resource type matches nothing.
    let mut q = query(&[("backup", "daily")]);
    q.resource_types = vec!["s3".into()];
    assert!(tags.find(&q).await.unwrap().resources.is_empty());
}

#[tokio::test]
async fn errors_are_classified_from_the_wire() {
    let (sandbox, sdk) = setup().await;
    sandbox.put_instances(vec![instance(1, &[("backup", "daily")])]);
    let tags = SdkTagSearch::new(sdk.clone());
    sandbox.set_faults(Faults {
        throttle_rate: 1.0,
        only_operations: Some(vec!["GetResources".into()]),
        ..Faults::default()
    });
    let e = tags.find(&query(&[("backup", "daily")])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    assert_eq!(e.code.as_deref(), Some("ThrottledException"));
    sandbox.set_faults(Faults {
        error_rate: 1.0,
        only_operations: Some(vec!["GetResources".into()]),
        ..Faults::default()
    });
    let e = tags.find(&query(&[("backup", "daily")])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert_eq!(e.code.as_deref(), Some("InternalServiceException"));
    sandbox.set_faults(Faults::default());
    sandbox.set_tagging_denied(true);
    let e = tags.find(&query(&[("backup", "daily")])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied, "{e}");
    sandbox.set_tagging_denied(false);
    assert_eq!(
        tags.find(&query(&[("backup", "daily")]))
            .await
            .unwrap()
            .resources
            .len(),
        1
    );

    // The raw client: the modelled errors of a bad page size and a stale token.
    let raw = aws_sdk_resourcegroupstagging::Client::new(&sdk);
    let e = raw
        .get_resources()
        .resources_per_page(101)
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error()
            .is_some_and(|e| e.is_invalid_parameter_exception()),
        "{e:?}"
    );
    let e = raw
        .get_resources()
        .pagination_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error()
            .is_some_and(|e| e.is_pagination_token_expired_exception()),
        "{e:?}"
    );
    // The last page's token is the empty string, as the service sends it.
    let out = raw
        .get_resources()
        .tag_filters(TagFilter::builder().key("backup").values("daily").build())
        .send()
        .await
        .unwrap();
    assert_eq!(out.pagination_token(), Some(""));
    assert_eq!(out.resource_tag_mapping_list().len(), 1);
}
