//! [`LeaseTable`] with aws-sdk-dynamodb: conditional PutItem to claim, conditional DeleteItem to
//! release. The item: `pk` (S, the lease name), `owner` (S), `expires_at_ms` (N, what the
//! condition compares) and `expires_at` (N, epoch seconds, for the table's TTL).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_types::SdkConfig;

use super::sdk_error::classify;
use super::{ApiError, Claim, LeaseRecord, LeaseTable};

/// The claim condition: no lease, an expired one (by the claimer's clock), or our own.
const CLAIM_CONDITION: &str = "attribute_not_exists(pk) OR expires_at_ms < :now OR #o = :me";
/// The release condition: only our own lease is deleted.
const RELEASE_CONDITION: &str = "#o = :me";

/// A DynamoDB lease table through the AWS SDK.
#[derive(Clone)]
pub struct SdkLeaseTable {
    client: Client,
    table: String,
}

impl SdkLeaseTable {
    /// A client of `table` with `base` (credentials, region, endpoint).
    pub fn new(base: &SdkConfig, table: impl Into<String>) -> Self {
        SdkLeaseTable {
            client: Client::new(base),
            table: table.into(),
        }
    }
}

fn record(item: &HashMap<String, AttributeValue>) -> Option<LeaseRecord> {
    Some(LeaseRecord {
        owner: item.get("owner")?.as_s().ok()?.clone(),
        expires_at_ms: item.get("expires_at_ms")?.as_n().ok()?.parse().ok()?,
    })
}

impl LeaseTable for SdkLeaseTable {
    async fn claim(
        &self,
        lease: &str,
        owner: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Claim, ApiError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(lease.to_string()))
            .item("owner", AttributeValue::S(owner.to_string()))
            .item(
                "expires_at_ms",
                AttributeValue::N(expires_at_ms.to_string()),
            )
            // TTL wants epoch seconds; rounded up so TTL never deletes a live lease.
            .item(
                "expires_at",
                AttributeValue::N(((expires_at_ms + 999) / 1000).to_string()),
            )
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":me", AttributeValue::S(owner.to_string()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Claim::Won {
                previous: out.attributes().and_then(record),
            }),
            Err(SdkError::ServiceError(ctx))
                if matches!(ctx.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let holder = match ctx.err() {
                    PutItemError::ConditionalCheckFailedException(e) => e.item().and_then(record),
                    _ => None,
                };
                Ok(Claim::HeldByOther { holder })
            }
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    async fn release(&self, lease: &str, owner: &str) -> Result<(), ApiError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(lease.to_string()))
            .condition_expression(RELEASE_CONDITION)
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else holds it already (or nobody): nothing of ours to release.
            Err(SdkError::ServiceError(ctx))
                if matches!(
                    ctx.err(),
                    DeleteItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("DeleteItem", e)),
        }
    }
}
