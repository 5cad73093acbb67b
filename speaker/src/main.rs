//! `ferrolb-speaker`: one per node; claims addresses through etcd and answers ARP and NDP for
//! the ones it holds. Only the command line exists so far.

use std::process::ExitCode;

use clap::Parser;

/// ferrolb-speaker: answers ARP and NDP for the addresses this node holds.
#[derive(Debug, Parser)]
#[command(name = "ferrolb-speaker", version, about)]
struct Args {
    /// This node's name.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("ferrolb-speaker: not implemented yet (see the speaker issue)");
    ExitCode::FAILURE
}
