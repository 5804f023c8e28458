//! The address forms of tyk.conf's `coprocess_grpc_server`: `tcp://host:port`, `unix:///path` and a
//! bare `host:port`. `http://` and `https://` URLs are accepted too (`https` asks for TLS).

use std::fmt;
use std::path::PathBuf;

/// Where a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port` (an IPv6 host in brackets), over TCP; `tls` when written as `https://`.
    Tcp { authority: String, tls: bool },
    /// A Unix domain socket.
    Unix(PathBuf),
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `host:port` over TCP (resolved when the server binds).
    Tcp(String),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

fn unix_path(rest: &str, original: &str) -> Result<PathBuf, String> {
    if rest.is_empty() {
        return Err(format!(
            "'{original}': a unix address needs a socket path (unix:///path/to.sock)"
        ));
    }
    Ok(PathBuf::from(rest))
}

/// Checks `host:port`: a host (name, IPv4, or IPv6 in brackets) and a numeric port.
fn authority(s: &str, original: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "'{original}': {why} (expected tcp://host:port, unix:///path or host:port)"
        ))
    };
    let s = s.strip_suffix('/').unwrap_or(s);
    let Some((host, port)) = s.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() {
        return bad("no host");
    }
    if host.contains(['/', '?', '#', '@']) || (host.contains(':') && !host.starts_with('[')) {
        return bad("not a host");
    }
    if port.parse::<u16>().is_err() {
        return bad("the port is not a number from 0 to 65535");
    }
    Ok(s.to_owned())
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let t = s.trim();
        if let Some(rest) = t
            .strip_prefix("unix://")
            .or_else(|| t.strip_prefix("unix:"))
        {
            return unix_path(rest, s).map(Target::Unix);
        }
        let (rest, tls) = if let Some(r) = t.strip_prefix("tcp://") {
            (r, false)
        } else if let Some(r) = t.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = t.strip_prefix("https://") {
            (r, true)
        } else if t.contains("://") {
            return Err(format!(
                "'{s}': unknown scheme (expected tcp://host:port, unix:///path or host:port)"
            ));
        } else {
            (t, false)
        };
        Ok(Target::Tcp {
            authority: authority(rest, s)?,
            tls,
        })
    }

    /// The URI tonic's `Endpoint` takes: `http(s)://host:port` or `unix:/path`.
    pub fn endpoint_uri(&self, tls: bool) -> String {
        match self {
            Target::Tcp { authority, tls: t } => {
                let scheme = if tls || *t { "https" } else { "http" };
                format!("{scheme}://{authority}")
            }
            Target::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// Whether the address itself asks for TLS (`https://`).
    pub fn wants_tls(&self) -> bool {
        matches!(self, Target::Tcp { tls: true, .. })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp {
                authority,
                tls: false,
            } => write!(f, "tcp://{authority}"),
            Target::Tcp {
                authority,
                tls: true,
            } => write!(f, "https://{authority}"),
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl Listen {
    pub fn parse(s: &str) -> Result<Listen, String> {
        match Target::parse(s)? {
            Target::Unix(p) => Ok(Listen::Unix(p)),
            Target::Tcp { tls: true, .. } => Err(format!(
                "'{s}': listen on tcp://host:port (TLS for the server is not supported)"
            )),
            Target::Tcp { authority, .. } => Ok(Listen::Tcp(authority)),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(a: &str) -> Target {
        Target::Tcp {
            authority: a.into(),
            tls: false,
        }
    }

    #[test]
    fn tyk_forms_parse() {
        assert_eq!(
            Target::parse("tcp://127.0.0.1:5555").unwrap(),
            tcp("127.0.0.1:5555")
        );
        assert_eq!(
            Target::parse("localhost:5555").unwrap(),
            tcp("localhost:5555")
        );
        assert_eq!(Target::parse(" [::1]:80 ").unwrap(), tcp("[::1]:80"));
        assert_eq!(Target::parse("http://h:1/").unwrap(), tcp("h:1"));
        assert_eq!(
            Target::parse("unix:///tmp/x.sock").unwrap(),
            Target::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            Target::parse("unix:/tmp/x.sock").unwrap(),
            Target::Unix("/tmp/x.sock".into())
        );
        let t = Target::parse("https://example.com:443").unwrap();
        assert!(t.wants_tls());
        assert_eq!(t.endpoint_uri(false), "https://example.com:443");
        assert_eq!(tcp("h:1").endpoint_uri(true), "https://h:1");
        assert_eq!(Target::Unix("/a/b".into()).endpoint_uri(false), "unix:/a/b");
    }

    #[test]
    fn bad_addresses_say_why() {
        for (bad, why) in [
            ("", "no port"),
            ("localhost", "no port"),
            (":5555", "no host"),
            ("h:99999", "port"),
            ("h:http", "port"),
            ("::1:80", "not a host"),
            ("ftp://h:1", "unknown scheme"),
            ("unix://", "socket path"),
            ("tcp://user@h:1", "not a host"),
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            Listen::parse("tcp://127.0.0.1:0").unwrap(),
            Listen::Tcp("127.0.0.1:0".into())
        );
        assert_eq!(
            Listen::parse("unix:///run/c.sock").unwrap(),
            Listen::Unix("/run/c.sock".into())
        );
        assert!(Listen::parse("https://h:1").is_err());
        assert_eq!(Listen::Tcp("h:1".into()).to_string(), "tcp://h:1");
    }
}
