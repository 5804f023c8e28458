//! One access-log line per request on standard output — method, path, status, total time and the
//! time spent in plugin hooks (the bridge's Dispatch calls).
//!
//! The request path only hands a small record to a bounded queue (no lock, no write, no wake-up);
//! one writer thread formats the records into a buffer and writes it out every [`FLUSH_EVERY`] and
//! at [`AccessLog::close`]. A full queue never blocks a request: the record is dropped and counted
//! ([`AccessLog::dropped`], shown on /metrics).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hyper::Method;

/// How long a line may wait in the queue before it is written out (by default).
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Records the queue holds: [`FLUSH_EVERY`] of 160 k requests/s.
pub const QUEUE: usize = 8192;

tokio::task_local! {
    /// Time spent in Dispatch by the request this task serves.
    static PLUGIN_TIME: Cell<Duration>;
}

/// Adds a Dispatch call's time to the current request's plugin time (nothing outside a request).
pub fn add_plugin_time(spent: Duration) {
    let _ = PLUGIN_TIME.try_with(|t| t.set(t.get() + spent));
}

/// One request, as its access-log line shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub method: Method,
    /// Path and query as the client sent them.
    pub path: Box<str>,
    pub status: u16,
    pub total: Duration,
    pub plugins: Duration,
}

/// A duration in milliseconds with 3 decimals (`1.234ms`), rounded to the microsecond: written with
/// integer formatting, several times cheaper than a float's `{:.3}` (every request's line has two).
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_nanos().saturating_add(500) / 1000;
        write!(f, "{}.{:03}ms", micros / 1000, micros % 1000)
    }
}

impl fmt::Display for Entry {
    /// `GET /classic/pet 200 1.234ms plugins=0.456ms`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.method)?;
        // A path is the client's text: control characters would forge log lines.
        for (i, piece) in self.path.split(char::is_control).enumerate() {
            if i > 0 {
                f.write_str("?")?;
            }
            f.write_str(piece)?;
        }
        write!(
            f,
            " {} {} plugins={}",
            self.status,
            Millis(self.total),
            Millis(self.plugins)
        )
    }
}

/// The queue and its writer thread.
pub struct AccessLog {
    lines: SyncSender<Entry>,
    /// Tells the writer to write what is queued and stop.
    close: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// A log written to `out` by a thread of its own, `flush_every`, from a queue of `capacity`
    /// records.
    pub fn start<W: Write + Send + 'static>(
        out: W,
        capacity: usize,
        flush_every: Duration,
    ) -> AccessLog {
        let (lines, queued) = mpsc::sync_channel(capacity);
        let (close, closing) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_out(out, queued, closing, flush_every))
            .expect("starting the access-log thread");
        AccessLog {
            lines,
            close: Mutex::new(Some((close, writer))),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a line; when the queue is full (or the log closed) the line is dropped and counted.
    pub fn record(&self, entry: Entry) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.lines.try_send(entry)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out every queued line and stops the writer (later lines are dropped and counted).
    pub fn close(&self) {
        let taken = self.close.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((close, writer)) = taken {
            let _ = close.send(());
            let _ = writer.join();
        }
    }

    /// Serves one request with `serve` and queues its line.
    pub async fn logged<B>(
        &self,
        method: Method,
        path: Box<str>,
        serve: impl Future<Output = hyper::Response<B>>,
    ) -> hyper::Response<B> {
        let started = Instant::now();
        let (response, plugins) = PLUGIN_TIME
            .scope(Cell::new(Duration::ZERO), async {
                let response = serve.await;
                (response, PLUGIN_TIME.with(Cell::get))
            })
            .await;
        self.record(Entry {
            method,
            path,
            status: response.status().as_u16(),
            total: started.elapsed(),
            plugins,
        });
        response
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: every `flush_every` (or when told to close), formats what is queued into one
/// buffer and writes it out. It never waits on the line queue itself, so queuing a line wakes no one.
fn write_out<W: Write>(
    out: W,
    queued: Receiver<Entry>,
    closing: Receiver<()>,
    flush_every: Duration,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        let last = match closing.recv_timeout(flush_every) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        // A write error (stdout closed) loses lines; the queue is drained all the same.
        for entry in queued.try_iter() {
            let _ = writeln!(out, "{entry}");
        }
        let _ = out.flush();
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn entry(path: &str, status: u16) -> Entry {
        Entry {
            method: Method::GET,
            path: path.into(),
            status,
            total: Duration::from_micros(1234),
            plugins: Duration::from_micros(456),
        }
    }

    /// A `Write` into shared memory, optionally held up at its first write until released.
    #[derive(Clone, Default)]
    struct Shared {
        text: Arc<Mutex<Vec<u8>>>,
        hold: Option<Arc<Barrier>>,
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(hold) = self.hold.take() {
                hold.wait();
            }
            self.text.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.text.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn a_line_has_method_path_status_and_both_times() {
        assert_eq!(
            entry("/classic/pet?x=1", 200).to_string(),
            "GET /classic/pet?x=1 200 1.234ms plugins=0.456ms"
        );
        let mut forged = entry("/a\nb\r\nc", 404);
        forged.total = Duration::ZERO;
        forged.plugins = Duration::ZERO;
        assert_eq!(
            forged.to_string(),
            "GET /a?b??c 404 0.000ms plugins=0.000ms"
        );
    }

    #[test]
    fn times_are_milliseconds_rounded_to_the_microsecond() {
        let ms = |nanos: u64| Millis(Duration::from_nanos(nanos)).to_string();
        assert_eq!(ms(0), "0.000ms");
        assert_eq!(ms(499), "0.000ms");
        assert_eq!(ms(500), "0.001ms");
        assert_eq!(ms(1_234_567), "1.235ms");
        assert_eq!(ms(999_999_600), "1000.000ms");
        assert_eq!(ms(12_345_678_901), "12345.679ms");
    }

    #[test]
    fn lines_are_written_without_waiting_for_close_and_all_of_them_at_close() {
        let out = Shared::default();
        let log = AccessLog::start(out.clone(), 64, Duration::from_millis(20));
        log.record(entry("/first", 200));
        let started = Instant::now();
        while out.lines().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.lines(), ["GET /first 200 1.234ms plugins=0.456ms"]);
        for i in 0..10 {
            log.record(entry(&format!("/{i}"), 200));
        }
        log.close();
        let lines = out.lines();
        assert_eq!(lines.len(), 11, "{lines:?}");
        assert!(lines[10].starts_with("GET /9 200 "), "{lines:?}");
        assert_eq!(log.dropped(), 0);
        // After close, lines are counted, not written.
        log.record(entry("/late", 200));
        assert_eq!(log.dropped(), 1);
        assert_eq!(out.lines().len(), 11);
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_instead_of_blocking() {
        let hold = Arc::new(Barrier::new(2));
        let out = Shared {
            hold: Some(hold.clone()),
            ..Shared::default()
        };
        let log = AccessLog::start(out.clone(), 4, Duration::from_millis(1));
        // The writer takes the first line and is then held in its write.
        log.record(entry("/held", 200));
        let started = Instant::now();
        // The queue (4) fills while the writer is stuck; recording never blocks.
        let mut sent = 1;
        while log.dropped() == 0 {
            log.record(entry("/more", 200));
            sent += 1;
            assert!(started.elapsed() < Duration::from_secs(10), "never full");
        }
        let dropped_before_release = log.dropped();
        hold.wait();
        log.close();
        let written = out.lines().len() as u64;
        assert_eq!(
            written + log.dropped(),
            sent,
            "every line written or counted"
        );
        assert_eq!(log.dropped(), dropped_before_release);
        assert!(written >= 4, "{written}");
    }
}
