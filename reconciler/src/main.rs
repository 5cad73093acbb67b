//! `ferrolb-reconciler`: keeps the pool configuration, allocates addresses, writes Service status
//! and publishes announcements to etcd. Only the command line exists so far.

use std::process::ExitCode;

use clap::Parser;

/// ferrolb-reconciler: allocates addresses for LoadBalancer Services and publishes them to etcd.
#[derive(Debug, Parser)]
#[command(name = "ferrolb-reconciler", version, about)]
struct Args {
    /// Pool configuration: a directory or file of IPAddressPool and L2Advertisement documents.
    #[arg(long, env = "FERROLB_CONFIG")]
    config: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("ferrolb-reconciler: not implemented yet (see the reconciler issue)");
    ExitCode::FAILURE
}
