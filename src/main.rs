//! `ferrolb`, the operator CLI: `validate` and `plan` for pool repositories' CI, `status` for
//! people.

mod plan;
mod status;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ferrolb: layer-2 load balancer for bare-metal Kubernetes (MetalLB-compatible configuration).
#[derive(Debug, Parser)]
#[command(name = "ferrolb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check IPAddressPool and L2Advertisement files (exit 0 valid, 1 invalid, 2 unreadable).
    Validate(validate::Args),
    /// Show which address each Service would get, without a cluster (exit 0 unless inputs are invalid).
    Plan(plan::Args),
    /// Show which address serves which Services and who answers for it, from etcd.
    Status(status::Args),
}

/// Writes to stdout, ignoring errors: a closed pipe (`ferrolb plan | head`) ends the output, it
/// does not crash the program.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Status(args) => status::run(&args),
    }
}
