//! The gateway: routes a request to an API by listen path, runs the API's hooks through the bridge
//! in Tyk's order (Pre, CustomKeyCheck, PostKeyAuth, Post), proxies to the upstream, then runs the
//! Response hooks. A phase whose API has no hooks is not dispatched at all.
//!
//! Objects are written straight from the request into a buffer and answers are read in place
//! (coprocess-host): no prost Object is built on the request path. Hooks of fast native drivers run
//! on the async worker serving the request; every other driver's run off the async workers, on the
//! driver's lane (one thread, see `lane.rs`) or the bounded blocking pool, so a slow hook (Python,
//! gRPC) never stalls other connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coprocess_host::{
    answer, encode_object, override_answer, Answer, Auth, Bridge, HookRequest, ObjectContext,
    RequestEdits, UpstreamResponse, METRICS_PROMETHEUS,
};
use coprocess_proto::HookType;
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
use tokio::sync::Semaphore;

use crate::access_log::{self, AccessLog};
use crate::lane::{Lane, Lost, Ran};
use crate::object_buffer;

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
    /// Drivers (by the name they are loaded under) whose hooks run on the async worker serving the
    /// request: fast native code, where a thread switch would cost more than the hook. Hooks of any
    /// other driver, and of APIs that name none, run off the async workers: on the driver's lane, or
    /// on the blocking pool.
    #[serde(default = "default_inline_drivers")]
    pub inline_drivers: Vec<String>,
    /// How long a hook queued on its driver's lane (one thread per driver that is not inline) waits
    /// for the lane before it runs on the blocking pool instead; while the lane's current call has
    /// run longer than this, hooks go to the pool at once. 0: no lanes, every such hook runs on the
    /// blocking pool.
    #[serde(default = "default_lane_patience_ms")]
    pub lane_patience_ms: u64,
    /// The most hook dispatches running off the async workers (on lanes and the blocking pool) at
    /// once; more wait for a turn.
    #[serde(default = "default_blocking_dispatches")]
    pub blocking_dispatches: usize,
    /// How long a request waits for a turn on the blocking pool before it is answered 503
    /// (0: it does not wait).
    #[serde(default = "default_blocking_wait_ms")]
    pub blocking_wait_ms: u64,
    /// How often the access log's queued lines are written out (also at SIGINT/SIGTERM).
    #[serde(default = "default_access_log_flush_ms")]
    pub access_log_flush_ms: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_inline_drivers() -> Vec<String> {
    vec!["native".into()]
}

fn default_lane_patience_ms() -> u64 {
    5
}

fn default_blocking_dispatches() -> usize {
    64
}

fn default_blocking_wait_ms() -> u64 {
    1000
}

fn default_access_log_flush_ms() -> u64 {
    access_log::FLUSH_EVERY.as_millis() as u64
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
    /// The driver the API's hooks run in (none: the only driver loaded).
    #[serde(default)]
    pub driver: Option<String>,
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

/// Where a route's hooks are dispatched.
enum Runner {
    /// On the async worker serving the request (a fast driver).
    Inline,
    /// Off the async workers: on the driver's lane, or (none) on the blocking pool.
    Offload(Option<Arc<Lane>>),
}

struct Route {
    api: Api,
    pre: Phase,
    auth: Phase,
    post_key_auth: Phase,
    post: Phase,
    response: Phase,
    runner: Runner,
}

impl Route {
    /// The phases run before the upstream is called, in Tyk's order.
    fn request_phases(&self) -> [Phase; 4] {
        [self.pre, self.auth, self.post_key_auth, self.post]
    }

    /// Some phase, before or after the upstream, has a hook.
    fn hooked(&self) -> bool {
        self.request_phases().iter().any(|phase| phase.any) || self.response.any
    }

    /// The Object's `spec` for this API's hooks.
    fn spec(&self) -> [(&str, &str); 3] {
        [
            ("APIID", self.api.api_id.as_str()),
            ("OrgID", self.api.org_id.as_str()),
            ("bundle_hash", ""),
        ]
    }

    /// Runs the hooks of the request phases in Tyk's order, each answer applied to the request
    /// before the next phase's Object is written. Err: the response that ends the request here (a
    /// hook's override, a failed hook or auth).
    fn run_request_phases(&self, bridge: Bridge, state: &mut Hooked) -> Result<(), Ended> {
        let spec = self.spec();
        for phase in self.request_phases() {
            if !phase.any {
                continue;
            }
            // Tyk sends the session to every hook after authentication, whatever require_session
            // says (only its JSVM reads that); Pre and CustomKeyCheck hooks get none.
            let ctx = ObjectContext {
                hook_name: "",
                session: (state.authenticated
                    && !matches!(phase.hook_type, HookType::Pre | HookType::CustomKeyCheck))
                .then_some(state.auth.session.as_slice()),
                metadata: &state.auth.metadata,
                spec: &spec,
                body_text: phase.body_text,
            };
            let sent = encode_object(
                &mut state.object,
                phase.hook_type,
                &state.request,
                None,
                &ctx,
            );
            let answer = dispatch(bridge, &state.object, &mut state.plugin_time)
                .map_err(|failed| Box::new(failed.response()))?;
            let edits = RequestEdits::read(&answer)
                .map_err(|e| Box::new(middleware_error(&e.to_string())))?;
            let overrides = edits
                .return_overrides()
                .map_err(|e| Box::new(middleware_error(&e.to_string())))?;
            if let Some(answer) = overrides.as_ref().and_then(override_answer) {
                return Err(Box::new(answered(answer)));
            }
            state
                .request
                .apply(&edits, &state.object, &sent)
                .map_err(|e| Box::new(middleware_error(&e.to_string())))?;
            if phase.hook_type == HookType::CustomKeyCheck {
                match Auth::read(&answer) {
                    Ok(Some(granted)) => {
                        state.auth = granted;
                        state.authenticated = true;
                    }
                    Ok(None) => return Err(Box::new(error(StatusCode::FORBIDDEN, "Forbidden"))),
                    Err(e) => return Err(Box::new(middleware_error(&e.to_string()))),
                }
            }
        }
        Ok(())
    }
}

/// The response that ends a request before its upstream is called (boxed: only on this path).
type Ended = Box<Response<Full<Bytes>>>;

/// A request on its way through the hooks: what the request phases change and hand on, moved to
/// wherever they run.
struct Hooked {
    request: HookRequest,
    /// What CustomKeyCheck hands on: the session and the Object's metadata, kept encoded.
    auth: Auth,
    authenticated: bool,
    /// The buffer each phase writes its Object into.
    object: Vec<u8>,
    /// Time spent in Dispatch (for the access log).
    plugin_time: Duration,
}

/// One Dispatch of an encoded Object (a failure logged); its time is added to `spent`.
fn dispatch(bridge: Bridge, object: &[u8], spent: &mut Duration) -> Result<Answer, Failed> {
    let started = std::time::Instant::now();
    let out = bridge.dispatch(object);
    *spent += started.elapsed();
    out.map_err(|e| {
        eprintln!("coprocess-gateway: Dispatch failed: {e}");
        Failed::Dispatch
    })
}

pub struct Gateway {
    bridge: Bridge,
    routes: Vec<Arc<Route>>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// One permit per dispatch running on the blocking pool.
    blocking: Arc<Semaphore>,
    /// The longest wait for a permit.
    blocking_wait: Duration,
    /// Requests answered 503 because no permit came within `blocking_wait`.
    blocking_timeouts: AtomicU64,
    /// Hand-offs to a lane that ran on the blocking pool instead (the lane was held up).
    lane_fallbacks: AtomicU64,
    log: AccessLog,
}

/// Why a hook phase produced no answer.
enum Failed {
    /// The bridge (or the dispatching thread) failed; logged.
    Dispatch,
    /// No turn on the blocking pool within the wait limit.
    Busy,
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
        let apis = bridge
            .list_apis()
            .map_err(|e| format!("CoProcessListApis: {e}"))?;
        let apis: Vec<Api> =
            serde_json::from_str(&apis).map_err(|e| format!("CoProcessListApis: {e}"))?;
        // One lane per driver that is not inline ("" for APIs that name none).
        let mut lanes: HashMap<String, Arc<Lane>> = HashMap::new();
        let mut routes = Vec::with_capacity(apis.len());
        for api in apis {
            let driver = api.driver.as_deref().unwrap_or("");
            let runner = if config.inline_drivers.iter().any(|d| d == driver) {
                Runner::Inline
            } else if config.lane_patience_ms == 0 {
                Runner::Offload(None)
            } else {
                let lane = match lanes.get(driver) {
                    Some(lane) => lane.clone(),
                    None => {
                        let patience = Duration::from_millis(config.lane_patience_ms);
                        let lane = Lane::start(&format!("lane-{driver}"), patience)
                            .map(Arc::new)
                            .map_err(|e| format!("starting the lane of driver '{driver}': {e}"))?;
                        lanes.insert(driver.to_owned(), lane.clone());
                        lane
                    }
                };
                Runner::Offload(Some(lane))
            };
            routes.push(Arc::new(Route {
                pre: Phase::of(HookType::Pre, &api.pre),
                auth: Phase::of(HookType::CustomKeyCheck, api.auth_check.as_slice()),
                post_key_auth: Phase::of(HookType::PostKeyAuth, &api.post_key_auth),
                post: Phase::of(HookType::Post, &api.post),
                response: Phase::of(HookType::Response, &api.response),
                runner,
                api,
            }));
        }
        // Longest listen path first.
        routes.sort_by_key(|r| std::cmp::Reverse(r.api.listen_path.len()));
        // Requests go out whole: Nagle would only hold back a body written after its headers.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        if config.blocking_dispatches == 0 {
            return Err("blocking_dispatches must be at least 1".into());
        }
        if config.access_log_flush_ms == 0 {
            return Err("access_log_flush_ms must be at least 1".into());
        }
        Ok(Gateway {
            bridge,
            routes,
            client,
            blocking: Arc::new(Semaphore::new(config.blocking_dispatches)),
            blocking_wait: Duration::from_millis(config.blocking_wait_ms),
            blocking_timeouts: AtomicU64::new(0),
            lane_fallbacks: AtomicU64::new(0),
            log: AccessLog::start(
                std::io::stdout(),
                access_log::QUEUE,
                Duration::from_millis(config.access_log_flush_ms),
            ),
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

    fn route(&self, path: &str) -> Option<&Arc<Route>> {
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
                let svc = service_fn(move |req: Request<Incoming>| {
                    let gw = gw.clone();
                    let method = req.method().clone();
                    let path: Box<str> = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .into();
                    async move {
                        // Boxed: the request's future is large (every phase's and the proxy's
                        // state), and hyper and the log's wrappers move their futures by value
                        // before they first run (memcpy of the whole state each time); a box
                        // moves as a pointer.
                        let served = Box::pin(gw.handle(req));
                        Ok::<_, Infallible>(gw.log.logged(method, path, served).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    /// Writes out the access log's queued lines and stops it (at shutdown).
    pub fn close(&self) {
        self.log.close();
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
        let request_uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let working = HookRequest {
            method: parts.method,
            url: request_uri.clone(),
            headers: parts.headers,
            body,
            host,
            request_uri,
        };
        let mut state = Hooked {
            request: working,
            auth: Auth::default(),
            authenticated: false,
            object: if route.hooked() {
                object_buffer::take()
            } else {
                Vec::new()
            },
            plugin_time: Duration::ZERO,
        };
        if route.request_phases().iter().any(|phase| phase.any) {
            let ended = if let Runner::Inline = route.runner {
                route.run_request_phases(self.bridge, &mut state)
            } else {
                // All request phases in one hand-off: one trip off the workers for Pre, auth and
                // Post.
                let (bridge, hooks) = (self.bridge, route.clone());
                let ran = self
                    .offload(&route.runner, move || {
                        let ended = hooks.run_request_phases(bridge, &mut state);
                        (state, ended)
                    })
                    .await;
                let ended;
                (state, ended) = match ran {
                    Ok(ran) => ran,
                    Err(failed) => return failed.response(),
                };
                ended
            };
            access_log::add_plugin_time(std::mem::take(&mut state.plugin_time));
            if let Err(response) = ended {
                return *response;
            }
        }
        let Hooked {
            request: working,
            auth,
            authenticated,
            mut object,
            ..
        } = state;
        let api = &route.api;

        // Response hooks are shown the request too; otherwise it moves into the upstream request.
        let kept = route.response.any.then(|| working.clone());
        if kept.is_none() {
            // For the next request on this thread while this one waits for its upstream.
            object_buffer::give_back(std::mem::take(&mut object));
        }
        let mut upstream = match self.proxy(api, working).await {
            Ok(r) => r,
            Err(why) => {
                eprintln!("coprocess-gateway: upstream of API '{}': {why}", api.api_id);
                return error(
                    StatusCode::BAD_GATEWAY,
                    "There was a problem proxying the request",
                );
            }
        };

        if let Some(working) = kept {
            let spec = route.spec();
            let ctx = ObjectContext {
                hook_name: "",
                session: authenticated.then_some(auth.session.as_slice()),
                metadata: &auth.metadata,
                spec: &spec,
                body_text: route.response.body_text,
            };
            encode_object(
                &mut object,
                HookType::Response,
                &working,
                Some(&upstream),
                &ctx,
            );
            let bridge = self.bridge;
            let ran = self
                .offload(&route.runner, move || {
                    let mut spent = Duration::ZERO;
                    let answer = dispatch(bridge, &object, &mut spent);
                    (object, answer, spent)
                })
                .await;
            let (answer, spent);
            (object, answer, spent) = match ran {
                Ok(ran) => ran,
                Err(failed) => return failed.response(),
            };
            access_log::add_plugin_time(spent);
            let answer = match answer {
                Ok(answer) => answer,
                Err(failed) => return failed.response(),
            };
            // Tyk's response hooks ignore return_overrides.
            match (answer::response(&object), answer::response(&answer)) {
                (Ok(sent), Ok(got)) => upstream.apply(&sent, &got),
                (Err(e), _) | (_, Err(e)) => return middleware_error(&e.to_string()),
            }
            object_buffer::give_back(object);
        }
        respond(upstream)
    }

    /// The bridge's metrics (CoProcessMetrics) in Prometheus' text format, and the gateway's own.
    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut text = match self.bridge.metrics(METRICS_PROMETHEUS) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("coprocess-gateway: CoProcessMetrics failed: {e}");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable");
            }
        };
        let counters = [
            (
                "coprocess_gateway_blocking_wait_timeouts_total",
                "Requests answered 503 because no turn on the blocking pool came within blocking_wait_ms.",
                self.blocking_timeouts.load(Ordering::Relaxed),
            ),
            (
                "coprocess_gateway_lane_fallbacks_total",
                "Hook hand-offs to a driver's lane that ran on the blocking pool because the lane was held up by a long call.",
                self.lane_fallbacks.load(Ordering::Relaxed),
            ),
            (
                "coprocess_gateway_access_log_dropped_total",
                "Access-log lines dropped because the log's queue was full.",
                self.log.dropped(),
            ),
        ];
        for (name, help, value) in counters {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        let mut resp = Response::new(Full::new(Bytes::from(text)));
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }

    /// Runs `work` (hook dispatches) where `runner` says: on this worker, or off the async workers
    /// (waiting at most `blocking_wait` for a permit, without holding the worker).
    async fn offload<T: Send + 'static>(
        &self,
        runner: &Runner,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failed> {
        let Runner::Offload(lane) = runner else {
            return Ok(work());
        };
        let waited =
            tokio::time::timeout(self.blocking_wait, self.blocking.clone().acquire_owned()).await;
        let Ok(permit) = waited else {
            self.blocking_timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(Failed::Busy);
        };
        let work = move || {
            let _permit = permit;
            work()
        };
        let done = match lane {
            Some(lane) => match lane.run(work).await {
                Ok((done, ran)) => {
                    if ran == Ran::Pool {
                        self.lane_fallbacks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(done)
                }
                Err(Lost) => Err("the hook panicked".to_owned()),
            },
            None => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| e.to_string()),
        };
        done.map_err(|e| {
            eprintln!("coprocess-gateway: the dispatching thread failed: {e}");
            Failed::Dispatch
        })
    }

    /// Sends the request to the API's upstream (its headers, less hop-by-hop ones and Host, move
    /// into the upstream request) and reads the whole response.
    async fn proxy(&self, api: &Api, working: HookRequest) -> Result<UpstreamResponse, String> {
        if api.target_url.is_empty() {
            return Err("the API has no target URL".into());
        }
        let url = upstream_url(api, &working.url);
        let uri = hyper::Uri::try_from(url).map_err(|e| {
            let url = upstream_url(api, &working.url);
            format!("bad upstream URL {url}: {e}")
        })?;
        let mut headers = working.headers;
        headers.retain_hop_by_hop();
        headers.remove(HOST);
        if let Some(authority) = uri.authority() {
            let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
            headers.insert(HOST, host);
        }
        let mut request = Request::new(Full::new(working.body));
        *request.method_mut() = working.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
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

/// The upstream URL of a request whose path and query are `url`: the API's target, then the path
/// (less the listen path when the API strips it). Written into one String, which the `Uri` keeps
/// without a copy.
fn upstream_url(api: &Api, url: &str) -> String {
    let mut path = url;
    let mut slash = "";
    if api.strip_listen_path {
        let lp = api.listen_path.trim_end_matches('/');
        if let Some(rest) = path.strip_prefix(lp) {
            path = rest;
            if !rest.starts_with('/') {
                slash = "/";
            }
        }
    }
    let target = api.target_url.trim_end_matches('/');
    let mut out = String::with_capacity(target.len() + slash.len() + path.len());
    out.push_str(target);
    out.push_str(slash);
    out.push_str(path);
    out
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

impl Failed {
    fn response(self) -> Response<Full<Bytes>> {
        match self {
            Failed::Dispatch => error(StatusCode::INTERNAL_SERVER_ERROR, "Middleware error"),
            // Tyk's words for an upstream it will not call for now.
            Failed::Busy => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable.",
            ),
        }
    }
}

/// The response a hook asked for through return_overrides.
fn answered(answer: coprocess_host::OverrideAnswer) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in answer.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// A hook's answer the gateway cannot apply: logged, answered as a failed hook.
fn middleware_error(why: &str) -> Response<Full<Bytes>> {
    eprintln!("coprocess-gateway: {why}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "Middleware error")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api(listen_path: &str, target_url: &str, strip_listen_path: bool) -> Api {
        Api {
            api_id: "a".into(),
            org_id: "o".into(),
            listen_path: listen_path.into(),
            strip_listen_path,
            target_url: target_url.into(),
            pre: Vec::new(),
            post_key_auth: Vec::new(),
            post: Vec::new(),
            response: Vec::new(),
            auth_check: None,
            driver: None,
        }
    }

    #[test]
    fn the_upstream_url_strips_the_listen_path_when_asked() {
        let stripping = api("/pets/", "http://up:8080/", true);
        assert_eq!(
            upstream_url(&stripping, "/pets/x?a=1"),
            "http://up:8080/x?a=1"
        );
        assert_eq!(upstream_url(&stripping, "/pets/"), "http://up:8080/");
        // What follows the listen path always starts a path.
        assert_eq!(upstream_url(&stripping, "/pets?a=1"), "http://up:8080/?a=1");
        assert_eq!(upstream_url(&stripping, "/petsx"), "http://up:8080/x");
        // A URL a hook moved out of the listen path goes as it is.
        assert_eq!(
            upstream_url(&stripping, "/other/y"),
            "http://up:8080/other/y"
        );
        let keeping = api("/pets/", "http://up:8080/base", false);
        assert_eq!(
            upstream_url(&keeping, "/pets/x"),
            "http://up:8080/base/pets/x"
        );
    }
}
