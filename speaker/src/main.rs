//! `ferrolb-speaker`: parses the command line, then runs the speaker with the shared start-up.

use std::process::ExitCode;

use clap::Parser;
use ferrolb_speaker::settings::Settings;

fn main() -> ExitCode {
    let settings = Settings::parse();
    let log = settings.log.clone();
    ferrolb_daemon::main(&log, ferrolb_speaker::run(settings))
}
