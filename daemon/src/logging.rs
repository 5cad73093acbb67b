//! The daemons' logging flags and set-up: `--log-level` (an `EnvFilter` directive such as
//! `info` or `info,ferrolb_speaker=debug`) and `--log-format text|json`, to stderr. Colour codes
//! only when stderr is a terminal: in `kubectl logs` and files they are noise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `spans`).
    Json,
}

/// The logging flags both daemons take.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or a filter directive
    /// (`info,ferrolb_speaker=debug`).
    #[arg(long, env = "FERROLB_LOG", default_value = "info", value_parser = parse_filter)]
    pub log_level: String,
    /// How to write log lines: `text` or `json` (one object per line).
    #[arg(long, env = "FERROLB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Default for LogArgs {
    fn default() -> Self {
        LogArgs {
            log_level: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// Checks a `--log-level` value as the filter would read it.
fn parse_filter(text: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("not a log level or filter directive: {e}"))
}

/// Installs the subscriber for `args` (once per process; later calls do nothing).
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::builder()
        .parse(&args.log_level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    drop(installed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_taken_and_nonsense_is_refused() {
        assert!(parse_filter("debug").is_ok());
        assert!(parse_filter("info,ferrolb_speaker=trace").is_ok());
        let e = parse_filter("loud=!!").expect_err("not a directive");
        assert!(e.starts_with("not a log level or filter directive"), "{e}");
    }
}
