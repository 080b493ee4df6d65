//! What the restore parts share ([`Parts`]) and one target's test as the config says
//! ([`Planned`]).

use std::sync::Arc;
use std::time::Duration;

use crate::arn::StateMachineArn;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::model::RestoreTest;
use crate::pacing::TokenBucket;

/// What the restore parts share.
pub struct Parts<S, B, T> {
    /// Step Functions.
    pub sfn: Arc<S>,
    /// AWS Backup's recovery points.
    pub backup: Arc<B>,
    /// The tagging API (the sweeper).
    pub tags: Arc<T>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// DescribeExecution and GetExecutionHistory pacing.
    pub describes: Arc<TokenBucket>,
    /// StartExecution pacing (shared with backups).
    pub starts: Arc<TokenBucket>,
    /// First poll of an execution; doubles while it runs.
    pub poll_interval: Duration,
    /// The ceiling of that backoff.
    pub max_poll_interval: Duration,
}

/// One target's restore test, as the config says.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The target's name.
    pub target: Arc<str>,
    /// Its instance.
    pub resource_arn: String,
    /// Its test.
    pub test: Arc<RestoreTest>,
    /// The restore machine.
    pub machine: StateMachineArn,
}
