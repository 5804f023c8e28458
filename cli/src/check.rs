//! `coprocess check`: can the bridge load this driver? Reports its ABI version and symbols, then
//! initialises it through CoProcessLoadDriver as a host would.

use std::path::PathBuf;

use clap::Args;
use coprocess_bridge::driver::loader::{canonical_driver_path, SUPPORTED_ABI_VERSION};
use coprocess_bridge::driver::DriverLibrary;

use crate::bridge::{Bridge, DriverArgs};
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
#[command(
    after_help = "Exits with status 1 and a one-line reason when the library cannot be loaded \
(not found, not a shared library, not a coprocess driver, wrong ABI version, missing symbol, failed init)."
)]
pub struct CheckArgs {
    /// The driver shared library to check.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Config JSON for the init check (default "{}").
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// Only open the library and check its symbols: do not call CoProcessDriverInit.
    #[arg(long)]
    pub no_init: bool,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let shown = args.path.to_str().ok_or_else(|| {
        CliError::new(format!(
            "driver path {} is not valid UTF-8",
            args.path.display()
        ))
    })?;
    let file = canonical_driver_path(shown).map_err(|e| CliError::new(e.message))?;
    let library = DriverLibrary::open(&file, &file).map_err(|e| CliError::new(e.message))?;
    let symbols = library.symbol_names();
    let mut report = format!(
        "driver       {}\nABI version  {} (this bridge supports {SUPPORTED_ABI_VERSION})\n\
         symbols      {}",
        file.display(),
        library.abi_version,
        symbols.join(", ")
    );
    for optional in [
        "CoProcessDriverDispatchPatch",
        "CoProcessDriverLoadBundle",
        "CoProcessDriverShutdown",
    ] {
        if !symbols.contains(&optional) {
            report.push_str(&format!(
                "\n             (optional {optional} not exported)"
            ));
        }
    }
    output::line(&report)?;
    drop(library);

    if args.no_init {
        return Ok(());
    }
    let bridge = Bridge::load(&DriverArgs {
        driver: file,
        config: args.config,
    })?;
    drop(bridge);
    output::line("init         ok")
}
