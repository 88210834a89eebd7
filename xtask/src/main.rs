//! Developer tasks: `cargo xtask demo` (the Quick start demo),
//! `cargo xtask test` (the whole test suite, with its setup) and
//! `cargo xtask compare` (a transmission timed next to a `psql` COPY pipe),
//! `cargo xtask bench` (benchmarks against the anchors),
//! `cargo xtask scale` (load test with thousands of agents and the national
//! layout at 5,570 municipalities) and
//! `cargo xtask fault` (a bounded campaign of crashes, restarts, network
//! cuts, a full and a corrupted spool, kills inside a commit and schema
//! changes, checked row for row) and
//! `cargo xtask fuzz` (every `cargo fuzz` target for a bounded time) and
//! `cargo xtask bench-incremental` (an upsert job's daily bytes against a
//! full snapshot's) and
//! `cargo xtask deb` (the agent's Debian package) and
//! `cargo xtask windows` (the Windows agent's zip, smoke-tested under Wine).

mod bench;
mod compare;
mod dashboard_bench;
mod deb;
mod demo;
mod fault;
mod fuzz;
mod incremental_bench;
mod scale;
mod setup;
mod windows;

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
    /// Load test against one collector process and a default-configured
    /// analytic PostgreSQL: N agent identities heartbeating with a burst of
    /// small transmissions; then every municipality's snapshot of two
    /// targets (bounded concurrency), analyst queries over all of them
    /// (count, filters, join: timings and locks) and one municipality's
    /// 100k-row commit into the full target next to an empty one; prints
    /// RESULT lines.
    Scale(scale::ScaleArgs),
    /// Fault campaign: rounds of one random fault each (collector or agent
    /// SIGKILL, analytic server restart mid-upload or mid-commit, network
    /// cut, full spool, corrupted spool file, collector SIGKILL while its
    /// commit waits inside its transaction, a column added to or dropped
    /// from the source while an analyst reads) at a random point of a
    /// transmission; after the system recovers by itself, checks the targets
    /// against the source; prints RESULT lines and fails when a round failed.
    Fault(fault::FaultArgs),
    /// Runs every `cargo fuzz` target of `fuzz/` (nightly, libFuzzer) for
    /// --seconds each over the corpora in `fuzz/corpus/`, installing
    /// cargo-fuzz (and the nightly toolchain) when missing; fails on a crash
    /// with the input's path and the command that reproduces it.
    Fuzz(fuzz::FuzzArgs),
    /// Server time to render the dashboard overview and the API list for a
    /// national fleet (5,570 municipalities, a year of daily transmissions
    /// each) against anchors (`/healthz`, the database read alone);
    /// prints RESULT lines.
    BenchDashboard(dashboard_bench::DashboardBenchArgs),
    /// Bytes an incremental (upsert) daily run sends compared with a full
    /// snapshot of the same table, over several days of changes.
    BenchIncremental(incremental_bench::IncrementalBenchArgs),
    /// Builds the agent's .deb (release binary, same layout and systemd unit
    /// as `transmissor-agent install`) into <target>/debian/.
    Deb(deb::DebArgs),
    /// The Windows agent (x86_64-pc-windows-gnu, installing the Rust target
    /// and MinGW-w64 when missing), its zip with install.ps1 and LEIA-ME.md
    /// in target/windows/, and a smoke test under Wine (installed when
    /// missing): --version, --help, doctor --help, and the service started
    /// and stopped by Wine's service control manager.
    Windows(windows::WindowsArgs),
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
        Command::Fault(args) => fault::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::BenchDashboard(args) => dashboard_bench::run(args),
        Command::BenchIncremental(args) => incremental_bench::run(args),
        Command::Deb(args) => deb::run(args),
        Command::Windows(args) => windows::run(args),
        Command::Test { args } => setup::run_tests(&args),
    }
}
