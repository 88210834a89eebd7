//! Logging set-up shared by both binaries: `tracing` to stderr, as text or
//! JSON, filtered by `TRANSMISSOR_LOG` (default `info`). The agent's Windows
//! service logs to files instead ([`init_with_writer`]).

use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber; `format` is `"text"` or `"json"`.
pub fn init(format: &str) {
    // Colours only on a terminal: log files and journals get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_with_writer(format, std::io::stderr, ansi);
}

/// Installs the global subscriber writing to `writer` (a rolling log file,
/// say), with the same filter and formats as [`init`].
pub fn init_with_writer<W>(format: &str, writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRANSMISSOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
