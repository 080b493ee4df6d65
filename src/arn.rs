//! Parsed ARNs: the EC2 instances we back up and the state machines we start.

use std::fmt;
use std::sync::Arc;

/// Partitions an ARN may name.
const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// An EC2 instance ARN: `arn:PARTITION:ec2:REGION:ACCOUNT:instance/i-…`, validated.
///
/// Only its text is kept (one allocation: 100,000 instances, and every rule of an instance
/// shares it); the parts are read off the text when asked, which is rare. Equal, hashed and
/// borrowed as its text, so a map keyed by it is found by `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceArn(Arc<str>);

impl std::borrow::Borrow<str> for InstanceArn {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// A Step Functions state machine ARN: `arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`.
///
/// Cheap to clone: thousands of targets share the default machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateMachineArn(Arc<MachineParts>);

/// The parts of a state machine ARN.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineParts {
    arn: String,
    /// The AWS partition.
    pub partition: String,
    /// The region the machine (and so its backups) runs in.
    pub region: String,
    /// The 12-digit account.
    pub account: String,
    /// The machine's name.
    pub name: String,
}

impl std::ops::Deref for StateMachineArn {
    type Target = MachineParts;
    fn deref(&self) -> &MachineParts {
        &self.0
    }
}

/// The six `:`-separated fields of an ARN (the last keeps its own colons), if it has six.
fn fields(arn: &str) -> Option<[&str; 6]> {
    let mut it = arn.splitn(6, ':');
    let mut out = [""; 6];
    for slot in &mut out {
        *slot = it.next()?;
    }
    Some(out)
}

/// Splits `arn:partition:service:region:account:resource` and checks the common parts.
fn split<'a>(arn: &'a str, service: &str) -> Result<[&'a str; 4], String> {
    let Some(parts) = fields(arn).filter(|p| p[0] == "arn") else {
        return Err(format!(
            "`{arn}` is not an ARN (expected arn:PARTITION:{service}:REGION:ACCOUNT:RESOURCE)"
        ));
    };
    let (partition, svc, region, account, resource) =
        (parts[1], parts[2], parts[3], parts[4], parts[5]);
    if !PARTITIONS.contains(&partition) {
        return Err(format!(
            "unknown partition `{partition}` (expected one of {})",
            PARTITIONS.join(", ")
        ));
    }
    if svc != service {
        return Err(format!("service is `{svc}`, expected `{service}`"));
    }
    if !is_region(region) {
        return Err(format!("`{region}` is not a region name (like us-east-1)"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("account `{account}` is not 12 digits"));
    }
    Ok([partition, region, account, resource])
}

/// `xx-name-N` or `xx-name-name-N`, as region names are.
fn is_region(s: &str) -> bool {
    let Some((words, number)) = s.rsplit_once('-') else {
        return false;
    };
    let lower = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
    let (first, rest) = words.split_once('-').unwrap_or((words, ""));
    first.len() == 2
        && lower(first)
        && rest.split('-').all(lower)
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

impl InstanceArn {
    /// Parses and validates an EC2 instance ARN.
    pub fn parse(arn: &str) -> Result<Self, String> {
        let [_, _, _, resource] = split(arn, "ec2")?;
        let id = resource.strip_prefix("instance/").ok_or_else(|| {
            format!("resource `{resource}` is not an instance (expected instance/i-…)")
        })?;
        let hex = id.strip_prefix("i-").unwrap_or("");
        let hex_ok = (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(format!(
                "instance id `{id}` is not i- followed by 8 or 17 lowercase hex digits"
            ));
        }
        Ok(InstanceArn(Arc::from(arn)))
    }

    /// The ARN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `n`th `:`-separated field of the (validated) text.
    fn field(&self, n: usize) -> &str {
        fields(&self.0).map_or("", |f| f[n])
    }

    /// The AWS partition (`aws`, `aws-cn`, …).
    pub fn partition(&self) -> &str {
        self.field(1)
    }

    /// The instance's region.
    pub fn region(&self) -> &str {
        self.field(3)
    }

    /// The 12-digit account.
    pub fn account(&self) -> &str {
        self.field(4)
    }

    /// `i-` and 8 or 17 hex digits.
    pub fn instance_id(&self) -> &str {
        self.field(5).trim_start_matches("instance/")
    }
}

impl StateMachineArn {
    /// Parses and validates a state machine ARN.
    pub fn parse(arn: &str) -> Result<Self, String> {
        let [partition, region, account, resource] = split(arn, "states")?;
        let name = resource.strip_prefix("stateMachine:").ok_or_else(|| {
            format!("resource `{resource}` is not a state machine (expected stateMachine:NAME)")
        })?;
        if name.is_empty() || name.len() > 80 || name.contains(':') {
            return Err(format!(
                "state machine name `{name}` is empty, too long or has a `:`"
            ));
        }
        Ok(StateMachineArn(Arc::new(MachineParts {
            arn: arn.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })))
    }

    /// The ARN as text.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The ARN Step Functions gives the execution of this machine named `name`.
    pub fn execution_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:states:{}:{}:execution:{}:{}",
            self.partition, self.region, self.account, self.name, name
        )
    }
}

/// An AWS Backup vault ARN: `arn:PARTITION:backup:REGION:ACCOUNT:backup-vault:NAME` (a copy's
/// destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupVaultArn {
    arn: String,
    /// The AWS partition.
    pub partition: String,
    /// The vault's region.
    pub region: String,
    /// The 12-digit account.
    pub account: String,
    /// The vault's name.
    pub name: String,
}

impl BackupVaultArn {
    /// Parses and validates a backup vault ARN (names: 2-50 of `A-Z a-z 0-9 - _`, as AWS Backup).
    pub fn parse(arn: &str) -> Result<Self, String> {
        let [partition, region, account, resource] = split(arn, "backup")?;
        let name = resource.strip_prefix("backup-vault:").ok_or_else(|| {
            format!("resource `{resource}` is not a backup vault (expected backup-vault:NAME)")
        })?;
        let good = (2..=50).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !good {
            return Err(format!(
                "vault name `{name}` is not 2-50 of A-Z a-z 0-9 - _"
            ));
        }
        Ok(BackupVaultArn {
            arn: arn.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }

    /// The ARN as text.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
}

impl fmt::Display for BackupVaultArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl fmt::Display for InstanceArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StateMachineArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_arns() {
        let a =
            InstanceArn::parse("arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0")
                .unwrap();
        assert_eq!(
            (a.partition(), a.region(), a.account(), a.instance_id()),
            ("aws", "eu-west-1", "123456789012", "i-0123456789abcdef0")
        );
        assert!(
            InstanceArn::parse("arn:aws:ec2:us-gov-west-1:123456789012:instance/i-12345678")
                .is_ok()
        );
        for (bad, why) in [
            ("i-0123456789abcdef0", "not an ARN"),
            (
                "arn:foo:ec2:us-east-1:123456789012:instance/i-12345678",
                "partition",
            ),
            (
                "arn:aws:s3:us-east-1:123456789012:instance/i-12345678",
                "service",
            ),
            (
                "arn:aws:ec2:useast1:123456789012:instance/i-12345678",
                "region",
            ),
            (
                "arn:aws:ec2:us-east-1:12345678901:instance/i-12345678",
                "12 digits",
            ),
            (
                "arn:aws:ec2:us-east-1:123456789012:volume/vol-12345678",
                "not an instance",
            ),
            (
                "arn:aws:ec2:us-east-1:123456789012:instance/i-1234567",
                "8 or 17",
            ),
            (
                "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789ABCDEF0",
                "8 or 17",
            ),
        ] {
            let err = InstanceArn::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn region_names() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "ap-northeast-3",
            "eu-central-2",
            "il-central-1",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "",
            "us",
            "us-1",
            "us-east",
            "us-east-",
            "usa-east-1",
            "us-East-1",
            "us--1",
            "-east-1",
            "us-east-1a",
            "u-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn backup_vault_arns() {
        let v = BackupVaultArn::parse("arn:aws:backup:eu-west-1:210987654321:backup-vault:dr_1")
            .unwrap();
        assert_eq!(
            (v.region.as_str(), v.account.as_str()),
            ("eu-west-1", "210987654321")
        );
        assert_eq!(v.name, "dr_1");
        for (bad, why) in [
            ("dr-vault", "not an ARN"),
            (
                "arn:aws:backup:eu-west-1:210987654321:recovery-point:x",
                "not a backup vault",
            ),
            (
                "arn:aws:s3:eu-west-1:210987654321:backup-vault:dr",
                "service",
            ),
            (
                "arn:aws:backup:eu-west-1:210987654321:backup-vault:d",
                "2-50",
            ),
            (
                "arn:aws:backup:eu-west-1:210987654321:backup-vault:a.b",
                "2-50",
            ),
        ] {
            let err = BackupVaultArn::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn state_machine_arns() {
        let m = StateMachineArn::parse(
            "arn:aws:states:ap-northeast-1:123456789012:stateMachine:backup",
        )
        .unwrap();
        assert_eq!(m.region, "ap-northeast-1");
        assert_eq!(
            m.execution_arn("web-20261129T100000Z"),
            "arn:aws:states:ap-northeast-1:123456789012:execution:backup:web-20261129T100000Z"
        );
        assert!(
            StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:activity:x").is_err()
        );
    }
}
