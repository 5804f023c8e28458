//! `coprocess dispatch`: one Object through the bridge to a driver and back, the in-process twin of the
//! grpcurl `make dispatch` loop of Tyk's Python gRPC plugin README.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use coprocess_proto::{HookType, Message};

use crate::bridge::{Bridge, DriverArgs};
use crate::error::{CliError, Result};
use crate::json::{self, HookTypeArg};
use crate::output;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  coprocess dispatch --driver target/release/libcoprocess_rust_driver.so object.json
  coprocess dispatch --driver ./my_driver.so --hook-type response - < object.json
  coprocess dispatch --driver ./my_driver.so --binary object.bin > result.bin")]
pub struct DispatchArgs {
    #[command(flatten)]
    pub driver: DriverArgs,
    /// Sets the Object's hook_type before dispatching.
    #[arg(long, value_enum, ignore_case = true, value_name = "HOOK")]
    pub hook_type: Option<HookTypeArg>,
    /// Sets the Object's hook_name before dispatching.
    #[arg(long, value_name = "NAME")]
    pub hook_name: Option<String>,
    /// The input is a serialized (protobuf binary) Object, and so is the output unless --output json.
    #[arg(long)]
    pub binary: bool,
    /// Output format (default: the input's).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// The Object, as protobuf canonical JSON (MessageToJson's output; the original snake_case field
    /// names are accepted too) or binary with --binary. "-" or nothing: standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Protobuf canonical JSON, keys sorted.
    Json,
    /// The serialized Object's bytes.
    Binary,
}

pub fn run(args: DispatchArgs) -> Result<()> {
    let (bytes, source) = json::read_input(&args.input)?;
    let overrides = args.hook_type.is_some() || args.hook_name.is_some();
    let input = if args.binary && !overrides {
        // Handed to the bridge verbatim: its own input check is part of what a host would see.
        bytes
    } else {
        let mut object = if args.binary {
            json::object_from_binary(&bytes, &source)?
        } else {
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| CliError::new(format!("{source}: not UTF-8 text: {e}")))?;
            json::object_from_json(text, &source)?
        };
        if let Some(h) = args.hook_type {
            object.hook_type = HookType::from(h) as i32;
        }
        if let Some(name) = args.hook_name {
            object.hook_name = name;
        }
        object.encode_to_vec()
    };

    let bridge = Bridge::load(&args.driver)?;
    let output = bridge.dispatch(&input)?;
    drop(bridge);

    let format = args.output.unwrap_or(if args.binary {
        Format::Binary
    } else {
        Format::Json
    });
    match format {
        Format::Binary => output::stdout(&output),
        Format::Json => {
            let object = json::object_from_binary(&output, "the driver's output")?;
            output::line(&json::object_to_json(&object)?)
        }
    }
}
