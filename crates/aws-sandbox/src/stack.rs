//! The stack parameters the modelled machines were deployed with
//! (`deploy/cloudformation/orchestrator.yaml`): the vault, the retention bounds, the pinned hook
//! document version, the defaults a hand-started execution gets, the copy destinations and the
//! restore switches. Defaults are the template's defaults.

/// The stack parameters the modelled machines check their input against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackParameters {
    /// `BackupVaultName`: the vault backups go to and the only one copies and restores read.
    pub backup_vault_name: String,
    /// `MinRetentionDays`: the shortest `DeleteAfterDays` of a backup or a copy.
    pub min_retention_days: u64,
    /// `MaxRetentionDays`: the longest.
    pub max_retention_days: u64,
    /// `HookDocumentVersion`: the only document version an input may name (and the one sent).
    pub hook_document_version: String,
    /// `DefaultStartWindowMinutes`, for an execution started by hand without one.
    pub default_start_window_minutes: u64,
    /// `DefaultCompleteWindowMinutes`, likewise.
    pub default_complete_window_minutes: u64,
    /// `DefaultDeleteAfterDays`, likewise.
    pub default_delete_after_days: u64,
    /// `CopyDestinationVaultArns` (a trailing `*` matches any rest). `None`: every destination
    /// passes the machine's check (the sandbox's default; the copy rules still refuse some).
    pub copy_destination_vault_arns: Option<Vec<String>>,
    /// `CommandTimeoutSeconds`: `executionTimeout` of a raw command.
    pub command_timeout_seconds: u64,
    /// `AllowInstanceProfileRestore`: whether a restore may keep the original instance profile.
    pub allow_instance_profile_restore: bool,
}

impl Default for StackParameters {
    fn default() -> Self {
        Self {
            backup_vault_name: "orchestrator".to_string(),
            min_retention_days: 7,
            max_retention_days: 36_500,
            hook_document_version: "$DEFAULT".to_string(),
            default_start_window_minutes: 60,
            default_complete_window_minutes: 10_080,
            default_delete_after_days: 35,
            copy_destination_vault_arns: None,
            command_timeout_seconds: 600,
            allow_instance_profile_restore: false,
        }
    }
}

impl StackParameters {
    /// True when the stack lets the machine copy into `vault_arn`.
    pub(crate) fn copy_destination_allowed(&self, vault_arn: &str) -> bool {
        self.copy_destination_vault_arns
            .as_ref()
            .is_none_or(|list| {
                list.iter().any(|p| {
                    p == vault_arn
                        || (p.len() > 1
                            && p.ends_with('*')
                            && vault_arn.starts_with(&p[..p.len() - 1]))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_destinations_match_exactly_or_by_a_trailing_star() {
        let mut s = StackParameters::default();
        assert!(s.copy_destination_allowed("arn:aws:backup:us-west-2:1:backup-vault:x"));
        s.copy_destination_vault_arns = Some(vec![
            "arn:aws:backup:us-west-2:210987654321:backup-vault:*".into(),
        ]);
        assert!(
            s.copy_destination_allowed("arn:aws:backup:us-west-2:210987654321:backup-vault:dr")
        );
        assert!(
            !s.copy_destination_allowed("arn:aws:backup:eu-west-1:210987654321:backup-vault:dr")
        );
    }
}
