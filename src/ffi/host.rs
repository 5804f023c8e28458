//! The bridge's own host-facing exports (DESIGN §3). The doc comments here become `api.h`'s: each says
//! who owns every pointer and whether the function is thread-safe.

use std::ffi::{c_char, c_int, c_void};

use super::{cstr_arg, ffi_boundary, opt_str_arg, status, str_arg};
use crate::config::BridgeConfig;
use crate::dispatch;
use crate::error::{
    fail, last_error_ptr, set_last_error, Error, COPROCESS_ERR_EMPTY, COPROCESS_ERR_NULL_ARGUMENT,
    COPROCESS_ERR_PANIC,
};
use crate::events::CoProcessEventHandler;
use crate::logging::{CoProcessLogHandler, Level};
use crate::message::{malloc_cstring, CoProcessMessage};
use crate::runtime::global;

const PANIC: c_int = COPROCESS_ERR_PANIC as c_int;

/// Initialises the bridge. `config_json` is a JSON object shaped like tyk.conf's `coprocess_options`
/// (bare or as `{"coprocess_options": {...}}`) plus an optional `drivers` list
/// (`[{"name": "...", "path": "...", "config": {...}}]`), `event_queue_capacity` (default 1024),
/// `event_queue_max_bytes` (default 16 MiB) and `log_level`;
/// the `TYK_GW_COPROCESSOPTIONS_*` environment variables override it. NULL means defaults.
/// Plugin bundles take tyk.conf's root keys `enable_bundle_downloader`, `bundle_base_url`,
/// `public_key_path`, `bundle_insecure_skip_verify`, `middleware_path`,
/// `skip_verify_existing_plugin_bundle` (and their `TYK_GW_*` variables).
/// Idempotent: drivers already loaded under a listed name are kept. Calling it is optional: every other
/// function works with defaults.
/// Ownership: `config_json` is borrowed for the call. Thread-safe.
/// Returns 0, or an error code with the message in CoProcessLastError().
#[no_mangle]
pub extern "C" fn CoProcessInit(config_json: *const c_char) -> c_int {
    ffi_boundary!(PANIC, {
        status((|| {
            // SAFETY: the caller passes NULL or a NUL-terminated string.
            let text = unsafe { opt_str_arg(config_json, "CoProcessInit: config_json") }?;
            let cfg = BridgeConfig::parse(text, |k| std::env::var(k).ok())?;
            global().configure(cfg)
        })())
    })
}

/// Loads the driver library at `path` under `name` (e.g. "native", "python", "grpc"), handing it
/// `config_json` (NULL = "{}"). The same file may be loaded under several names: each gets its own
/// instance. Errors name the file and the missing symbol or wrong ABI version; a driver's failed init is
/// an error too.
/// Ownership: all arguments are borrowed for the call. Thread-safe.
/// Returns 0, or an error code with the message in CoProcessLastError().
#[no_mangle]
pub extern "C" fn CoProcessLoadDriver(
    name: *const c_char,
    path: *const c_char,
    config_json: *const c_char,
) -> c_int {
    ffi_boundary!(PANIC, {
        status((|| {
            // SAFETY: the caller passes NULL or NUL-terminated strings.
            let (name, path, config) = unsafe {
                (
                    str_arg(name, "CoProcessLoadDriver: name")?,
                    str_arg(path, "CoProcessLoadDriver: path")?,
                    opt_str_arg(config_json, "CoProcessLoadDriver: config_json")?,
                )
            };
            global().load_driver(name, path, config)
        })())
    })
}

/// Shared body of Dispatch and DispatchWithDriver. The input is read before `out` is written, so
/// `in` and `out` may be the same struct.
///
/// # Safety
/// `input`/`out` must be NULL or valid pointers; `input` must describe readable memory.
unsafe fn dispatch_into(
    driver: Option<&str>,
    input: *const CoProcessMessage,
    out: *mut CoProcessMessage,
) -> crate::error::Result<()> {
    if out.is_null() {
        return Err(Error::new(
            COPROCESS_ERR_NULL_ARGUMENT,
            "Dispatch: out is NULL",
        ));
    }
    let input = if input.is_null() {
        None
    } else {
        // SAFETY: non-NULL, caller-owned; copied (two plain fields) before `out`, which may be the same
        // struct, is touched.
        Some(unsafe { std::ptr::read(input) })
    };
    // SAFETY: `out` is non-NULL and points to a caller-owned struct.
    let out = unsafe { &mut *out };
    *out = CoProcessMessage::empty();
    let Some(input) = input else {
        return Err(Error::new(
            COPROCESS_ERR_NULL_ARGUMENT,
            "Dispatch: in is NULL",
        ));
    };
    // SAFETY: the caller guarantees p_data/length describe readable memory for the call; clearing
    // `out` changed only the struct, not the bytes it pointed to.
    let bytes = unsafe { input.as_bytes("Dispatch: in") }?;
    let result = dispatch::dispatch(global(), driver, bytes)?;
    result.into_message(out)
}

/// Runs one hook: `in` holds a serialized coprocess.Object. When its `spec["APIID"]` names an API
/// loaded with CoProcessLoadApi, it goes to that API's driver and chain (see CoProcessLoadApi);
/// otherwise to the only loaded driver. The input is checked to be a well-formed Object
/// before any driver sees it, and so is the driver's output.
/// Ownership: `in` is BORROWED: the caller keeps and frees it (Tyk's old cgo Python driver consumed its
/// input; this bridge does not). On success `out->p_data` is a malloc'd buffer of `out->length` bytes
/// owned by the caller: release it with CoProcessMessageFree(out) or free(out->p_data). On failure
/// `out` is set to {NULL, 0}.
/// In place: `in` and `out` may point to the same struct (`Dispatch(&m, &m)`): the input is read
/// before `out` is written, so the Object dispatched is the one `m` held. Afterwards `m` holds the
/// result (or {NULL, 0}): keep your own copy of the input pointer to free the input.
/// Thread-safe: call it from any number of threads; no global lock is held while a driver runs.
/// Returns 0, or an error code with the message in CoProcessLastError().
#[no_mangle]
pub extern "C" fn Dispatch(input: *const CoProcessMessage, out: *mut CoProcessMessage) -> c_int {
    ffi_boundary!(PANIC, {
        // SAFETY: pointer validity is checked inside; contents are the caller's contract.
        status(unsafe { dispatch_into(None, input, out) })
    })
}

/// As Dispatch (`in` may equal `out` there too), routed to the driver loaded under `driver`.
/// Ownership: `driver` and `in` are borrowed; `out->p_data` as for Dispatch. Thread-safe.
#[no_mangle]
pub extern "C" fn DispatchWithDriver(
    driver: *const c_char,
    input: *const CoProcessMessage,
    out: *mut CoProcessMessage,
) -> c_int {
    ffi_boundary!(PANIC, {
        status((|| {
            // SAFETY: NULL or a NUL-terminated string.
            let name = match unsafe { str_arg(driver, "DispatchWithDriver: driver") } {
                Ok(name) => name,
                Err(e) => {
                    if !out.is_null() {
                        // SAFETY: non-NULL caller-owned struct; cleared so a failure leaves {NULL, 0}
                        // (`in` is not read after a bad driver name, so it may be `out`).
                        unsafe { *out = CoProcessMessage::empty() };
                    }
                    return Err(e);
                }
            };
            // SAFETY: pointer validity is checked inside.
            unsafe { dispatch_into(Some(name), input, out) }
        })())
    })
}

/// Delivers a Tyk event to every loaded driver, as JSON:
/// `{"message": {...}, "handler_name": "...", "spec": {"APIID": "...", "OrgID": "..."}}`.
/// Text that is not JSON is refused (the message is in CoProcessLastError()).
/// Ownership: `event_json` is borrowed for the call. Thread-safe.
#[no_mangle]
pub extern "C" fn DispatchEvent(event_json: *const c_char) {
    ffi_boundary!((), {
        // SAFETY: NULL or a NUL-terminated string.
        let r = unsafe { cstr_arg(event_json, "DispatchEvent: event_json") }
            .and_then(|json| dispatch::dispatch_event(global(), json));
        if let Err(e) = r {
            global().logs.log(Level::Warning, &e.message);
            set_last_error(&e.message);
        }
    })
}

/// Hot reload: calls every driver's reload hook; a driver whose file changed on disk is re-opened from a
/// private copy (an anonymous memory file, never a path in /tmp) and re-initialised, while calls
/// already in flight finish on the old version, which is unloaded once they have returned. A driver
/// whose new version fails to load (a missing symbol included) keeps serving with the old one (logged
/// at error level). Replace driver files by rename (mv), never by writing into a file that is loaded.
/// A driver's reload hook that calls Reload() again is ignored (logged), not a deadlock.
/// Thread-safe: dispatching threads see no error while it runs.
#[no_mangle]
pub extern "C" fn Reload() {
    ffi_boundary!((), {
        global().reload();
    })
}

/// Frees `msg->p_data` (a result of Dispatch) and sets `p_data = NULL, length = 0`. NULL `msg` or NULL
/// `p_data` is a no-op. Thread-safe (for distinct messages).
#[no_mangle]
pub extern "C" fn CoProcessMessageFree(msg: *mut CoProcessMessage) {
    ffi_boundary!((), {
        if msg.is_null() {
            return;
        }
        // SAFETY: non-NULL, caller-owned struct whose p_data came from malloc (Dispatch's contract).
        unsafe {
            libc::free((*msg).p_data);
            (*msg).p_data = std::ptr::null_mut();
            (*msg).length = 0;
        }
    })
}

/// Frees a string the bridge returned (TykGetData, CoProcessNextEvent). NULL is a no-op; `free()` works
/// too. Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessFree(p: *mut c_void) {
    // SAFETY: `p` is NULL or came from the bridge's malloc.
    unsafe { libc::free(p) }
}

/// The message of the last failure on the calling thread ("" when none). The pointer is owned by the
/// bridge: do not free it; it stays valid until the next failing call on this thread. Thread-safe (the
/// message is per thread).
#[no_mangle]
pub extern "C" fn CoProcessLastError() -> *const c_char {
    last_error_ptr()
}

/// Sets the function that receives events (drivers' trigger_event, TykTriggerEvent); NULL removes it.
/// Without a handler, events wait in a bounded queue drained with CoProcessNextEvent: at most
/// `event_queue_capacity` events and `event_queue_max_bytes` bytes (CoProcessInit); when full, the
/// oldest is dropped, counted and reported in the log. The handler is called on the thread that raised
/// the event, possibly from several threads at once; its strings are valid only during the call.
/// `user_data` is passed back untouched.
/// When this function returns, the previous handler is not running on any other thread and will not
/// be called again, so its `user_data` may be freed right away (calls in flight are waited for; a
/// handler may itself call this function: its own call is not waited for). Do not call it while
/// holding a lock your handler takes. Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessSetEventHandler(handler: CoProcessEventHandler, user_data: *mut c_void) {
    ffi_boundary!((), { global().events.set_handler(handler, user_data) })
}

/// Sets the function that receives log lines (drivers' log, CoProcessLog, the bridge's own); NULL
/// removes it, and logs go to stderr with their level. Levels: "debug", "info", "warning", "error".
/// Called on the logging thread, possibly from several threads at once; strings are valid only during
/// the call. Handlers nested more than 8 deep on one thread (a handler that logs) go to stderr.
/// When this function returns, the previous handler is not running on any other thread and will not
/// be called again, so its `user_data` may be freed right away (as for CoProcessSetEventHandler).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessSetLogHandler(handler: CoProcessLogHandler, user_data: *mut c_void) {
    ffi_boundary!((), { global().logs.set_handler(handler, user_data) })
}

/// Takes the oldest queued event (queued while no event handler is set). On success writes two
/// malloc'd strings the caller frees with CoProcessFree (or free) and returns 0; returns
/// COPROCESS_ERR_EMPTY when no event is waiting (nothing is written). Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessNextEvent(
    event_name: *mut *mut c_char,
    payload: *mut *mut c_char,
) -> c_int {
    ffi_boundary!(PANIC, {
        if event_name.is_null() || payload.is_null() {
            return fail(Error::new(
                COPROCESS_ERR_NULL_ARGUMENT,
                "CoProcessNextEvent: event_name and payload must not be NULL",
            ));
        }
        match global().events.next() {
            Some(ev) => {
                // SAFETY: both out-pointers are non-NULL and caller-owned.
                unsafe {
                    *event_name = malloc_cstring(&ev.name);
                    *payload = malloc_cstring(&ev.payload);
                }
                0
            }
            None => fail(Error::new(COPROCESS_ERR_EMPTY, "no event is waiting")),
        }
    })
}

/// Loads a plugin bundle (a directory) into the driver named `driver`, through its optional
/// CoProcessDriverLoadBundle. Ownership: arguments borrowed. Thread-safe.
/// Returns 0, or an error code with the message in CoProcessLastError().
#[no_mangle]
pub extern "C" fn CoProcessLoadBundle(driver: *const c_char, bundle_path: *const c_char) -> c_int {
    ffi_boundary!(PANIC, {
        status((|| {
            // SAFETY: NULL or NUL-terminated strings.
            let (name, path) = unsafe {
                (
                    str_arg(driver, "CoProcessLoadBundle: driver")?,
                    cstr_arg(bundle_path, "CoProcessLoadBundle: bundle_path")?,
                )
            };
            global().registry.get(name)?.load_bundle(path)
        })())
    })
}

/// Calls every driver's shutdown hook (each as soon as its calls in flight return), unloads them, and
/// forgets loaded APIs, queued events and stored data. The bridge may be initialised and used again afterwards.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessShutdown() {
    ffi_boundary!((), { global().shutdown() })
}

/// Tells the bridge about an API: `api_definition_json` is a Tyk API definition, classic
/// (`api_id`, `org_id`, `custom_middleware` with `pre`/`post`/`post_key_auth`/`response` lists,
/// `auth_check`, `driver`, `id_extractor`; `enable_coprocess_auth` or `custom_plugin_auth_enabled`;
/// `config_data`, `config_data_disabled`) or Tyk OAS (`x-tyk-api-gateway`: `info.id`, `info.orgId`,
/// `middleware.global.pluginConfig.driver`, `prePlugins`, `postAuthenticationPlugins`, `postPlugins`,
/// `responsePlugins`, `server.authentication.custom`). A definition with an api_id already loaded
/// replaces it. From then on Dispatch routes Objects whose `spec["APIID"]` is that id to the API's
/// driver and, when `hook_name` is empty, runs the API's whole chain for the Object's `hook_type`:
/// as in Tyk, each hook's answer is applied to the request (or, for Response hooks, the response)
/// and the next hook gets an Object built afresh from the result; the host gets the chain's net
/// effect; one that sets `request.return_overrides.response_code > 0` ends a request chain (0 or -1
/// is no override); disabled hooks are skipped; each hook's `raw_body_only` is honoured; Pre and CustomKeyCheck hooks get no session; `spec["config_data"]` is added when the API
/// has config data. An Object with a `hook_name` runs that one hook. CustomKeyCheck (named or not)
/// runs the `auth_check` behind the ID extractor and its cache: a
/// cached session whose `id_extractor_deadline` is in the future is returned without calling the
/// driver; a request the extractor finds nothing in is answered 400 "Authorization field missing".
/// A failed hook is answered through return_overrides: 403 "Key not authorised" for CustomKeyCheck,
/// 500 "Middleware error" otherwise (see CoProcessSetPlainErrors).
/// Ownership: borrowed for the call. Thread-safe.
/// A definition naming a plugin bundle (classic `custom_middleware_bundle`, OAS
/// `middleware.global.pluginConfig.bundle`) gets it fetched, verified and unpacked under
/// `<middleware_path>/bundles/<md5 of the name>/`; the manifest's hooks replace the API's, its driver
/// gets CoProcessDriverLoadBundle(dir) and hooks get `spec["bundle_hash"]`.
/// Returns 0, or COPROCESS_ERR_INVALID_API with a message naming the faulty field, or
/// COPROCESS_ERR_BUNDLE naming the bundle, the step and the reason (the API is then not loaded).
#[no_mangle]
pub extern "C" fn CoProcessLoadApi(api_definition_json: *const c_char) -> c_int {
    ffi_boundary!(PANIC, {
        status((|| {
            // SAFETY: NULL or a NUL-terminated string.
            let json =
                unsafe { str_arg(api_definition_json, "CoProcessLoadApi: api_definition_json") }?;
            let id = global().load_api(json)?;
            global().logs.log(Level::Info, format!("loaded API '{id}'"));
            Ok(())
        })())
    })
}

/// Forgets the API loaded under `api_id`: Objects naming it are routed as if it had never been loaded.
/// Ownership: borrowed. Thread-safe.
/// Returns 0, or COPROCESS_ERR_UNKNOWN_API when no API has that id.
#[no_mangle]
pub extern "C" fn CoProcessUnloadApi(api_id: *const c_char) -> c_int {
    ffi_boundary!(PANIC, {
        status((|| {
            // SAFETY: NULL or a NUL-terminated string.
            let id = unsafe { str_arg(api_id, "CoProcessUnloadApi: api_id") }?;
            global().apis.unload(id)
        })())
    })
}

/// The loaded APIs as a JSON array of their normalised form (`api_id`, `org_id`, `name`, `driver`,
/// `pre`, `post_key_auth`, `post`, `response` (lists of `{name, path, require_session, raw_body_only,
/// disabled}`), `auth_check`, `id_extractor`, `config_data`, `listen_path`, `strip_listen_path`,
/// `target_url`), sorted by api_id: what a host needs to route requests and to know which hook types
/// an API uses. Returns a malloc'd NUL-terminated string the caller frees with CoProcessFree (or
/// free), or NULL when memory is exhausted. Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessListApis() -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        let apis = global().apis.all();
        let list: Vec<&crate::api::ApiDefinition> = apis.iter().map(|a| a.as_ref()).collect();
        let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
        malloc_cstring(&json)
    })
}

/// Chooses how a failed hook on the API path (a driver error, panic or malformed output) is reported.
/// 0 (the default): as Tyk's gateway does, Dispatch succeeds and returns the hook's input answered
/// through `request.return_overrides`: 403 "Key not authorised" for CustomKeyCheck, 500 "Middleware
/// error" for the other hooks (the cause goes to the log). Non-zero: Dispatch fails with the plain
/// error code (COPROCESS_ERR_DRIVER_FAILED, COPROCESS_ERR_DRIVER_BAD_OUTPUT) and the cause in
/// CoProcessLastError(), as it does for Objects not routed to an API. Thread-safe; reset by
/// CoProcessShutdown.
#[no_mangle]
pub extern "C" fn CoProcessSetPlainErrors(plain: c_int) {
    ffi_boundary!((), { global().set_plain_errors(plain != 0) })
}
