//! The sandbox's DynamoDB subset as the real `aws-sdk-dynamodb` client sees it over HTTP: the
//! lease's conditional PutItem and DeleteItem, `ConditionalCheckFailedException` carrying the
//! old item, throttling through the SDK's retry, and faults limited to one client's access key.

use std::collections::HashMap;
use std::time::Duration;

use aws_sandbox::{Faults, Sandbox, SandboxConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

const TABLE: &str = "orchestrator-lease";
/// The lease's claim condition (as `aws::dynamodb` in the daemon writes it).
const CLAIM: &str = "attribute_not_exists(pk) OR expires_at_ms < :now OR #o = :me";

async fn start() -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .expect("sandbox starts")
}

fn client(sandbox: &Sandbox, access_key: &str, attempts: u32) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{Credentials, Region, retry::RetryConfig};
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(sandbox.endpoint_url())
            .credentials_provider(Credentials::new(access_key, "secret", None, None, "test"))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .build(),
    )
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

async fn claim(
    c: &aws_sdk_dynamodb::Client,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<
    aws_sdk_dynamodb::operation::put_item::PutItemOutput,
    SdkError<PutItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
> {
    c.put_item()
        .table_name(TABLE)
        .item("pk", s("leader"))
        .item("owner", s(owner))
        .item("expires_at_ms", n(until))
        .condition_expression(CLAIM)
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":me", s(owner))
        .return_values(ReturnValue::AllOld)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
}

fn owner(item: Option<&HashMap<String, AttributeValue>>) -> Option<String> {
    item?.get("owner")?.as_s().ok().cloned()
}

#[tokio::test]
async fn conditional_put_refuses_with_the_old_item_and_returns_it_on_success() {
    let sb = start().await;
    let c = client(&sb, "A", 1);
    let first = claim(&c, "a", 0, 1_000).await.unwrap();
    assert_eq!(first.attributes(), None, "nothing replaced");
    // b before a's expiry: ConditionalCheckFailedException with a's item.
    let e = claim(&c, "b", 999, 2_000).await.unwrap_err();
    assert_eq!(e.code(), Some("ConditionalCheckFailedException"));
    let SdkError::ServiceError(ctx) = &e else {
        panic!("{e:?}")
    };
    let PutItemError::ConditionalCheckFailedException(ccf) = ctx.err() else {
        panic!("{:?}", ctx.err())
    };
    assert_eq!(owner(ccf.item()), Some("a".into()));
    assert_eq!(ccf.item().unwrap()["expires_at_ms"].as_n().unwrap(), "1000");
    // Without ReturnValuesOnConditionCheckFailure the error carries no item.
    let bare = c
        .put_item()
        .table_name(TABLE)
        .item("pk", s("leader"))
        .item("owner", s("b"))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap_err();
    let SdkError::ServiceError(ctx) = &bare else {
        panic!("{bare:?}")
    };
    match ctx.err() {
        PutItemError::ConditionalCheckFailedException(e) => assert_eq!(e.item(), None),
        other => panic!("{other:?}"),
    }
    // The owner renews; after expiry b wins and learns whose lease it replaced.
    let renewed = claim(&c, "a", 500, 1_500).await.unwrap();
    assert_eq!(owner(renewed.attributes()), Some("a".into()));
    let won = claim(&c, "b", 1_501, 2_501).await.unwrap();
    assert_eq!(owner(won.attributes()), Some("a".into()));
    // GetItem reads what the sandbox's admin view shows.
    let got = c
        .get_item()
        .table_name(TABLE)
        .key("pk", s("leader"))
        .send()
        .await
        .unwrap();
    assert_eq!(owner(got.item()), Some("b".into()));
    let items = sb.dynamodb_items(TABLE);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["owner"]["S"], "b");
}

#[tokio::test]
async fn conditional_delete_removes_only_the_owners_item() {
    let sb = start().await;
    let c = client(&sb, "A", 1);
    claim(&c, "a", 0, 1_000).await.unwrap();
    let release = |who: &'static str| {
        c.delete_item()
            .table_name(TABLE)
            .key("pk", s("leader"))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", s(who))
            .send()
    };
    let e = release("b").await.unwrap_err();
    let SdkError::ServiceError(ctx) = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(
        ctx.err(),
        DeleteItemError::ConditionalCheckFailedException(_)
    ));
    assert_eq!(sb.dynamodb_items(TABLE).len(), 1, "b deleted nothing");
    release("a").await.unwrap();
    assert!(sb.dynamodb_items(TABLE).is_empty());
    // A deleted lease is claimable at once, whatever the clock says.
    claim(&c, "b", 0, 1_000).await.unwrap();
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_a_fault_can_hit_one_client_only() {
    let sb = start().await;
    sb.set_faults(Faults {
        throttle_next: 2,
        only_operations: Some(vec!["PutItem".into()]),
        ..Faults::default()
    });
    // The standard retry rides out two ThrottlingExceptions (3 attempts).
    claim(&client(&sb, "A", 3), "a", 0, 1_000).await.unwrap();
    assert_eq!(sb.stats().by_operation["PutItem"], 3);
    sb.set_faults(Faults {
        throttle_next: 1,
        ..Faults::default()
    });
    let e = claim(&client(&sb, "A", 1), "a", 0, 1_000)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert_eq!(
        e.raw_response().map(|r| r.status().as_u16()),
        Some(400),
        "DynamoDB throttling is a 400"
    );
    // The leader's path to the table fails; the standby's does not.
    sb.set_faults(Faults {
        drop_connections: true,
        only_operations: Some(vec!["PutItem".into(), "DeleteItem".into()]),
        only_access_keys: Some(vec!["LEADER".into()]),
        ..Faults::default()
    });
    let leader = client(&sb, "LEADER", 1);
    let e = claim(&leader, "a", 500, 1_500).await.unwrap_err();
    assert!(
        matches!(e, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)),
        "{e:?}"
    );
    let standby = client(&sb, "STANDBY", 1);
    let e = claim(&standby, "b", 500, 1_500).await.unwrap_err();
    assert_eq!(e.code(), Some("ConditionalCheckFailedException"));
    claim(&standby, "b", 1_001, 2_001).await.unwrap();
}
