//! `orchestrator`: parse the command line, run it, exit with its code.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = backup_orchestrator::cli::Cli::parse();
    let code = backup_orchestrator::cli::main(cli).await;
    std::process::exit(code);
}
