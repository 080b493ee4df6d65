//! [`TagSearch`] with aws-sdk-resourcegroupstagging: GetResources over every page, one client per
//! region, made on first use.

use std::sync::Arc;

use aws_sdk_resourcegroupstagging::Client;
use aws_sdk_resourcegroupstagging::config::Region;
use aws_sdk_resourcegroupstagging::types::TagFilter;
use aws_types::SdkConfig;

use super::sdk_error::classify;
use super::{ApiError, Found, RegionalClients, TagQuery, TagSearch, TaggedResource};

/// GetResources' largest `ResourcesPerPage`.
pub const MAX_PAGE: i32 = 100;

/// A query never pages forever: 100,000 instances at 100 a page.
const MAX_PAGES: u32 = 1000;

/// The Resource Groups Tagging API through the AWS SDK.
#[derive(Clone)]
pub struct SdkTagSearch {
    clients: Arc<RegionalClients<Client>>,
}

impl SdkTagSearch {
    /// Uses `base` (credentials, endpoint, timeouts) with each query's region.
    pub fn new(base: SdkConfig) -> Self {
        let make = |base: &SdkConfig, region: &str| {
            Client::from_conf(
                aws_sdk_resourcegroupstagging::config::Builder::from(base)
                    .region(Region::new(region.to_string()))
                    .build(),
            )
        };
        SdkTagSearch {
            clients: Arc::new(RegionalClients::new(base, make)),
        }
    }
}

impl TagSearch for SdkTagSearch {
    async fn find(&self, query: &TagQuery) -> Result<Found, ApiError> {
        let client = self.clients.get(&query.region);
        let filters: Vec<TagFilter> = query
            .tag_filters
            .iter()
            .map(|(k, v)| {
                TagFilter::builder()
                    .key(k)
                    .set_values((!v.is_empty()).then(|| v.clone()))
                    .build()
            })
            .collect();
        let mut found = Found::default();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .get_resources()
                .set_resource_type_filters(Some(query.resource_types.clone()))
                .set_tag_filters(Some(filters.clone()))
                .resources_per_page(MAX_PAGE)
                .set_pagination_token(token.take())
                .send()
                .await
                .map_err(|e| classify("GetResources", e))?;
            found.calls += 1;
            for m in out.resource_tag_mapping_list() {
                let Some(arn) = m.resource_arn() else {
                    continue;
                };
                found.resources.push(TaggedResource {
                    arn: arn.to_string(),
                    tags: m
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect(),
                });
            }
            // The last page carries an empty token (not an absent one).
            match out.pagination_token() {
                Some(t) if !t.is_empty() && found.calls < MAX_PAGES => token = Some(t.to_string()),
                Some(t) if !t.is_empty() => {
                    return Err(ApiError {
                        operation: "GetResources",
                        kind: super::ErrorKind::Other,
                        code: None,
                        message: format!("more than {MAX_PAGES} pages: narrow the selection"),
                        request_id: None,
                    });
                }
                _ => return Ok(found),
            }
        }
    }
}
