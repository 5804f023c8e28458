//! `coprocess event`: one Tyk event through the bridge to a driver; prints the events the driver raises.

use std::path::Path;

use clap::Args;

use crate::bridge::{Bridge, DriverArgs};
use crate::error::{CliError, Result};
use crate::json;

#[derive(Debug, Args)]
#[command(
    after_help = r#"Each event the driver raises (its trigger_event calls, while loading and while handling the
event) is printed on its own line as {"name": ..., "payload": ...}.

Example:
  coprocess event --driver ./c_driver.so '{"message": {"key": "k"}, "handler_name": "h", "spec": {"APIID": "a", "OrgID": "o"}}'"#
)]
pub struct EventArgs {
    #[command(flatten)]
    pub driver: DriverArgs,
    /// The event as Tyk sends it: {"message": {...}, "handler_name": "...", "spec": {"APIID": "...",
    /// "OrgID": "..."}}. "-": read it from standard input.
    #[arg(value_name = "JSON|-")]
    pub event: String,
}

pub fn run(args: EventArgs) -> Result<()> {
    let event = if args.event == "-" {
        let (bytes, _) = json::read_input(Path::new("-"))?;
        String::from_utf8(bytes)
            .map_err(|e| CliError::new(format!("the event is not UTF-8 text: {e}")))?
    } else {
        args.event
    };
    serde_json::from_str::<serde_json::Value>(&event)
        .map_err(|e| CliError::new(format!("the event is not valid JSON: {e}")))?;

    let bridge = Bridge::load(&args.driver)?;
    bridge.dispatch_event(&event)?;
    let events = bridge.take_events();
    drop(bridge);

    for (name, payload) in &events {
        println!(
            "{}",
            serde_json::json!({ "name": name, "payload": payload })
        );
    }
    if events.is_empty() {
        eprintln!("coprocess: the driver raised no event");
    }
    Ok(())
}
