//! The CLI's error: one line of text, printed as `coprocess: error: <message>`.

use std::fmt;

/// A failure to report to the user. The message is one line (newlines are folded when printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError(message.into())
    }

    /// The message on one line: a driver's or dlopen's multi-line text is joined with "; ".
    pub fn one_line(&self) -> String {
        self.0
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

pub type Result<T> = std::result::Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds_newlines() {
        let e = CliError::new("driver failed:\n  Traceback\n\n  ValueError: x\n");
        assert_eq!(e.one_line(), "driver failed:; Traceback; ValueError: x");
        assert_eq!(CliError::new("plain").one_line(), "plain");
    }
}
