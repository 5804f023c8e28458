//! `coprocess serve --metrics-addr`: the bridge's metrics (`CoProcessMetrics`) over HTTP, for a
//! Prometheus server to scrape. `GET /metrics` answers Prometheus' text format (0.0.4),
//! `GET /metrics?format=json` the JSON; other paths are 404, other methods 405.
//!
//! The port is as exposed as the gRPC one: a non-loopback address needs `--insecure` (there is no TLS
//! here). Work is bounded: at most [`MAX_CONNECTIONS`] connections at once (more are closed at
//! once), a request's head must arrive within [`HEADER_TIMEOUT`], a connection lives at most
//! [`CONNECTION_LIFETIME`].

use std::convert::Infallible;
use std::ffi::c_int;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coprocess_bridge::ffi::metrics::{COPROCESS_METRICS_JSON, COPROCESS_METRICS_PROMETHEUS};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::bridge::linked;
use crate::error::{CliError, Result};

/// Connections served at once; a scraper needs one.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open (a keep-alive scraper reconnects after it).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The content type of Prometheus' text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// Binds `addr` (HOST:PORT) and checks that it may be exposed without TLS.
pub async fn bind(addr: &str, insecure: bool) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::new(format!("--metrics-addr {addr}: cannot listen: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("--metrics-addr {addr}: {e}")))?;
    if !insecure && !bound.ip().is_loopback() {
        return Err(CliError::new(format!(
            "refusing to serve metrics on {bound}, which is not a loopback address: \
             give --insecure to let anyone who reaches it read them"
        )));
    }
    Ok((listener, bound))
}

/// Serves the metrics on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // over the limit: the stream is dropped, the connection closed
        };
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                Ok::<_, Infallible>(answer(req.method(), req.uri().path(), req.uri().query()))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

/// The response to `method path?query`.
fn answer(method: &Method, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    if path != "/metrics" {
        return respond(
            StatusCode::NOT_FOUND,
            PLAIN_TEXT,
            "not found: the metrics are at /metrics\n".into(),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut resp = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN_TEXT,
            "only GET and HEAD\n".into(),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let (format, content_type) = match format_of(query) {
        Ok(Format::Prometheus) => (COPROCESS_METRICS_PROMETHEUS, PROMETHEUS_TEXT),
        Ok(Format::Json) => (COPROCESS_METRICS_JSON, "application/json"),
        Err(why) => return respond(StatusCode::BAD_REQUEST, PLAIN_TEXT, why),
    };
    match metrics(format) {
        Ok(body) => respond(StatusCode::OK, content_type, body),
        Err(why) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN_TEXT,
            format!("{why}\n"),
        ),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    Prometheus,
    Json,
}

/// `format=json` or `format=prometheus` in the query (default: Prometheus text).
fn format_of(query: Option<&str>) -> std::result::Result<Format, String> {
    let mut format = Format::Prometheus;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("format", "json")) => format = Format::Json,
            Some(("format", "prometheus")) => format = Format::Prometheus,
            Some(("format", _)) => {
                return Err("format is json or prometheus (the default)\n".into());
            }
            _ => {}
        }
    }
    Ok(format)
}

/// `CoProcessMetrics(format)`.
fn metrics(format: c_int) -> std::result::Result<String, String> {
    linked()
        .metrics(format)
        .map_err(|e| format!("CoProcessMetrics failed: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(resp.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn the_format_comes_from_the_query() {
        assert_eq!(format_of(None), Ok(Format::Prometheus));
        assert_eq!(format_of(Some("format=json")), Ok(Format::Json));
        assert_eq!(format_of(Some("x=1&format=json")), Ok(Format::Json));
        assert_eq!(format_of(Some("format=prometheus")), Ok(Format::Prometheus));
        assert!(format_of(Some("format=xml")).is_err());
    }

    #[test]
    fn only_get_and_head_of_the_metrics_path_answer_metrics() {
        let ok = answer(&Method::GET, "/metrics", None);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], PROMETHEUS_TEXT);
        assert!(body(ok).contains("# TYPE coprocess_hook_calls_total counter"));

        let json = answer(&Method::GET, "/metrics", Some("format=json"));
        assert_eq!(json.headers()[CONTENT_TYPE], "application/json");
        assert!(serde_json::from_str::<serde_json::Value>(&body(json)).is_ok());

        assert_eq!(
            answer(&Method::HEAD, "/metrics", None).status(),
            StatusCode::OK
        );
        let post = answer(&Method::POST, "/metrics", None);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
        assert_eq!(
            answer(&Method::GET, "/", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&Method::GET, "/metrics", Some("format=xml")).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
