//! One access-log line per request on standard output — method, path, status, total time and the
//! time spent in plugin hooks (the bridge's Dispatch calls) — and the bridge's metrics on /metrics.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    /// Time spent in Dispatch by the request this task serves.
    static PLUGIN_TIME: Cell<Duration>;
}

/// Adds a Dispatch call's time to the current request's plugin time (nothing outside a request).
pub fn add_plugin_time(spent: Duration) {
    let _ = PLUGIN_TIME.try_with(|t| t.set(t.get() + spent));
}

/// Serves one request with `serve` and prints its access-log line.
pub async fn logged<B>(
    method: String,
    path: String,
    serve: impl Future<Output = hyper::Response<B>>,
) -> hyper::Response<B> {
    let started = Instant::now();
    let (response, plugins) = PLUGIN_TIME
        .scope(Cell::new(Duration::ZERO), async {
            let response = serve.await;
            (response, PLUGIN_TIME.with(Cell::get))
        })
        .await;
    println!(
        "{}",
        line(
            &method,
            &path,
            response.status().as_u16(),
            started.elapsed(),
            plugins
        )
    );
    response
}

/// `GET /classic/pet 200 1.234ms plugins=0.456ms`
pub fn line(method: &str, path: &str, status: u16, total: Duration, plugins: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // A path is the client's text: control characters would forge log lines.
    let path: String = path
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!(
        "{method} {path} {status} {:.3}ms plugins={:.3}ms",
        ms(total),
        ms(plugins)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_method_path_status_and_both_times() {
        assert_eq!(
            line(
                "GET",
                "/classic/pet?x=1",
                200,
                Duration::from_micros(1234),
                Duration::from_micros(456)
            ),
            "GET /classic/pet?x=1 200 1.234ms plugins=0.456ms"
        );
        assert_eq!(
            line("GET", "/a\nb", 404, Duration::ZERO, Duration::ZERO),
            "GET /a?b 404 0.000ms plugins=0.000ms"
        );
    }
}
