//! `ferrolb-speaker`: parses the command line, then runs the speaker with the shared start-up.

use std::process::ExitCode;

use ferrolb_speaker::settings::Settings;

fn main() -> ExitCode {
    let settings = Settings::parse_profiled();
    let log = settings.log.clone();
    ferrolb_daemon::main(&log, ferrolb_speaker::run(settings))
}
