//! Writing results to standard output. A reader that went away (`coprocess ... | head`) ends the
//! output quietly instead of as an error.

use std::io::Write;

use crate::error::{CliError, Result};

/// Writes `bytes` to standard output and flushes it.
pub fn stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(format!(
            "cannot write to standard output: {e}"
        ))),
        Ok(()) => Ok(()),
    }
}

/// Writes `text` and a newline to standard output.
pub fn line(text: &str) -> Result<()> {
    stdout(format!("{text}\n").as_bytes())
}
