//! In-memory [`StepFunctions`] and [`BackupJobs`] for unit tests: scripted states, injected errors,
//! counted calls. End-to-end tests use the real SDK against the `aws-sandbox` crate instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::Utc;

use super::{
    ApiError, BackupJobs, CopyJobDetail, CopyJobFilter, ErrorKind, ExecutionDetail,
    ExecutionStatus, ExecutionSummary, HistoryEvent, JobDetail, JobFilter, Page, StartRequest,
    Started, StepFunctions,
};
use crate::arn::StateMachineArn;

/// A scripted AWS.
#[derive(Default)]
pub struct FakeAws {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    executions: HashMap<String, ExecutionDetail>,
    history: HashMap<String, Vec<HistoryEvent>>,
    jobs: HashMap<String, JobDetail>,
    copy_jobs: HashMap<String, CopyJobDetail>,
    errors: HashMap<&'static str, VecDeque<ApiError>>,
    calls: HashMap<&'static str, usize>,
    /// ListBackupJobs rows a page (None: everything in one page).
    job_page: Option<usize>,
}

impl FakeAws {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    fn call(&self, op: &'static str) -> Result<std::sync::MutexGuard<'_, State>, ApiError> {
        let mut s = self.state.lock().expect("fake lock");
        *s.calls.entry(op).or_default() += 1;
        if let Some(e) = s.errors.get_mut(op).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        Ok(s)
    }

    /// The next call of `op` fails with `kind`.
    pub fn fail_next(&self, op: &'static str, kind: ErrorKind) {
        let mut s = self.state.lock().expect("fake lock");
        s.errors.entry(op).or_default().push_back(ApiError {
            operation: op,
            kind,
            code: Some(format!("{kind:?}")),
            message: "injected".into(),
            request_id: Some("fake-request".into()),
        });
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: &str) -> usize {
        let s = self.state.lock().expect("fake lock");
        s.calls.get(op).copied().unwrap_or(0)
    }

    /// Every execution started so far, by name.
    pub fn execution_names(&self) -> Vec<String> {
        let s = self.state.lock().expect("fake lock");
        let mut v: Vec<String> = s.executions.values().map(|e| e.name.clone()).collect();
        v.sort();
        v
    }

    /// Ends an execution: `output` on success, `(error, cause)` otherwise.
    pub fn finish_execution(
        &self,
        arn: &str,
        status: ExecutionStatus,
        output: Option<&str>,
        error: Option<(&str, &str)>,
    ) {
        let mut s = self.state.lock().expect("fake lock");
        let e = s.executions.get_mut(arn).expect("known execution");
        e.status = status;
        e.output = output.map(str::to_string);
        e.error = error.map(|(e, _)| e.to_string());
        e.cause = error.map(|(_, c)| c.to_string());
        e.stop_date = Some(Utc::now());
    }

    /// Appends a history event to a running execution.
    pub fn push_history(&self, arn: &str, event: HistoryEvent) {
        let mut s = self.state.lock().expect("fake lock");
        s.history.entry(arn.to_string()).or_default().push(event);
    }

    /// ListBackupJobs answers `n` rows a page, newest first, with a next token.
    pub fn page_jobs(&self, n: usize) {
        self.state.lock().expect("fake lock").job_page = Some(n.max(1));
    }

    /// Creates or replaces a backup job.
    pub fn set_job(&self, job: JobDetail) {
        let mut s = self.state.lock().expect("fake lock");
        s.jobs.insert(job.job_id.clone(), job);
    }

    /// Creates or replaces a copy job.
    pub fn set_copy_job(&self, job: CopyJobDetail) {
        let mut s = self.state.lock().expect("fake lock");
        s.copy_jobs.insert(job.copy_job_id.clone(), job);
    }
}

impl StepFunctions for FakeAws {
    async fn start_execution(&self, req: &StartRequest) -> Result<Started, ApiError> {
        let mut s = self.call("StartExecution")?;
        let arn = req.state_machine.execution_arn(&req.name);
        if let Some(e) = s.executions.get(&arn) {
            if e.status == ExecutionStatus::Running && e.input.as_deref() == Some(&req.input) {
                return Ok(Started {
                    execution_arn: arn,
                    start_date: e.start_date,
                });
            }
            return Err(ApiError::from_code(
                "StartExecution",
                Some("ExecutionAlreadyExists"),
                Some(400),
                format!("Execution Already Exists: '{arn}'"),
                Some("fake-request".into()),
            ));
        }
        let start_date = Utc::now();
        s.executions.insert(
            arn.clone(),
            ExecutionDetail {
                execution_arn: arn.clone(),
                name: req.name.clone(),
                status: ExecutionStatus::Running,
                input: Some(req.input.clone()),
                output: None,
                error: None,
                cause: None,
                start_date,
                stop_date: None,
            },
        );
        Ok(Started {
            execution_arn: arn,
            start_date,
        })
    }

    async fn describe_execution(&self, execution_arn: &str) -> Result<ExecutionDetail, ApiError> {
        let s = self.call("DescribeExecution")?;
        s.executions.get(execution_arn).cloned().ok_or_else(|| {
            ApiError::from_code(
                "DescribeExecution",
                Some("ExecutionDoesNotExist"),
                Some(400),
                execution_arn.to_string(),
                None,
            )
        })
    }

    async fn list_executions(
        &self,
        state_machine: &StateMachineArn,
        status: Option<ExecutionStatus>,
        _next_token: Option<String>,
    ) -> Result<Page<ExecutionSummary>, ApiError> {
        let s = self.call("ListExecutions")?;
        let prefix = state_machine.execution_arn("");
        let mut items: Vec<ExecutionSummary> = s
            .executions
            .values()
            .filter(|e| e.execution_arn.starts_with(&prefix))
            .filter(|e| status.as_ref().is_none_or(|st| *st == e.status))
            .map(|e| ExecutionSummary {
                execution_arn: e.execution_arn.clone(),
                name: e.name.clone(),
                status: e.status.clone(),
                start_date: e.start_date,
            })
            .collect();
        items.sort_by_key(|e| std::cmp::Reverse(e.start_date));
        Ok(Page {
            items,
            next_token: None,
        })
    }

    async fn execution_history(
        &self,
        execution_arn: &str,
        _next_token: Option<String>,
    ) -> Result<Page<HistoryEvent>, ApiError> {
        let s = self.call("GetExecutionHistory")?;
        Ok(Page {
            items: s.history.get(execution_arn).cloned().unwrap_or_default(),
            next_token: None,
        })
    }
}

impl BackupJobs for FakeAws {
    async fn describe_copy_job(
        &self,
        _region: &str,
        copy_job_id: &str,
    ) -> Result<CopyJobDetail, ApiError> {
        self.copy_job(copy_job_id)
    }

    async fn list_copy_jobs(
        &self,
        _region: &str,
        filter: &CopyJobFilter,
        _next_token: Option<String>,
    ) -> Result<Page<CopyJobDetail>, ApiError> {
        self.copy_jobs(filter)
    }

    async fn describe_backup_job(
        &self,
        _region: &str,
        job_id: &str,
    ) -> Result<JobDetail, ApiError> {
        let s = self.call("DescribeBackupJob")?;
        s.jobs.get(job_id).cloned().ok_or_else(|| {
            ApiError::from_code(
                "DescribeBackupJob",
                Some("ResourceNotFoundException"),
                Some(404),
                job_id.to_string(),
                None,
            )
        })
    }

    async fn list_backup_jobs(
        &self,
        _region: &str,
        filter: &JobFilter,
        next_token: Option<String>,
    ) -> Result<Page<JobDetail>, ApiError> {
        let s = self.call("ListBackupJobs")?;
        let mut items: Vec<JobDetail> = s
            .jobs
            .values()
            .filter(|j| {
                filter
                    .created_after
                    .is_none_or(|t| j.creation_date.is_none_or(|c| c > t))
            })
            .filter(|j| {
                filter
                    .resource_arn
                    .as_ref()
                    .is_none_or(|r| j.resource_arn.as_ref() == Some(r))
            })
            .cloned()
            .collect();
        let Some(size) = s.job_page else {
            return Ok(Page {
                items,
                next_token: None,
            });
        };
        items.sort_by(|a, b| (b.creation_date, &b.job_id).cmp(&(a.creation_date, &a.job_id)));
        let from: usize = next_token.and_then(|t| t.parse().ok()).unwrap_or(0);
        let rest = items.split_off(from.min(items.len()));
        let next_token = (rest.len() > size).then(|| (from + size).to_string());
        Ok(Page {
            items: rest.into_iter().take(size).collect(),
            next_token,
        })
    }
}

impl FakeAws {
    /// DescribeCopyJob (the trait method's body, apart for readability).
    fn copy_job(&self, id: &str) -> Result<CopyJobDetail, ApiError> {
        let s = self.call("DescribeCopyJob")?;
        s.copy_jobs.get(id).cloned().ok_or_else(|| {
            ApiError::from_code(
                "DescribeCopyJob",
                Some("ResourceNotFoundException"),
                Some(404),
                id.to_string(),
                None,
            )
        })
    }

    /// ListCopyJobs, everything in one page.
    fn copy_jobs(&self, filter: &CopyJobFilter) -> Result<Page<CopyJobDetail>, ApiError> {
        let s = self.call("ListCopyJobs")?;
        let items = s
            .copy_jobs
            .values()
            .filter(|j| {
                filter
                    .created_after
                    .is_none_or(|t| j.creation_date.is_none_or(|c| c > t))
                    && filter
                        .destination_vault_arn
                        .as_ref()
                        .is_none_or(|d| j.destination_vault_arn.as_ref() == Some(d))
                    && filter
                        .state
                        .as_deref()
                        .is_none_or(|st| j.state.as_str() == st)
            })
            .cloned()
            .collect();
        Ok(Page {
            items,
            next_token: None,
        })
    }
}

/// An in-memory lease table with the DynamoDB conditions; [`FakeLeaseTable::handle`] gives each
/// replica its own view of the same items, so one replica alone can lose the table.
#[derive(Default)]
pub struct FakeLeaseTable {
    items: std::sync::Arc<Mutex<HashMap<String, super::LeaseRecord>>>,
    unreachable: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
}

impl FakeLeaseTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another client of the same items, with its own fault switch and call count.
    pub fn handle(&self) -> Self {
        FakeLeaseTable {
            items: self.items.clone(),
            ..Default::default()
        }
    }

    /// From now on every call of this handle fails as unreachable (or works again).
    pub fn set_unreachable(&self, on: bool) {
        self.unreachable
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Calls made through this handle.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The item of `lease`, if any.
    pub fn item(&self, lease: &str) -> Option<super::LeaseRecord> {
        self.items.lock().expect("fake lock").get(lease).cloned()
    }

    fn enter(&self, op: &'static str) -> Result<(), ApiError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.unreachable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError {
                operation: op,
                kind: ErrorKind::Transient,
                code: None,
                message: "dispatch failure: connection refused".into(),
                request_id: None,
            });
        }
        Ok(())
    }
}

impl super::LeaseTable for FakeLeaseTable {
    async fn claim(
        &self,
        lease: &str,
        owner: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<super::Claim, ApiError> {
        self.enter("PutItem")?;
        let mut items = self.items.lock().expect("fake lock");
        let previous = items.get(lease).cloned();
        // attribute_not_exists(pk) OR expires_at < :now OR owner = :me
        let free = previous
            .as_ref()
            .is_none_or(|p| p.expires_at_ms < now_ms || p.owner == owner);
        if !free {
            return Ok(super::Claim::HeldByOther { holder: previous });
        }
        items.insert(
            lease.to_string(),
            super::LeaseRecord {
                owner: owner.to_string(),
                expires_at_ms,
            },
        );
        Ok(super::Claim::Won { previous })
    }

    async fn release(&self, lease: &str, owner: &str) -> Result<(), ApiError> {
        self.enter("DeleteItem")?;
        let mut items = self.items.lock().expect("fake lock");
        if items.get(lease).is_some_and(|p| p.owner == owner) {
            items.remove(lease);
        }
        Ok(())
    }
}

/// In-memory [`super::TagSearch`]: resources with tags, the TagFilters' AND semantics, and a
/// switch that makes every call fail.
#[derive(Default)]
pub struct FakeTagSearch {
    resources: Mutex<Vec<super::TaggedResource>>,
    failing: Mutex<Option<ErrorKind>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl FakeTagSearch {
    /// No resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces (by ARN) a resource with its tags.
    pub fn put(&self, arn: &str, tags: &[(&str, &str)]) {
        let mut r = self.resources.lock().expect("fake lock");
        r.retain(|x| x.arn != arn);
        r.push(super::TaggedResource {
            arn: arn.to_string(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    /// Removes a resource.
    pub fn remove(&self, arn: &str) {
        self.resources
            .lock()
            .expect("fake lock")
            .retain(|x| x.arn != arn);
    }

    /// From now on every call fails with `kind` (None: works again).
    pub fn fail(&self, kind: Option<ErrorKind>) {
        *self.failing.lock().expect("fake lock") = kind;
    }

    /// Calls made.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl super::TagSearch for FakeTagSearch {
    async fn find(&self, query: &super::TagQuery) -> Result<super::Found, ApiError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(kind) = *self.failing.lock().expect("fake lock") {
            return Err(ApiError {
                operation: "GetResources",
                kind,
                code: Some(format!("{kind:?}")),
                message: "injected".into(),
                request_id: None,
            });
        }
        let resources = self
            .resources
            .lock()
            .expect("fake lock")
            .iter()
            .filter(|r| {
                query.tag_filters.iter().all(|(k, values)| {
                    r.tags
                        .iter()
                        .any(|(tk, tv)| tk == k && (values.is_empty() || values.contains(tv)))
                })
            })
            .cloned()
            .collect();
        Ok(super::Found {
            resources,
            calls: 1,
        })
    }
}
