//! The error a hook returns. Its text reaches the host's `CoProcessLastError`, prefixed with the driver's
//! name, so say what went wrong in words an operator understands.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<coprocess_proto::DecodeError> for Error {
    fn from(e: coprocess_proto::DecodeError) -> Self {
        Error::new(format!("cannot decode the coprocess.Object: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
