//! Developer tasks: `cargo xtask demo` (the Quick start demo),
//! `cargo xtask test` (the whole test suite, with its setup) and
//! `cargo xtask compare` (a transmission timed next to a `psql` COPY pipe),
//! `cargo xtask bench` (benchmarks against the anchors) and
//! `cargo xtask scale` (load test with thousands of agents).

mod bench;
mod compare;
mod demo;
mod scale;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "transmissor developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local demo: throwaway PostgreSQL clusters, 3 synthetic municipalities,
    /// a collector, one transmission per municipality, the status table.
    Demo(demo::DemoArgs),
    /// Times one transmission of the visit table next to `psql COPY | psql COPY`
    /// between the same two servers (durable settings, median of --repeat runs).
    Compare(compare::CompareArgs),
    /// Benchmarks against the anchors (COPY pipes, postgres_fdw) in one run.
    Bench(bench::BenchArgs),
    /// Load test: N agent identities heartbeating and concurrent small
    /// transmissions against one collector process; prints RESULT lines.
    Scale(scale::ScaleArgs),
    /// Runs the whole test suite (installs PostgreSQL from Debian's packages when missing).
    Test {
        /// Extra arguments for the test runner (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Scale(args) => scale::run(args),
        Command::Test { args } => setup::run_tests(&args),
    }
}
