//! Recovery points, as AWS Backup lists them: one for every COMPLETED backup job (in its vault,
//! in the sandbox's region and account) and one for every COMPLETED copy job (in its
//! destination vault, in that vault's region and account). Derived from the jobs when asked, so
//! they cost nothing to hold; with the restore metadata of the instances they were taken of.

use std::collections::BTreeMap;

use super::super::basics::{ApiError, Millis, resource_type, to_datetime};
use super::super::jobs::JobState;
use super::super::listing::Listing;
use super::World;
use super::runs::{Place, PointFilter, RecoveryPointRecord};

impl World {
    /// Every recovery point that exists at `now`: backups first, then copies, each oldest
    /// first.
    pub fn recovery_points(&mut self, now: Millis) -> Vec<RecoveryPointRecord> {
        self.advance(now);
        self.points(now)
    }

    pub(super) fn points(&self, now: Millis) -> Vec<RecoveryPointRecord> {
        let (region, account) = (&self.config.region, &self.config.account_id);
        let mut all: Vec<RecoveryPointRecord> = (0..self.jobs.len() as u32)
            .filter(|&j| self.jobs.state(j, now) == JobState::Completed)
            .map(|j| {
                let vault = self.jobs.vault(j);
                RecoveryPointRecord {
                    arn: self.jobs.recovery_point_arn(j),
                    backup_vault_name: vault.to_string(),
                    backup_vault_arn: format!(
                        "arn:aws:backup:{region}:{account}:backup-vault:{vault}"
                    ),
                    source_backup_vault_arn: None,
                    resource_arn: self.jobs.resource(j).to_string(),
                    resource_type: resource_type(self.jobs.resource(j)),
                    iam_role_arn: self.jobs.role(j).to_string(),
                    status: "COMPLETED",
                    creation_date: to_datetime(self.jobs.created(j)),
                    completion_date: to_datetime(self.jobs.times(j).ends),
                    backup_size_in_bytes: self.jobs.size(j) as i64,
                    delete_after_days: self.jobs.delete_after_days(j).map(i64::from),
                    region: region.clone(),
                    account_id: account.clone(),
                    job_id: self.jobs.id(j),
                }
            })
            .collect();
        for c in self.copy_jobs.all(now, account) {
            if c.state != "COMPLETED" {
                continue;
            }
            let parts: Vec<&str> = c.destination_backup_vault_arn.splitn(7, ':').collect();
            all.push(RecoveryPointRecord {
                arn: c.destination_recovery_point_arn,
                backup_vault_name: parts.get(6).copied().unwrap_or_default().to_string(),
                backup_vault_arn: c.destination_backup_vault_arn.clone(),
                source_backup_vault_arn: Some(c.source_backup_vault_arn),
                resource_arn: c.resource_arn,
                resource_type: c.resource_type,
                iam_role_arn: c.iam_role_arn,
                status: "COMPLETED",
                creation_date: c.creation_date,
                completion_date: c.completion_date.unwrap_or(c.creation_date),
                backup_size_in_bytes: c.backup_size_in_bytes,
                delete_after_days: c.delete_after_days,
                region: parts.get(3).copied().unwrap_or_default().to_string(),
                account_id: parts.get(4).copied().unwrap_or_default().to_string(),
                job_id: c.id,
            });
        }
        all
    }

    /// The recovery point `arn` in vault `vault` of `place`.
    pub(super) fn point_in_vault(
        &self,
        vault: &str,
        arn: &str,
        place: &Place<'_>,
        now: Millis,
    ) -> Result<RecoveryPointRecord, ApiError> {
        self.vault_exists(vault, place, now)?;
        self.points(now)
            .into_iter()
            .find(|p| {
                p.arn == arn
                    && p.backup_vault_name == vault
                    && p.region == place.region
                    && p.account_id == place.account
            })
            .ok_or_else(|| {
                ApiError::new(
                    "ResourceNotFoundException",
                    format!("Recovery point {arn} not found in backup vault {vault}"),
                )
            })
    }

    /// A vault exists when it is the stack's, or something was ever written to it.
    fn vault_exists(&self, vault: &str, place: &Place<'_>, now: Millis) -> Result<(), ApiError> {
        let ours = vault == self.config.stack.backup_vault_name
            && place.region == self.config.region
            && place.account == self.config.account_id;
        if ours
            || self.points(now).iter().any(|p| {
                p.backup_vault_name == vault
                    && p.region == place.region
                    && p.account_id == place.account
            })
        {
            return Ok(());
        }
        Err(ApiError::new(
            "ResourceNotFoundException",
            format!(
                "Backup vault {vault} does not exist in {} for account {}",
                place.region, place.account
            ),
        ))
    }

    /// DescribeRecoveryPoint.
    pub fn describe_recovery_point(
        &mut self,
        vault: &str,
        arn: &str,
        place: &Place<'_>,
        now: Millis,
    ) -> Result<RecoveryPointRecord, ApiError> {
        self.advance(now);
        self.point_in_vault(vault, arn, place, now)
    }

    /// ListRecoveryPointsByResource: the points of `resource` in the caller's region, newest
    /// first.
    pub fn list_points_by_resource(
        &mut self,
        resource: &str,
        place: &Place<'_>,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<RecoveryPointRecord>, Option<String>), ApiError> {
        self.advance(now);
        let found = self
            .points(now)
            .into_iter()
            .filter(|p| p.resource_arn == resource && p.region == place.region)
            .collect();
        page_of(found, listing)
    }

    /// ListRecoveryPointsByBackupVault: the points of vault `vault` in the caller's region,
    /// newest first.
    pub fn list_points_by_vault(
        &mut self,
        vault: &str,
        filter: &PointFilter,
        place: &Place<'_>,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<RecoveryPointRecord>, Option<String>), ApiError> {
        self.advance(now);
        self.vault_exists(vault, place, now)?;
        let found = self
            .points(now)
            .into_iter()
            .filter(|p| {
                p.backup_vault_name == vault
                    && p.region == place.region
                    && p.account_id == place.account
                    && filter
                        .resource_arn
                        .as_deref()
                        .is_none_or(|r| r == p.resource_arn)
                    && filter
                        .resource_type
                        .as_deref()
                        .is_none_or(|t| t == p.resource_type)
                    && listing
                        .created_after
                        .is_none_or(|a| p.creation_date.timestamp_millis() >= a)
                    && listing
                        .created_before
                        .is_none_or(|b| p.creation_date.timestamp_millis() <= b)
            })
            .collect();
        page_of(found, listing)
    }

    /// GetRecoveryPointRestoreMetadata: the vault's ARN and the instance's metadata.
    pub fn restore_metadata(
        &mut self,
        vault: &str,
        arn: &str,
        place: &Place<'_>,
        now: Millis,
    ) -> Result<(RecoveryPointRecord, BTreeMap<String, String>), ApiError> {
        self.advance(now);
        let point = self.point_in_vault(vault, arn, place, now)?;
        let metadata = self.instance_metadata(&point.resource_arn);
        Ok((point, metadata))
    }

    /// The configuration an instance was backed up with (what a restore of it gets back):
    /// stable made-up values from its ARN, then what `/_sandbox/restore-metadata` set.
    pub(super) fn instance_metadata(&self, instance_arn: &str) -> BTreeMap<String, String> {
        let h = instance_arn
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let subnet = format!("subnet-{:017x}", h >> 4);
        let group = format!("sg-{:017x}", h.rotate_left(17) >> 4);
        let region = instance_arn.split(':').nth(3).unwrap_or_default();
        let mut m = BTreeMap::from([
            ("InstanceType".to_string(), "t3.micro".to_string()),
            ("SubnetId".to_string(), subnet.clone()),
            ("SecurityGroupIds".to_string(), format!("[\"{group}\"]")),
            ("IamInstanceProfileName".to_string(), "orchestrator-app".to_string()),
            ("RequireIMDSv2".to_string(), "true".to_string()),
            ("DisableApiTermination".to_string(), "false".to_string()),
            ("KeyName".to_string(), "ops".to_string()),
            ("EbsOptimized".to_string(), "true".to_string()),
            ("InstanceInitiatedShutdownBehavior".to_string(), "stop".to_string()),
            (
                "Placement".to_string(),
                format!("{{\"AvailabilityZone\":\"{region}a\",\"Tenancy\":\"default\"}}"),
            ),
            (
                "NetworkInterfaces".to_string(),
                format!(
                    "[{{\"DeviceIndex\":0,\"SubnetId\":\"{subnet}\",\"Groups\":[\"{group}\"],\"DeleteOnTermination\":true}}]"
                ),
            ),
            (
                "BlockDeviceMappings".to_string(),
                "[{\"DeviceName\":\"/dev/xvda\",\"Ebs\":{\"VolumeSize\":8,\"VolumeType\":\"gp3\",\"DeleteOnTermination\":false,\"Encrypted\":false}}]"
                    .to_string(),
            ),
            (
                "CpuOptions".to_string(),
                "{\"CoreCount\":1,\"ThreadsPerCore\":2}".to_string(),
            ),
        ]);
        if let Some(set) = self.metadata_overrides.get(instance_arn) {
            for (k, v) in set {
                if v.is_empty() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        m
    }

    /// Sets (merges; an empty value removes) the metadata restores of `instance_arn` get.
    pub fn set_restore_metadata(&mut self, instance_arn: &str, metadata: BTreeMap<String, String>) {
        self.metadata_overrides
            .entry(instance_arn.to_string())
            .or_default()
            .extend(metadata);
    }
}

/// A newest-first page of `found` (oldest first) by offset tokens `p{n}`.
fn page_of(
    mut found: Vec<RecoveryPointRecord>,
    listing: &Listing,
) -> Result<(Vec<RecoveryPointRecord>, Option<String>), ApiError> {
    found.sort_by_key(|p| std::cmp::Reverse(p.creation_date));
    let from = match &listing.token {
        None => 0,
        Some(t) => t
            .strip_prefix('p')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::new("InvalidParameterValueException", "Invalid NextToken"))?,
    };
    let rest: Vec<RecoveryPointRecord> = found.into_iter().skip(from).collect();
    let next = (rest.len() > listing.max).then(|| format!("p{}", from + listing.max));
    Ok((rest.into_iter().take(listing.max).collect(), next))
}
