//! [`StepFunctions`] with aws-sdk-sfn: one client per region, made on first use.

use std::sync::Arc;

use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::Region;
use aws_sdk_sfn::types::ExecutionStatus as SdkStatus;
use aws_types::SdkConfig;
use chrono::{DateTime, Utc};

use super::sdk_error::classify;
use super::{
    ApiError, ExecutionDetail, ExecutionStatus, ExecutionSummary, HistoryEvent, Page,
    RegionalClients, StartRequest, Started, StepFunctions, region_of_arn,
};
use crate::arn::StateMachineArn;

/// Step Functions through the AWS SDK.
#[derive(Clone)]
pub struct SdkStepFunctions {
    clients: Arc<RegionalClients<Client>>,
}

/// Largest page ListExecutions / GetExecutionHistory return.
const MAX_PAGE: i32 = 1000;

impl SdkStepFunctions {
    /// Uses `base` (credentials, endpoint, timeouts) with each call's region.
    pub fn new(base: SdkConfig) -> Self {
        let make = |base: &SdkConfig, region: &str| {
            Client::from_conf(
                aws_sdk_sfn::config::Builder::from(base)
                    .region(Region::new(region.to_string()))
                    .build(),
            )
        };
        SdkStepFunctions {
            clients: Arc::new(RegionalClients::new(base, make)),
        }
    }

    fn client(&self, region: &str) -> Client {
        self.clients.get(region)
    }

    fn client_for_arn(&self, arn: &str) -> Client {
        let region = region_of_arn(arn)
            .map(str::to_string)
            .or_else(|| self.clients.default_region())
            .unwrap_or_else(|| "us-east-1".to_string());
        self.client(&region)
    }
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

fn status(s: &SdkStatus) -> ExecutionStatus {
    ExecutionStatus::parse(s.as_str())
}

impl StepFunctions for SdkStepFunctions {
    async fn start_execution(&self, req: &StartRequest) -> Result<Started, ApiError> {
        let out = self
            .client(&req.state_machine.region)
            .start_execution()
            .state_machine_arn(req.state_machine.as_str())
            .name(&req.name)
            .input(&req.input)
            .send()
            .await
            .map_err(|e| classify("StartExecution", e))?;
        Ok(Started {
            execution_arn: out.execution_arn().to_string(),
            start_date: to_chrono(out.start_date()),
        })
    }

    async fn describe_execution(&self, execution_arn: &str) -> Result<ExecutionDetail, ApiError> {
        let out = self
            .client_for_arn(execution_arn)
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| classify("DescribeExecution", e))?;
        Ok(ExecutionDetail {
            execution_arn: out.execution_arn().to_string(),
            name: out.name().unwrap_or_default().to_string(),
            status: status(out.status()),
            input: out.input().map(str::to_string),
            output: out.output().map(str::to_string),
            error: out.error().map(str::to_string),
            cause: out.cause().map(str::to_string),
            start_date: to_chrono(out.start_date()),
            stop_date: out.stop_date().map(to_chrono),
        })
    }

    async fn list_executions(
        &self,
        state_machine: &StateMachineArn,
        status_filter: Option<ExecutionStatus>,
        next_token: Option<String>,
    ) -> Result<Page<ExecutionSummary>, ApiError> {
        let out = self
            .client(&state_machine.region)
            .list_executions()
            .state_machine_arn(state_machine.as_str())
            .set_status_filter(status_filter.map(|s| SdkStatus::from(s.as_str())))
            .max_results(MAX_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify("ListExecutions", e))?;
        Ok(Page {
            items: out
                .executions()
                .iter()
                .map(|e| ExecutionSummary {
                    execution_arn: e.execution_arn().to_string(),
                    name: e.name().to_string(),
                    status: status(e.status()),
                    start_date: to_chrono(e.start_date()),
                })
                .collect(),
            next_token: out.next_token().map(str::to_string),
        })
    }

    async fn execution_history(
        &self,
        execution_arn: &str,
        next_token: Option<String>,
    ) -> Result<Page<HistoryEvent>, ApiError> {
        let out = self
            .client_for_arn(execution_arn)
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(MAX_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify("GetExecutionHistory", e))?;
        Ok(Page {
            items: out
                .events()
                .iter()
                .map(|e| {
                    let task = e.task_succeeded_event_details();
                    let failed = e.task_failed_event_details();
                    let state_name = e
                        .state_entered_event_details()
                        .map(|d| d.name().to_string())
                        .or_else(|| e.state_exited_event_details().map(|d| d.name().to_string()));
                    HistoryEvent {
                        kind: e.r#type().as_str().to_string(),
                        resource: task
                            .map(|t| t.resource().to_string())
                            .or_else(|| failed.map(|t| t.resource().to_string())),
                        output: task.and_then(|t| t.output()).map(str::to_string),
                        timestamp: DateTime::from_timestamp_millis(
                            e.timestamp().to_millis().unwrap_or(0),
                        ),
                        state_name,
                        error: failed.and_then(|t| t.error()).map(str::to_string),
                    }
                })
                .collect(),
            next_token: out.next_token().map(str::to_string),
        })
    }
}
