//! The gateway: routes a request to an API by listen path, runs the API's hooks through the bridge
//! in Tyk's order (Pre, CustomKeyCheck, PostKeyAuth, Post), proxies to the upstream, then runs the
//! Response hooks. A phase whose API has no hooks is not dispatched at all.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use coprocess_proto::{HookType, Message, Object, SessionState};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::access_log;
use crate::bridge::Bridge;
use crate::object::{self, Context, UpstreamResponse, Working};

/// Largest request or upstream body read.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The gateway's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. "127.0.0.1:8080" (port 0 picks a free one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Path of libcoprocess_bridge.so.
    pub bridge: String,
    /// Handed to CoProcessInit as is (tyk.conf's coprocess_options, plus the bridge's `drivers`).
    #[serde(default)]
    pub coprocess_options: Option<serde_json::Value>,
    /// API definition files, or directories of them (*.json).
    #[serde(default)]
    pub apps: Vec<String>,
    /// Start the built-in echo upstream on this address.
    #[serde(default)]
    pub echo_upstream: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Config {
    /// Reads a config file; `{exe_dir}` in it stands for the directory of the running executable
    /// (where cargo also puts the bridge and the example driver).
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let text = text.replace("{exe_dir}", &exe_dir.to_string_lossy());
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// One hook as CoProcessListApis describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub name: String,
    #[serde(default)]
    pub require_session: bool,
    #[serde(default)]
    pub raw_body_only: bool,
    #[serde(default)]
    pub disabled: bool,
}

/// An API as CoProcessListApis describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    pub api_id: String,
    pub org_id: String,
    pub listen_path: String,
    pub strip_listen_path: bool,
    pub target_url: String,
    pub pre: Vec<Hook>,
    pub post_key_auth: Vec<Hook>,
    pub post: Vec<Hook>,
    pub response: Vec<Hook>,
    pub auth_check: Option<Hook>,
}

/// What a phase needs to know about its hooks.
#[derive(Clone, Copy)]
struct Phase {
    hook_type: HookType,
    any: bool,
    /// Some hook wants `body` as text (not raw_body_only).
    body_text: bool,
}

impl Phase {
    fn of(hook_type: HookType, hooks: &[Hook]) -> Phase {
        let enabled: Vec<&Hook> = hooks.iter().filter(|h| !h.disabled).collect();
        Phase {
            hook_type,
            any: !enabled.is_empty(),
            body_text: enabled.iter().any(|h| !h.raw_body_only),
        }
    }
}

struct Route {
    api: Api,
    pre: Phase,
    auth: Phase,
    post_key_auth: Phase,
    post: Phase,
    response: Phase,
}

pub struct Gateway {
    bridge: Bridge,
    routes: Vec<Route>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Lists the definition files named by `apps` (files, or directories of *.json), sorted.
fn app_files(apps: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for a in apps {
        let p = PathBuf::from(a);
        if p.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| format!("reading {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(p);
        }
    }
    Ok(files)
}

impl Gateway {
    /// Opens the bridge, initialises it, loads every API definition and builds the routing table.
    pub fn start(config: &Config) -> Result<Gateway, String> {
        let bridge = Bridge::open(Path::new(&config.bridge))?;
        let init = config
            .coprocess_options
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "{}".into());
        bridge
            .init(&init)
            .map_err(|e| format!("CoProcessInit: {e}"))?;
        for file in app_files(&config.apps)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            bridge
                .load_api(&text)
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        let apis: Vec<Api> = serde_json::from_str(&bridge.list_apis())
            .map_err(|e| format!("CoProcessListApis: {e}"))?;
        let mut routes: Vec<Route> = apis
            .into_iter()
            .map(|api| Route {
                pre: Phase::of(HookType::Pre, &api.pre),
                auth: Phase::of(HookType::CustomKeyCheck, api.auth_check.as_slice()),
                post_key_auth: Phase::of(HookType::PostKeyAuth, &api.post_key_auth),
                post: Phase::of(HookType::Post, &api.post),
                response: Phase::of(HookType::Response, &api.response),
                api,
            })
            .collect();
        // Longest listen path first.
        routes.sort_by_key(|r| std::cmp::Reverse(r.api.listen_path.len()));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Gateway {
            bridge,
            routes,
            client,
        })
    }

    /// The loaded APIs: (api_id, listen_path, target_url).
    pub fn describe(&self) -> Vec<(String, String, String)> {
        self.routes
            .iter()
            .map(|r| {
                (
                    r.api.api_id.clone(),
                    r.api.listen_path.clone(),
                    r.api.target_url.clone(),
                )
            })
            .collect()
    }

    fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            let lp = if r.api.listen_path.is_empty() {
                "/"
            } else {
                r.api.listen_path.as_str()
            };
            path.starts_with(lp) || path == lp.trim_end_matches('/')
        })
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let gw = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let gw = gw.clone();
                    let (method, path) = (req.method().to_string(), req.uri().to_string());
                    let served = async move { gw.handle(req).await };
                    async move { Ok::<_, Infallible>(access_log::logged(method, path, served).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() == "/metrics" {
            return self.metrics();
        }
        let Some(route) = self.route(req.uri().path()) else {
            return error(StatusCode::NOT_FOUND, "no API listens on this path");
        };
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut working = Working::new(
            parts.method.as_str(),
            path_and_query,
            parts.headers,
            body,
            &host,
        );
        let api = &route.api;
        let mut session: Option<SessionState> = None;
        let mut metadata: HashMap<String, String> = HashMap::new();

        for phase in [route.pre, route.auth, route.post_key_auth, route.post] {
            if !phase.any {
                continue;
            }
            let sent = working.mini_request(phase.body_text);
            // Tyk sends the session to every hook after authentication, whatever require_session
            // says (only its JSVM reads that); Pre and CustomKeyCheck hooks get none.
            let ctx = Context {
                api_id: &api.api_id,
                org_id: &api.org_id,
                session: session.as_ref().filter(|_| {
                    !matches!(phase.hook_type, HookType::Pre | HookType::CustomKeyCheck)
                }),
                metadata: &metadata,
            };
            let Some(out) = self.run(object::object(phase.hook_type, sent.clone(), &ctx)) else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "Middleware error");
            };
            let got = out.request.clone().unwrap_or_default();
            if let Some(answer) = answered(&got) {
                return answer;
            }
            working.apply(&sent, &got);
            if phase.hook_type == HookType::CustomKeyCheck {
                // Tyk: no session, or no metadata["token"] in it, is a failed authentication.
                let token = out
                    .metadata
                    .get("token")
                    .or_else(|| out.session.as_ref()?.metadata.get("token"));
                if out.session.is_none() || token.is_none_or(|t| t.is_empty()) {
                    return error(StatusCode::FORBIDDEN, "Forbidden");
                }
                session = out.session.clone();
                metadata = out.metadata.clone();
            }
        }

        let mut upstream = match self.proxy(api, &working).await {
            Ok(r) => r,
            Err(why) => {
                eprintln!("coprocess-gateway: upstream of API '{}': {why}", api.api_id);
                return error(
                    StatusCode::BAD_GATEWAY,
                    "There was a problem proxying the request",
                );
            }
        };

        if route.response.any {
            let phase = route.response;
            let sent_request = working.mini_request(phase.body_text);
            let sent = upstream.to_object(phase.body_text);
            let ctx = Context {
                api_id: &api.api_id,
                org_id: &api.org_id,
                session: session.as_ref(),
                metadata: &metadata,
            };
            let mut obj = object::object(HookType::Response, sent_request, &ctx);
            obj.response = Some(sent.clone());
            let Some(out) = self.run(obj) else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "Middleware error");
            };
            // Tyk's response hooks ignore return_overrides.
            upstream.apply(&sent, &out.response.unwrap_or_default());
        }
        respond(upstream)
    }

    /// The bridge's metrics (CoProcessMetrics) in Prometheus' text format.
    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.bridge.metrics())));
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }

    /// Dispatches an Object through the bridge; `None` (logged) when the bridge fails.
    fn run(&self, obj: Object) -> Option<Object> {
        let started = std::time::Instant::now();
        let out = self.bridge.dispatch(&obj.encode_to_vec());
        access_log::add_plugin_time(started.elapsed());
        let out = out
            .map_err(|e| eprintln!("coprocess-gateway: Dispatch failed: {e}"))
            .ok()?;
        Object::decode(out.as_slice())
            .map_err(|e| {
                eprintln!("coprocess-gateway: Dispatch returned an undecodable Object: {e}")
            })
            .ok()
    }

    async fn proxy(&self, api: &Api, working: &Working) -> Result<UpstreamResponse, String> {
        if api.target_url.is_empty() {
            return Err("the API has no target URL".into());
        }
        let mut path = working.path_and_query();
        if api.strip_listen_path {
            let lp = api.listen_path.trim_end_matches('/');
            if let Some(rest) = path.strip_prefix(lp) {
                path = if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    format!("/{rest}")
                };
            }
        }
        let target = api.target_url.trim_end_matches('/');
        let uri: hyper::Uri = format!("{target}{path}")
            .parse()
            .map_err(|e| format!("bad upstream URL {target}{path}: {e}"))?;
        let mut builder = Request::builder()
            .method(working.method.as_str())
            .uri(uri.clone());
        for (name, value) in &working.headers {
            if !is_hop_by_hop(name) && name != HOST {
                builder = builder.header(name, value);
            }
        }
        if let Some(authority) = uri.authority() {
            builder = builder.header(HOST, authority.as_str());
        }
        let request = builder
            .body(Full::new(working.body.clone()))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut headers = parts.headers;
        headers.retain_hop_by_hop();
        Ok(UpstreamResponse {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }
}

trait RetainHopByHop {
    fn retain_hop_by_hop(&mut self);
}

impl RetainHopByHop for hyper::HeaderMap {
    /// Drops hop-by-hop headers and the length (the body is re-framed).
    fn retain_hop_by_hop(&mut self) {
        let names: Vec<HeaderName> = self.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
        for n in names {
            self.remove(n);
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// The answer a hook asked for, when its return_overrides.response_code is > 0 (0 and below are
/// Tyk's "no override").
fn answered(request: &coprocess_proto::MiniRequestObject) -> Option<Response<Full<Bytes>>> {
    let ro = request.return_overrides.as_ref()?;
    if ro.response_code <= 0 {
        return None;
    }
    let (status, headers, body) = object::override_answer(ro);
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Some(resp)
}

fn respond(upstream: UpstreamResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(upstream.body));
    *resp.status_mut() = StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = upstream.headers;
    headers.retain_hop_by_hop();
    *resp.headers_mut() = headers;
    resp
}

/// A JSON error answer, as Tyk writes them.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
