//! What every other module of the sandbox speaks: its one notion of time (epoch milliseconds),
//! a refusal named by the service's error code, how dates are written on the wire, and the
//! small text helpers for ARNs and URL paths.
//!
//! A leaf: it imports no other module of the crate, so the services (jobs, copies, hooks,
//! listings) and the wire handlers can all use it without reaching through one another.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// Epoch milliseconds, the sandbox's only notion of time.
pub(crate) type Millis = i64;

/// One gibibyte, for the made-up sizes of backups and copies.
pub(crate) const GIB: u64 = 1 << 30;

/// A refusal, named by the error code the real service sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// A refusal with `code` and a message.
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The wall clock in epoch milliseconds: the sandbox answers real clients in real time. Only
/// the server reads it; everything below takes `now` as an argument.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

/// A duration in milliseconds, saturating (a configured "forever" stays forever).
pub(crate) fn duration_ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Epoch milliseconds as a UTC date.
pub(crate) fn to_datetime(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2026-11-29T10:00:00.123Z`, how Step Functions renders SDK-integration timestamps.
pub(crate) fn iso_millis(ms: Millis) -> String {
    to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Epoch seconds with milliseconds, how both JSON protocols write timestamps in bodies.
pub(crate) fn epoch_seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// Decodes `%XX` escapes (the SDK escapes `:` and `/` in ARNs); bad escapes stay as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when a command asks to fail: it contains the word `fail` (the sandbox's convention
/// for raw hook commands).
pub(crate) fn mentions_fail(command: &str) -> bool {
    command
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("fail"))
}

/// The shape of an ARN: six colon-separated parts with a service and a resource.
pub(crate) fn looks_like_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6 && parts[0] == "arn" && !parts[2].is_empty() && !parts[5].is_empty()
}

/// The service part of an ARN (`ec2`, `rds`, ...).
pub(crate) fn resource_service(arn: &str) -> &str {
    arn.split(':').nth(2).unwrap_or_default()
}

/// AWS Backup's resource type names for the services the sandbox is likely to see.
pub(crate) fn resource_type(arn: &str) -> String {
    match resource_service(arn) {
        "ec2" if arn.contains(":volume/") => "EBS".to_string(),
        "ec2" => "EC2".to_string(),
        "elasticfilesystem" => "EFS".to_string(),
        "dynamodb" => "DynamoDB".to_string(),
        "rds" => "RDS".to_string(),
        "s3" => "S3".to_string(),
        other => other.to_uppercase(),
    }
}

/// The AMI an EC2 recovery point is, in `region`: made from the job's id, so stable.
pub(crate) fn ec2_image_arn(region: &str, id: Uuid) -> String {
    format!(
        "arn:aws:ec2:{region}::image/ami-{:017x}",
        id.as_u128() >> 60
    )
}

/// A stable made-up size per job, between 1 and 16 GiB.
pub(crate) fn stable_size(id: Uuid) -> u64 {
    GIB + (id.as_u128() % (15 * u128::from(GIB))) as u64
}

/// AWS Backup job ids are upper-case UUIDs.
pub(crate) fn job_id_text(id: Uuid) -> String {
    id.hyphenated()
        .encode_upper(&mut Uuid::encode_buffer())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            percent_decode("arn%3Aaws%3Aec2%3Aus-east-1%3A1%3Ainstance%2Fi-1"),
            "arn:aws:ec2:us-east-1:1:instance/i-1"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn dates_are_written_as_the_services_write_them() {
        assert_eq!(iso_millis(1_800_000_000_123), "2027-01-15T08:00:00.123Z");
        assert!((epoch_seconds(1_500) - 1.5).abs() < f64::EPSILON);
    }

    #[test]
    fn resource_types_follow_aws_backup() {
        assert_eq!(resource_type("arn:aws:ec2:us-east-1:1:instance/i-1"), "EC2");
        assert_eq!(resource_type("arn:aws:ec2:us-east-1:1:volume/vol-1"), "EBS");
        assert_eq!(resource_type("arn:aws:rds:us-east-1:1:db:x"), "RDS");
        assert!(mentions_fail("exit 1 # FAIL"));
        assert!(!mentions_fail("failover"));
    }
}
