//! `coprocess`: the command-line companion of coprocess-bridge for plugin authors. Each subcommand lives
//! in its own module with its clap `Args` and a `run` function; this file only dispatches.

mod bench;
mod bridge;
mod bundle;
mod check;
mod dispatch;
mod error;
mod event;
mod json;
mod metrics_http;
mod output;
mod serve;

use std::process::ExitCode;
use std::sync::LazyLock;

use clap::{Parser, Subcommand};

/// `coprocess --version`: the CLI's version and the bridge's own (`CoProcessVersion`), which names
/// the driver ABI version, e.g. "0.1.0, coprocess-bridge 0.1.0 (driver ABI 1)".
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}, {}",
        env!("CARGO_PKG_VERSION"),
        bridge::linked().version()
    )
});

/// Run Tyk coprocess drivers in-process: dispatch Objects and events through coprocess-bridge, check
/// driver libraries, benchmark them.
///
/// Every command goes through the bridge's C exports (CoProcessLoadDriver, DispatchWithDriver,
/// DispatchEvent, ...), the code paths a gateway uses. Objects are read and printed as protobuf
/// canonical JSON, the text Google's json_format.MessageToJson prints.
#[derive(Debug, Parser)]
#[command(
    name = "coprocess",
    version = VERSION.as_str(),
    propagate_version = true,
    after_help = "\
Watch a driver change a real Object (from a clone of the repository):
  cargo build --release -p coprocess-cli -p coprocess-rust-driver-example
  echo '{\"hookType\": \"Pre\", \"request\": {\"url\": \"/pet\", \"method\": \"GET\"}}' |
    target/release/coprocess dispatch --driver target/release/libcoprocess_rust_driver.so

Run `coprocess help <COMMAND>` for each command's options and examples."
)]
struct Cli {
    /// Show more of the bridge's and the driver's log lines on standard error: -v info, -vv debug
    /// (default: warnings and errors).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dispatch one Object (JSON or binary) to a driver and print the Object it returns.
    Dispatch(dispatch::DispatchArgs),
    /// Dispatch one Tyk event to a driver and print the events the driver raises.
    Event(event::EventArgs),
    /// Check that a library is a loadable driver: ABI version, symbols, init.
    Check(check::CheckArgs),
    /// Measure throughput and latency percentiles of a driver through the bridge.
    Bench(bench::BenchArgs),
    /// Serve the drivers over gRPC as a Tyk coprocess Dispatcher (tcp:// or unix://).
    Serve(serve::ServeArgs),
    /// Build and verify Tyk plugin bundles (manifest.json + files, checksum, RSA signature).
    Bundle(bundle::BundleArgs),
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("coprocess: internal error: {}{at}", msg.replace('\n', "; "));
    }));

    let cli = Cli::parse();
    let level = ["warning", "info", "debug"][usize::from(cli.verbose.min(2))];
    if let Err(e) = bridge::init(level) {
        eprintln!("coprocess: error: {}", e.one_line());
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Dispatch(args) => dispatch::run(args),
        Command::Event(args) => event::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bundle(args) => bundle::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coprocess: error: {}", e.one_line());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_names_the_bridge_and_the_driver_abi() {
        let v = Cli::command().render_version();
        assert_eq!(
            v.trim(),
            format!(
                "coprocess {0}, coprocess-bridge {0} (driver ABI 1)",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
