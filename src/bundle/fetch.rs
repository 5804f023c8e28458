//! Getting a bundle's bytes: `bundle_base_url` joined with the bundle name (Tyk: `path.Join` of the
//! base URL's path and the name), over http, https or from a file:// path. Each attempt has a
//! timeout; transient failures are retried with exponential backoff; the body is bounded. TLS
//! settings belong to this download only: nothing process-wide changes.

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

use super::unpack::check_relative_path;

/// How downloads behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Per attempt (Tyk: 5 s).
    pub timeout: Duration,
    /// Attempts after the first (Tyk: 4).
    pub retries: u32,
    /// First wait between attempts, doubled each time up to 5 s (Tyk: exponential from 500 ms).
    pub backoff: Duration,
    /// https without certificate verification (`bundle_insecure_skip_verify`).
    pub insecure_skip_verify: bool,
    /// Largest body accepted.
    pub max_bytes: u64,
}

impl Default for FetchPolicy {
    fn default() -> FetchPolicy {
        FetchPolicy {
            timeout: Duration::from_secs(5),
            retries: 4,
            backoff: Duration::from_millis(500),
            insecure_skip_verify: false,
            max_bytes: 64 << 20,
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The URL of bundle `name` under `base`.
pub fn bundle_url(base: &str, name: &str) -> Result<Url, String> {
    let mut url =
        Url::parse(base).map_err(|e| format!("bundle_base_url '{base}' is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" | "file" => {}
        other => {
            return Err(format!(
                "bundle_base_url '{base}' has scheme '{other}': only http, https and file are supported"
            ))
        }
    }
    let relative = name.trim_start_matches('/');
    check_relative_path(relative).map_err(|why| format!("the bundle name '{name}' {why}"))?;
    let path = format!("{}/{relative}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// Why one attempt failed, and whether another attempt may help.
struct Failure {
    why: String,
    transient: bool,
}

/// Fetches `url`'s bytes with retries; the error names the URL and the last reason.
pub fn fetch(url: &Url, policy: &FetchPolicy) -> Result<Vec<u8>, String> {
    let mut wait = policy.backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match get(url, policy) {
            Ok(bytes) => return Ok(bytes),
            Err(f) => f,
        };
        if !failure.transient || attempt > policy.retries {
            let tries = if attempt == 1 {
                String::new()
            } else {
                format!(" (after {attempt} attempts)")
            };
            return Err(format!("GET {url} failed{tries}: {}", failure.why));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

fn get(url: &Url, policy: &FetchPolicy) -> Result<Vec<u8>, Failure> {
    if url.scheme() == "file" {
        let path = url.to_file_path().map_err(|()| Failure {
            why: "not a local file path".into(),
            transient: false,
        })?;
        let file = std::fs::File::open(&path).map_err(|e| Failure {
            why: format!("cannot open {}: {e}", path.display()),
            transient: false,
        })?;
        let mut bytes = Vec::new();
        file.take(policy.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure {
                why: format!("cannot read {}: {e}", path.display()),
                transient: false,
            })?;
        return bounded(bytes, policy);
    }
    let agent = agent(policy);
    let mut response = agent.get(url.as_str()).call().map_err(|e| Failure {
        // Network trouble may pass; a certificate or a malformed URL will not.
        transient: matches!(
            e,
            ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::HostNotFound
                | ureq::Error::ConnectionFailed
                | ureq::Error::BodyStalled
        ),
        why: e.to_string(),
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Failure {
            why: format!("HTTP status {status}"),
            transient: status >= 500 || status == 408 || status == 429,
        });
    }
    let bytes = response
        .body_mut()
        .with_config()
        .limit(policy.max_bytes + 1)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => Failure {
                why: format!("the response is larger than {} bytes", policy.max_bytes),
                transient: false,
            },
            other => Failure {
                why: format!("reading the response: {other}"),
                transient: true,
            },
        })?;
    bounded(bytes, policy)
}

fn bounded(bytes: Vec<u8>, policy: &FetchPolicy) -> Result<Vec<u8>, Failure> {
    if bytes.len() as u64 > policy.max_bytes {
        return Err(Failure {
            why: format!("the bundle is larger than {} bytes", policy.max_bytes),
            transient: false,
        });
    }
    Ok(bytes)
}

/// A client for one download: its own TLS configuration (system roots, as Tyk's Go client uses;
/// Mozilla's when the system has none), never a global one.
fn agent(policy: &FetchPolicy) -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    let roots = system_roots()
        .map(RootCerts::Specific)
        .unwrap_or(RootCerts::WebPki);
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .disable_verification(policy.insecure_skip_verify)
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(policy.timeout))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into()
}

fn system_roots() -> Option<Arc<Vec<ureq::tls::Certificate<'static>>>> {
    static ROOTS: OnceLock<Option<Arc<Vec<ureq::tls::Certificate<'static>>>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<_> = found
                .certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            (!certs.is_empty()).then(|| Arc::new(certs))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_like_tyk() {
        let u = |b: &str, n: &str| bundle_url(b, n).map(|u| u.to_string());
        assert_eq!(u("http://h:8/b", "x.zip").unwrap(), "http://h:8/b/x.zip");
        assert_eq!(u("http://h:8/b/", "/x.zip").unwrap(), "http://h:8/b/x.zip");
        assert_eq!(
            u("https://h/", "d/x y.zip").unwrap(),
            "https://h/d/x%20y.zip"
        );
        assert_eq!(u("file:///srv/b", "x.zip").unwrap(), "file:///srv/b/x.zip");
        assert!(u("ftp://h/", "x.zip").unwrap_err().contains("scheme 'ftp'"));
        assert!(u("http://h/", "../x.zip").unwrap_err().contains("(..)"));
        assert!(u("not a url", "x").unwrap_err().contains("not a URL"));
    }

    #[test]
    fn file_urls_are_read_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.zip"), b"12345").unwrap();
        let base = Url::from_directory_path(dir.path()).unwrap();
        let url = bundle_url(base.as_str(), "b.zip").unwrap();
        let policy = FetchPolicy::default();
        assert_eq!(fetch(&url, &policy).unwrap(), b"12345");
        let small = FetchPolicy {
            max_bytes: 4,
            ..policy.clone()
        };
        assert!(fetch(&url, &small)
            .unwrap_err()
            .contains("larger than 4 bytes"));
        let missing = bundle_url(base.as_str(), "nope.zip").unwrap();
        let e = fetch(&missing, &policy).unwrap_err();
        assert!(
            e.starts_with(&format!("GET {missing} failed: cannot open")),
            "{e}"
        );
    }

    #[test]
    fn refused_connections_are_retried_then_reported() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = bundle_url(&format!("http://127.0.0.1:{port}/"), "b.zip").unwrap();
        let policy = FetchPolicy {
            retries: 2,
            backoff: Duration::from_millis(1),
            ..FetchPolicy::default()
        };
        let e = fetch(&url, &policy).unwrap_err();
        assert!(e.contains("(after 3 attempts)"), "{e}");
    }
}
