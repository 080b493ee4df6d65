//! `aws-sandbox`: the local AWS-compatible endpoint on its own (`cargo run -p aws-sandbox`).

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A local Step Functions + AWS Backup endpoint for tests, demos and the AWS CLI.
#[derive(Debug, Parser)]
#[command(name = "aws-sandbox", version, about)]
struct Cli {
    #[command(flatten)]
    serve: aws_sandbox::serve::ServeArgs,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(aws_sandbox::serve::serve_until_interrupted(&cli.serve).await);
}
