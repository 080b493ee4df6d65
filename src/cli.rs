//! The command line: one command, one file. This file only dispatches.
//!
//! - [`args`]: the clap structs of every command, exit codes, config loading and log set-up;
//! - `orchestrator [--config FILE]`: [`run`], the daemon;
//! - [`check`], [`next`], [`status`], [`run_now`], [`restore`], [`demo`] (and [`demo_replicas`]): the
//!   subcommands of their names;
//! - [`generate`]: man pages and shell completions for packages.

mod args;
mod check;
mod demo;
mod demo_replicas;
mod demo_summary;
mod generate;
mod next;
mod out;
mod restore;
mod run;
mod run_now;
mod status;

pub use args::{Cli, EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE};
pub use demo::{demo_instances, demo_sandbox_config};
pub use demo_summary::{Records, Row, rows};
pub use run_now::run_now_with;

use args::{Command, init_logs};

/// Runs the command line; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let args = cli.run.clone();
    match cli.command {
        None => run::run(&args).await,
        Some(Command::Check { resolve }) => check::run(&args, resolve).await,
        Some(Command::Next {
            count,
            from,
            target,
            resolve,
        }) => next::run(&args, count, from.as_deref(), target.as_deref(), resolve).await,
        Some(Command::Status { json, margin }) => status::run(&args, json, margin).await,
        Some(Command::RunNow { targets }) => run_now::run(&args, &targets).await,
        Some(Command::Restore(r)) => restore::run(&args, &r).await,
        Some(Command::Demo {
            seconds,
            replicas: 1,
            verbose,
            endpoint,
        }) => {
            let opts = demo::DemoOptions {
                seconds,
                verbose,
                endpoint,
            };
            demo::run(&args, opts).await
        }
        Some(Command::Demo {
            seconds, replicas, ..
        }) => demo_replicas::replicas(usize::from(replicas), seconds).await,
        Some(Command::Sandbox(serve)) => {
            init_logs(&args, None);
            aws_sandbox::serve::serve_until_interrupted(&serve).await
        }
        Some(Command::Healthcheck { addr }) => {
            if crate::http::probe(addr).await {
                0
            } else {
                EXIT_FAILURE
            }
        }
        Some(Command::Generate { out_dir }) => generate::run(&out_dir),
    }
}
