//! Logging set-up shared by both binaries: `tracing` to stderr, as text or
//! JSON, filtered by `TRANSMISSOR_LOG` (default `info`).

/// Installs the global subscriber; `format` is `"text"` or `"json"`.
pub fn init(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRANSMISSOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and journals get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
