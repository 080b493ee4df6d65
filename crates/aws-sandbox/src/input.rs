//! The execution input as the modelled state machine reads it (its `$.X` paths and defaults).
//!
//! Pure, and below both [`super::world`] (which starts the machine's tasks) and
//! [`super::history`] (which writes its events): neither needs the other to read an input.

use serde_json::Value;

use super::basics::looks_like_arn;

/// The vault the modelled state machine passes when the input names none.
pub(crate) const DEFAULT_VAULT: &str = "Default";

/// The members of an execution input the modelled state machine reads.
#[derive(Debug, Clone)]
pub(crate) struct TaskInput<'a> {
    /// The ResourceArn, or what is wrong with it.
    pub resource_arn: Result<&'a str, String>,
    pub vault: &'a str,
    pub role: Option<&'a str>,
    pub start_window_minutes: Option<u64>,
    pub complete_window_minutes: Option<u64>,
    pub delete_after_days: Option<u64>,
    pub backup_options: Option<&'a Value>,
}

impl<'a> TaskInput<'a> {
    /// Reads the members; anything missing takes the state machine's default.
    pub fn read(input: &'a Value) -> Self {
        let text = |member: &str| input.get(member).and_then(Value::as_str);
        let number = |member: &str| input.get(member).and_then(Value::as_u64);
        let resource_arn = match input.get("ResourceArn") {
            None | Some(Value::Null) => Err(
                "The JsonPath argument for the field '$.ResourceArn' could not be found"
                    .to_string(),
            ),
            Some(Value::String(arn)) if looks_like_arn(arn) => Ok(arn.as_str()),
            Some(other) => Err(format!(
                "The value {other} of '$.ResourceArn' is not an ARN"
            )),
        };
        Self {
            resource_arn,
            vault: text("BackupVaultName").unwrap_or(DEFAULT_VAULT),
            role: text("IamRoleArn"),
            start_window_minutes: number("StartWindowMinutes"),
            complete_window_minutes: number("CompleteWindowMinutes"),
            delete_after_days: number("DeleteAfterDays"),
            backup_options: input.get("BackupOptions"),
        }
    }
}
