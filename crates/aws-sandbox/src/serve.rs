//! Serving the sandbox from a command line: `aws-sandbox` (this crate's binary) and
//! `orchestrator sandbox` take the same arguments.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::{Sandbox, SandboxConfig};

/// Exit code when the address cannot be bound.
const EXIT_FAILURE: i32 = 1;

/// The command-line knobs of a served sandbox.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4566")]
    pub listen: SocketAddr,
    /// Seconds a job stays CREATED.
    #[arg(long, default_value_t = 1.0)]
    pub job_pending: f64,
    /// Seconds a job stays RUNNING.
    #[arg(long, default_value_t = 3.0)]
    pub job_running: f64,
    /// Resource ARNs (or parts of them) whose jobs fail.
    #[arg(long)]
    pub fail_resource: Vec<String>,
    /// Seconds a copy job stays CREATED.
    #[arg(long, default_value_t = 1.0)]
    pub copy_pending: f64,
    /// Seconds a copy job stays RUNNING.
    #[arg(long, default_value_t = 3.0)]
    pub copy_running: f64,
    /// Seconds between the modelled machine's job polls when a post hook waits for the job's
    /// end (`PostHookWhen = completed`; 300 in the template).
    #[arg(long, default_value_t = 300.0)]
    pub machine_poll: f64,
    /// Stack parameter MinRetentionDays: shorter DeleteAfterDays are refused.
    #[arg(long, default_value_t = 7)]
    pub min_retention_days: u64,
    /// Stack parameter MaxRetentionDays.
    #[arg(long, default_value_t = 36_500)]
    pub max_retention_days: u64,
    /// Seconds between the restore machine's restore job polls (60 in the template).
    #[arg(long, default_value_t = 60.0)]
    pub restore_job_poll: f64,
    /// Seconds between the restore machine's instance status polls (15 in the template).
    #[arg(long, default_value_t = 15.0)]
    pub restore_instance_poll: f64,
}

impl ServeArgs {
    /// The sandbox these arguments describe.
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            job_pending: Duration::from_secs_f64(self.job_pending),
            job_running: Duration::from_secs_f64(self.job_running),
            fail_resources: self.fail_resource.clone(),
            copy_pending: Duration::from_secs_f64(self.copy_pending),
            copy_running: Duration::from_secs_f64(self.copy_running),
            hooks: super::HookSettings {
                end_poll: Duration::from_secs_f64(self.machine_poll),
                ..super::HookSettings::default()
            },
            stack: super::StackParameters {
                min_retention_days: self.min_retention_days,
                max_retention_days: self.max_retention_days,
                ..super::StackParameters::default()
            },
            restore: super::RestoreSettings {
                job_poll: Duration::from_secs_f64(self.restore_job_poll),
                instance_poll: Duration::from_secs_f64(self.restore_instance_poll),
                ..super::RestoreSettings::default()
            },
            ..SandboxConfig::default()
        }
    }
}

/// Serves until Ctrl-C (SIGINT); prints `sandbox listening on URL` once it accepts connections.
/// Returns the process exit code.
pub async fn serve_until_interrupted(args: &ServeArgs) -> i32 {
    match Sandbox::start(args.listen, args.config()).await {
        Ok(sb) => {
            println!("sandbox listening on {}", sb.endpoint_url());
            let _ = tokio::signal::ctrl_c().await;
            sb.shutdown().await;
            0
        }
        Err(e) => {
            eprintln!("sandbox: cannot listen on {}: {e}", args.listen);
            EXIT_FAILURE
        }
    }
}
