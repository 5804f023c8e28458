//! Log delivery: to the host's log handler when one is set, otherwise to stderr with the level.

use std::ffi::{c_char, c_void, CStr, CString};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::handler_slot::{Call, HandlerSlot};

/// `void (*)(const char* message, const char* level, void* user_data)`.
/// NULL (`None`) means "no handler".
pub type CoProcessLogHandler = Option<
    unsafe extern "C" fn(message: *const c_char, level: *const c_char, user_data: *mut c_void),
>;

/// Tyk's log levels, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
}

impl Level {
    /// Parses a level name as Tyk and common loggers spell it; anything else is `Info`, so a typo never
    /// hides a message.
    pub fn parse(name: &str) -> Level {
        match name.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" => Level::Debug,
            "warning" | "warn" => Level::Warning,
            "error" | "err" | "fatal" | "critical" => Level::Error,
            _ => Level::Info,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    fn as_cstr(self) -> &'static CStr {
        match self {
            Level::Debug => c"debug",
            Level::Info => c"info",
            Level::Warning => c"warning",
            Level::Error => c"error",
        }
    }
}

pub struct LogSink {
    handler: HandlerSlot,
    min_level: AtomicU8,
}

impl Default for LogSink {
    fn default() -> Self {
        LogSink {
            handler: HandlerSlot::default(),
            min_level: AtomicU8::new(Level::Info as u8),
        }
    }
}

impl LogSink {
    /// Sets (or with `None` clears) the host's handler. When it returns, the previous handler is not
    /// running on another thread and will not be called again (see `HandlerSlot`).
    pub fn set_handler(&self, func: CoProcessLogHandler, user_data: *mut c_void) {
        self.handler.set(func, user_data);
    }

    /// Messages below `level` are dropped.
    pub fn set_min_level(&self, level: Level) {
        self.min_level.store(level as u8, Ordering::Relaxed);
    }

    pub fn enabled(&self, level: Level) -> bool {
        level as u8 >= self.min_level.load(Ordering::Relaxed)
    }

    /// Delivers one message. It is formatted only when its level is enabled, so callers may pass
    /// `format_args!(...)` and pay nothing for a disabled debug line. A handler may itself call
    /// `CoProcessSetLogHandler` or log; a line nested too deep in handlers goes to stderr.
    pub fn log(&self, level: Level, message: impl std::fmt::Display) {
        if !self.enabled(level) {
            return;
        }
        let mut message = Some(message);
        let call = self.handler.call(|func, user_data| {
            let text = message.take().map(|m| m.to_string()).unwrap_or_default();
            let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
            // SAFETY: the host registered `func` for exactly this signature; both strings are valid
            // NUL-terminated C strings for the duration of the call.
            unsafe { func(text.as_ptr(), level.as_cstr().as_ptr(), user_data) };
        });
        if call != Call::Made {
            if let Some(message) = message {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "[coprocess-bridge] {}: {message}",
                    level.as_str()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(String, String, usize)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn record(msg: *const c_char, level: *const c_char, ud: *mut c_void) {
        // SAFETY: LogSink passes valid C strings.
        let (m, l) = unsafe { (CStr::from_ptr(msg), CStr::from_ptr(level)) };
        SEEN.lock().unwrap().push((
            m.to_string_lossy().into(),
            l.to_string_lossy().into(),
            ud as usize,
        ));
    }

    #[test]
    fn handler_receives_messages_at_or_above_the_minimum_level() {
        let sink = LogSink::default();
        sink.set_handler(Some(record), 42 as *mut c_void);
        sink.log(Level::Debug, "hidden");
        sink.log(Level::Warning, "shown");
        sink.set_min_level(Level::Debug);
        sink.log(Level::Debug, "now shown");
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("shown".into(), "warning".into(), 42),
                ("now shown".into(), "debug".into(), 42)
            ]
        );
    }

    #[test]
    fn levels_parse_leniently() {
        assert_eq!(Level::parse("WARN"), Level::Warning);
        assert_eq!(Level::parse("error"), Level::Error);
        assert_eq!(Level::parse("bogus"), Level::Info);
        assert_eq!(Level::parse("debug"), Level::Debug);
    }
}
