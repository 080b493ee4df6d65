//! `orchestrator`: parse the command line, run it, exit with its code.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = backup_orchestrator::cli::Cli::parse();
    let code = backup_orchestrator::cli::main(cli).await;
    std::process::exit(code);
}

/// jemalloc instead of glibc's malloc: measured on a 10,000-target same-second burst (BENCHMARKS.md),
/// 26 % less time from the slot to the last StartExecution (the AWS SDK's request pipeline
/// allocates a lot, and glibc's arena locks made the two workers wait on each other), and its
/// background thread gives freed memory back to the system after a burst.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
