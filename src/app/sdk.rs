//! The AWS SDK's settings for the daemon: the standard credential chain, the config's region
//! and endpoint, timeouts; and the one start-up check that credentials can be found.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use tracing::warn;

use crate::model::Config;
use crate::telemetry::event;

/// The SDK settings: the standard chain, plus the config's region and endpoint.
pub async fn sdk_config(config: &Config, static_credentials: bool) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(90))
                .build(),
        )
        // Responses are small JSON documents, and the attempt timeout already bounds a stall;
        // the per-request throughput monitor only costs CPU in a same-second storm.
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        );
    // Every client is made for its machine's region (`RegionalClients`), so the base region only
    // needs to be some region: without `region`, take the first machine's rather than asking the
    // chain, which off EC2 ends in instance metadata (IMDS) calls and long warnings.
    let region = config.region.clone().or_else(|| {
        config
            .rules
            .first()
            .map(|t| t.settings.state_machine.region.clone())
    });
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    if let Some(u) = &config.endpoint_url {
        loader = loader.endpoint_url(u);
    }
    if static_credentials {
        loader = loader.credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "demo",
            "demo",
            None,
            None,
            "orchestrator-demo",
        ));
    }
    loader.load().await
}

/// How long the start-up credentials check may take (the chain's instance metadata step
/// times out by itself after about a second off EC2).
const CREDENTIALS_CHECK: Duration = Duration::from_secs(10);

/// Resolves credentials once at start: when none can be found, says in one short line what to
/// set (the SDK would otherwise fail each call with a long chain report). The answer is cached
/// by the SDK, so the first call does not resolve them again.
pub async fn check_credentials(sdk: &SdkConfig) -> bool {
    use aws_sdk_sfn::config::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        return true;
    };
    let found = tokio::time::timeout(CREDENTIALS_CHECK, provider.provide_credentials())
        .await
        .is_ok_and(|r| r.is_ok());
    if !found {
        warn!(
            event = event::AWS_CREDENTIALS_MISSING,
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
        );
    }
    found
}
