//! The AWS boundary: narrow traits with our own request, response and error types.
//!
//! The scheduler, launcher and tracker are generic over [`StepFunctions`] and [`BackupJobs`];
//! [`sfn`] and [`backup`] implement them with the AWS SDK (one file per service; [`dynamodb`] the
//! leader lease's [`LeaseTable`]; [`tagging`] the tag selections' [`TagSearch`]), and
//! [`fake`] in memory for unit tests. No SDK type crosses this line.

pub mod backup;
pub mod dynamodb;
pub mod fake;
mod sdk_error;
pub mod sfn;
pub mod tagging;

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::arn::StateMachineArn;

/// What kind of failure an AWS call met; callers branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Over the API quota: retry later.
    Throttled,
    /// An execution of that name exists already (closed, or with other input).
    AlreadyExists,
    /// The state machine, execution or job does not exist.
    NotFound,
    /// Credentials or IAM said no.
    AccessDenied,
    /// The request was malformed (name, ARN, input).
    Invalid,
    /// 5xx, a timeout, a refused or dropped connection: retry later.
    Transient,
    /// Anything else the service said.
    Other,
}

impl ErrorKind {
    /// Stable lower-case name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Transient => "transient",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ApiError {
    /// The operation, e.g. `StartExecution`.
    pub operation: &'static str,
    /// The class of failure.
    pub kind: ErrorKind,
    /// The service's error code, e.g. `ThrottlingException`, when it answered.
    pub code: Option<String>,
    /// The service's (or the transport's) message.
    pub message: String,
    /// The AWS request id, when the service answered.
    pub request_id: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl ApiError {
    /// True when the same call may succeed later: throttling and transient faults.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throttled | ErrorKind::Transient)
    }

    /// Classifies a service error code (and HTTP status) the way both services use them.
    pub fn from_code(
        operation: &'static str,
        code: Option<&str>,
        status: Option<u16>,
        message: String,
        request_id: Option<String>,
    ) -> ApiError {
        let kind = match code {
            Some(
                "ThrottlingException"
                | "ThrottledException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
                | "ProvisionedThroughputExceededException",
            ) => ErrorKind::Throttled,
            Some("ExecutionAlreadyExists") => ErrorKind::AlreadyExists,
            Some(
                "ExecutionDoesNotExist" | "StateMachineDoesNotExist" | "ResourceNotFoundException",
            ) => ErrorKind::NotFound,
            Some(
                "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "MissingAuthenticationToken",
            ) => ErrorKind::AccessDenied,
            Some(
                "ValidationException"
                | "InvalidName"
                | "InvalidArn"
                | "InvalidExecutionInput"
                | "InvalidParameterValueException"
                | "MissingParameterValueException"
                | "StateMachineDeleting"
                | "InvalidToken"
                | "InvalidParameterException"
                | "PaginationTokenExpiredException",
            ) => ErrorKind::Invalid,
            Some(
                "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "InternalFailure"
                | "InternalServerError"
                | "InternalServiceException"
                | "ServiceException",
            ) => ErrorKind::Transient,
            _ => match status {
                Some(s) if s >= 500 => ErrorKind::Transient,
                Some(429) => ErrorKind::Throttled,
                Some(403) => ErrorKind::AccessDenied,
                Some(404) => ErrorKind::NotFound,
                _ => ErrorKind::Other,
            },
        };
        ApiError {
            operation,
            kind,
            code: code.map(str::to_string),
            message,
            request_id,
        }
    }

    /// A failure to reach the service at all (connection, timeout).
    pub fn transport(operation: &'static str, message: String) -> ApiError {
        ApiError {
            operation,
            kind: ErrorKind::Transient,
            code: None,
            message,
            request_id: None,
        }
    }
}

/// StartExecution's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The machine.
    pub state_machine: StateMachineArn,
    /// The execution name (deterministic for scheduled slots).
    pub name: String,
    /// The JSON input.
    pub input: String,
}

/// StartExecution's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The execution's ARN.
    pub execution_arn: String,
    /// When Step Functions started it.
    pub start_date: DateTime<Utc>,
}

/// An execution's status, as Step Functions reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    /// Still running.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ran out of time.
    TimedOut,
    /// Stopped by someone.
    Aborted,
    /// Failed and waiting for a redrive.
    PendingRedrive,
    /// A status this code does not know.
    Other(String),
}

impl ExecutionStatus {
    /// Parses the API's upper-case status.
    pub fn parse(s: &str) -> ExecutionStatus {
        match s {
            "RUNNING" => ExecutionStatus::Running,
            "SUCCEEDED" => ExecutionStatus::Succeeded,
            "FAILED" => ExecutionStatus::Failed,
            "TIMED_OUT" => ExecutionStatus::TimedOut,
            "ABORTED" => ExecutionStatus::Aborted,
            "PENDING_REDRIVE" => ExecutionStatus::PendingRedrive,
            other => ExecutionStatus::Other(other.to_string()),
        }
    }

    /// The API's upper-case status.
    pub fn as_str(&self) -> &str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
            ExecutionStatus::PendingRedrive => "PENDING_REDRIVE",
            ExecutionStatus::Other(s) => s,
        }
    }
}

/// DescribeExecution's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionDetail {
    /// The execution's ARN.
    pub execution_arn: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// Its input JSON.
    pub input: Option<String>,
    /// Its output JSON, on SUCCEEDED.
    pub output: Option<String>,
    /// Error name, on FAILED/TIMED_OUT/ABORTED.
    pub error: Option<String>,
    /// Error cause.
    pub cause: Option<String>,
    /// When it started.
    pub start_date: DateTime<Utc>,
    /// When it stopped.
    pub stop_date: Option<DateTime<Utc>>,
}

/// One row of ListExecutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    /// The execution's ARN.
    pub execution_arn: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// When it started.
    pub start_date: DateTime<Utc>,
}

/// The history events the tracker reads (a task's result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    /// The event type, e.g. `TaskSucceeded`.
    pub kind: String,
    /// For task events: the integration resource, e.g. `startBackupJob`.
    pub resource: Option<String>,
    /// For TaskSucceeded: the task's output JSON.
    pub output: Option<String>,
    /// When it happened.
    pub timestamp: Option<DateTime<Utc>>,
    /// For state entered/exited events: the state's name.
    pub state_name: Option<String>,
    /// For TaskFailed: the error name.
    pub error: Option<String>,
}

/// One page of a paginated listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// The token for the next page, if any.
    pub next_token: Option<String>,
}

/// AWS Backup job states.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Created, not started (it may wait for its start window).
    Created,
    /// About to run.
    Pending,
    /// Running.
    Running,
    /// Being aborted.
    Aborting,
    /// Aborted (terminal).
    Aborted,
    /// Completed (terminal).
    Completed,
    /// Failed (terminal).
    Failed,
    /// Its start window passed (terminal).
    Expired,
    /// Partly completed (terminal).
    Partial,
    /// A state this code does not know (treated as not terminal).
    Other(String),
}

impl JobState {
    /// Parses the API's upper-case state.
    pub fn parse(s: &str) -> JobState {
        match s {
            "CREATED" => JobState::Created,
            "PENDING" => JobState::Pending,
            "RUNNING" => JobState::Running,
            "ABORTING" => JobState::Aborting,
            "ABORTED" => JobState::Aborted,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "EXPIRED" => JobState::Expired,
            "PARTIAL" => JobState::Partial,
            other => JobState::Other(other.to_string()),
        }
    }

    /// The API's upper-case state.
    pub fn as_str(&self) -> &str {
        match self {
            JobState::Created => "CREATED",
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Aborting => "ABORTING",
            JobState::Aborted => "ABORTED",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Expired => "EXPIRED",
            JobState::Partial => "PARTIAL",
            JobState::Other(s) => s,
        }
    }

    /// ABORTED, COMPLETED, FAILED, EXPIRED and PARTIAL end a job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Aborted
                | JobState::Completed
                | JobState::Failed
                | JobState::Expired
                | JobState::Partial
        )
    }
}

/// What DescribeBackupJob and ListBackupJobs tell about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDetail {
    /// The job id.
    pub job_id: String,
    /// The resource it backs up.
    pub resource_arn: Option<String>,
    /// Its state.
    pub state: JobState,
    /// Progress, 0-100.
    pub percent_done: Option<f64>,
    /// Backup size.
    pub backup_size_bytes: Option<i64>,
    /// Why it failed, if it did.
    pub status_message: Option<String>,
    /// The recovery point it made.
    pub recovery_point_arn: Option<String>,
    /// When it was created.
    pub creation_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub completion_date: Option<DateTime<Utc>>,
}

/// ListBackupJobs filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs created after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Only this resource.
    pub resource_arn: Option<String>,
    /// Only this state.
    pub state: Option<String>,
    /// Only this resource type (`EC2`).
    pub resource_type: Option<String>,
}

/// What DescribeCopyJob and ListCopyJobs tell about a copy job (states as [`JobState`]:
/// CREATED, RUNNING, COMPLETED, FAILED, PARTIAL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJobDetail {
    /// The copy job id.
    pub copy_job_id: String,
    /// Its state.
    pub state: JobState,
    /// Why it failed, if it did.
    pub status_message: Option<String>,
    /// The resource whose recovery point it copies.
    pub resource_arn: Option<String>,
    /// The recovery point it copies.
    pub source_recovery_point_arn: Option<String>,
    /// Where it copies to.
    pub destination_vault_arn: Option<String>,
    /// The copy, once made.
    pub destination_recovery_point_arn: Option<String>,
    /// When it was created.
    pub creation_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub completion_date: Option<DateTime<Utc>>,
}

/// ListCopyJobs filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyJobFilter {
    /// Only copy jobs created after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Only this destination vault.
    pub destination_vault_arn: Option<String>,
    /// Only this state.
    pub state: Option<String>,
}

/// The Step Functions calls the daemon makes.
pub trait StepFunctions: Send + Sync + 'static {
    /// StartExecution. `ExecutionAlreadyExists` is an [`ErrorKind::AlreadyExists`] error.
    fn start_execution(
        &self,
        req: &StartRequest,
    ) -> impl Future<Output = Result<Started, ApiError>> + Send;

    /// DescribeExecution.
    fn describe_execution(
        &self,
        execution_arn: &str,
    ) -> impl Future<Output = Result<ExecutionDetail, ApiError>> + Send;

    /// ListExecutions, newest first.
    fn list_executions(
        &self,
        state_machine: &StateMachineArn,
        status: Option<ExecutionStatus>,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<ExecutionSummary>, ApiError>> + Send;

    /// GetExecutionHistory, oldest first.
    fn execution_history(
        &self,
        execution_arn: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<HistoryEvent>, ApiError>> + Send;
}

/// The AWS Backup calls the daemon makes; `region` is where the job runs (its machine's).
pub trait BackupJobs: Send + Sync + 'static {
    /// DescribeBackupJob.
    fn describe_backup_job(
        &self,
        region: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<JobDetail, ApiError>> + Send;

    /// ListBackupJobs (one page).
    fn list_backup_jobs(
        &self,
        region: &str,
        filter: &JobFilter,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<JobDetail>, ApiError>> + Send;

    /// DescribeCopyJob (in the source region, where the copy was started).
    fn describe_copy_job(
        &self,
        region: &str,
        copy_job_id: &str,
    ) -> impl Future<Output = Result<CopyJobDetail, ApiError>> + Send;

    /// ListCopyJobs (one page).
    fn list_copy_jobs(
        &self,
        region: &str,
        filter: &CopyJobFilter,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<CopyJobDetail>, ApiError>> + Send;
}

/// One recovery point, as the listings return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// Its ARN (an AMI ARN for EC2).
    pub arn: String,
    /// The vault that holds it.
    pub vault_name: String,
    /// The instance it was taken of.
    pub resource_arn: String,
    /// `COMPLETED`, `PARTIAL`, `DELETING`, `EXPIRED`…
    pub status: String,
    /// When its backup was made.
    pub created: DateTime<Utc>,
}

/// The AWS Backup reads a restore makes; `region` is where the recovery points are.
pub trait RecoveryPoints: Send + Sync + 'static {
    /// Every recovery point of `resource_arn`: ListRecoveryPointsByResource over every page,
    /// or, with `vault`, ListRecoveryPointsByBackupVault of that vault filtered by the
    /// resource (a copy in another region or account).
    fn recovery_points(
        &self,
        region: &str,
        resource_arn: &str,
        vault: Option<&str>,
    ) -> impl Future<Output = Result<Vec<RecoveryPoint>, ApiError>> + Send;

    /// GetRecoveryPointRestoreMetadata.
    fn restore_metadata(
        &self,
        region: &str,
        vault_name: &str,
        recovery_point_arn: &str,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, String>, ApiError>> + Send;
}

/// A GetResources query: resources of these types in `region` whose tags match every filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagQuery {
    /// Where to look (the account is the caller's).
    pub region: String,
    /// `ResourceTypeFilters`, e.g. `ec2:instance`.
    pub resource_types: Vec<String>,
    /// `TagFilters`: (key, values); a resource matches a filter with any of its values, and
    /// every filter.
    pub tag_filters: Vec<(String, Vec<String>)>,
}

/// A resource GetResources returned, with all its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedResource {
    /// Its ARN.
    pub arn: String,
    /// Its tags, (key, value).
    pub tags: Vec<(String, String)>,
}

/// Every resource a query matched, and how many calls (pages) it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The resources, in the service's order.
    pub resources: Vec<TaggedResource>,
    /// GetResources calls made (one per page; the SDK's own retries not counted).
    pub calls: u32,
}

/// The Resource Groups Tagging API call the tag selections make.
pub trait TagSearch: Send + Sync + 'static {
    /// GetResources over every page.
    fn find(&self, query: &TagQuery) -> impl Future<Output = Result<Found, ApiError>> + Send;
}

/// One SDK client per region, made on first use from the shared settings.
pub(crate) struct RegionalClients<C> {
    base: aws_types::SdkConfig,
    make: fn(&aws_types::SdkConfig, &str) -> C,
    clients: std::sync::Mutex<std::collections::HashMap<String, C>>,
}

impl<C: Clone> RegionalClients<C> {
    /// `make` builds a client for a region from `base`.
    pub(crate) fn new(
        base: aws_types::SdkConfig,
        make: fn(&aws_types::SdkConfig, &str) -> C,
    ) -> Self {
        RegionalClients {
            base,
            make,
            clients: std::sync::Mutex::default(),
        }
    }

    /// The client for `region`.
    pub(crate) fn get(&self, region: &str) -> C {
        let mut clients = self.clients.lock().expect("client cache lock");
        clients
            .entry(region.to_string())
            .or_insert_with(|| (self.make)(&self.base, region))
            .clone()
    }

    /// The region of the shared settings, if any.
    pub(crate) fn default_region(&self) -> Option<String> {
        self.base.region().map(ToString::to_string)
    }
}

/// The region an execution ARN names (`arn:aws:states:REGION:…`).
pub fn region_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let k = |code: &str, status| {
            ApiError::from_code("Op", Some(code), status, String::new(), None).kind
        };
        assert_eq!(k("ThrottlingException", Some(400)), ErrorKind::Throttled);
        assert_eq!(
            k("ExecutionAlreadyExists", Some(400)),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            k("StateMachineDoesNotExist", Some(400)),
            ErrorKind::NotFound
        );
        assert_eq!(
            k("ResourceNotFoundException", Some(404)),
            ErrorKind::NotFound
        );
        assert_eq!(
            k("AccessDeniedException", Some(400)),
            ErrorKind::AccessDenied
        );
        assert_eq!(k("InvalidName", Some(400)), ErrorKind::Invalid);
        assert_eq!(k("Whatever", Some(503)), ErrorKind::Transient);
        assert_eq!(k("Whatever", Some(400)), ErrorKind::Other);
        let none = ApiError::from_code("Op", None, Some(502), String::new(), None);
        assert_eq!(none.kind, ErrorKind::Transient);
    }

    #[test]
    fn only_throttling_and_transient_faults_are_retried() {
        let e = |kind| ApiError {
            operation: "Op",
            kind,
            code: None,
            message: String::new(),
            request_id: None,
        };
        assert!(e(ErrorKind::Throttled).is_retryable());
        assert!(e(ErrorKind::Transient).is_retryable());
        for k in [
            ErrorKind::AlreadyExists,
            ErrorKind::NotFound,
            ErrorKind::AccessDenied,
            ErrorKind::Invalid,
            ErrorKind::Other,
        ] {
            assert!(!e(k).is_retryable(), "{k:?}");
        }
    }

    #[test]
    fn display_carries_code_and_request_id() {
        let e = ApiError::from_code(
            "StartExecution",
            Some("AccessDeniedException"),
            Some(400),
            "not allowed".into(),
            Some("req-1".into()),
        );
        assert_eq!(
            e.to_string(),
            "StartExecution: AccessDeniedException: not allowed (request id req-1)"
        );
    }

    #[test]
    fn terminal_job_states() {
        for s in ["ABORTED", "COMPLETED", "FAILED", "EXPIRED", "PARTIAL"] {
            assert!(JobState::parse(s).is_terminal(), "{s}");
            assert_eq!(JobState::parse(s).as_str(), s);
        }
        for s in ["CREATED", "PENDING", "RUNNING", "ABORTING", "NEW"] {
            assert!(!JobState::parse(s).is_terminal(), "{s}");
        }
    }
}

/// The lease item as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Who holds (or last held) it.
    pub owner: String,
    /// When it expires, by the clock of the replica that wrote it (epoch milliseconds).
    pub expires_at_ms: i64,
}

/// The answer to a claim: the lease is ours now, or someone else holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Written; `previous` is the item it replaced (none: the table had no lease).
    Won {
        /// The replaced item (another owner's expired lease, or our own renewed one).
        previous: Option<LeaseRecord>,
    },
    /// The condition failed: another owner holds an unexpired lease (when the table said who).
    HeldByOther {
        /// The holder, when the service returned the item.
        holder: Option<LeaseRecord>,
    },
}

/// A lease table (DynamoDB conditional writes): one item per lease name.
pub trait LeaseTable: Send + Sync + 'static {
    /// Writes `owner` with `expires_at_ms` if the item is absent, expired at `now_ms`, or ours.
    fn claim(
        &self,
        lease: &str,
        owner: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> impl Future<Output = Result<Claim, ApiError>> + Send;

    /// Deletes the item if `owner` holds it (on shutdown); not ours is no error.
    fn release(
        &self,
        lease: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}
