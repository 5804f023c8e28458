# cython: language_level=3
# tyk_bridge.pyx — a Cython module that drives coprocess-bridge through api.h (declared in ../../api.pxd).
#
# It is the seeds' Cython snippet made whole: `call()` raises an event with TykTriggerEvent exactly as
# Tyk's README shows, and the rest wraps Dispatch and friends as a Python host would use them.
#
# Build (what tests/python_callers.rs does), from the repository root:
#     cargo build --release
#     python3 -m cython -3 -I . examples/cython/tyk_bridge.pyx -o target/tyk_bridge.c
#     cc -shared -fPIC -O2 $(python3-config --includes) -I . target/tyk_bridge.c \
#        -L target/release -lcoprocess_bridge -Wl,-rpath,$PWD/target/release \
#        -o target/tyk_bridge$(python3-config --extension-suffix)
# Run: PYTHONPATH=target python3 examples/cython/demo.py target/release/c_driver.so
#
# Errors: every failing call raises BridgeError(code, message), with the CoProcessStatus code and the
# bridge's CoProcessLastError() text. Threads: dispatch() releases the GIL while the driver runs.

from api cimport (
    CoProcessMessage, CoProcessStatus, COPROCESS_OK, COPROCESS_ERR_EMPTY,
    CoProcessInit, CoProcessLoadDriver, CoProcessLoadBundle, Reload, CoProcessShutdown,
    CoProcessLoadApi, CoProcessUnloadApi, CoProcessListApis, CoProcessSetPlainErrors,
    Dispatch, DispatchWithDriver, DispatchEvent,
    CoProcessMessageFree, CoProcessFree, CoProcessLastError,
    CoProcessSetEventHandler, CoProcessSetLogHandler, CoProcessNextEvent,
    TykStoreData, TykGetData, TykTriggerEvent, CoProcessLog,
)

# The status codes, for Python code that wants to compare BridgeError.code.
OK = COPROCESS_OK
ERR_EMPTY = COPROCESS_ERR_EMPTY
ERR_INVALID_OBJECT = <int>CoProcessStatus.COPROCESS_ERR_INVALID_OBJECT
ERR_UNKNOWN_DRIVER = <int>CoProcessStatus.COPROCESS_ERR_UNKNOWN_DRIVER
ERR_LOAD_FAILED = <int>CoProcessStatus.COPROCESS_ERR_LOAD_FAILED
ERR_INVALID_API = <int>CoProcessStatus.COPROCESS_ERR_INVALID_API
ERR_UNKNOWN_API = <int>CoProcessStatus.COPROCESS_ERR_UNKNOWN_API


class BridgeError(Exception):
    """A bridge call failed: `code` is the CoProcessStatus, `message` CoProcessLastError()."""

    def __init__(self, int code, str message):
        super().__init__(f"{message} (status {code})")
        self.code = code
        self.message = message


cdef str _last_error():
    return CoProcessLastError().decode("utf-8", "replace")


cdef int _check(int code) except -1:
    if code != COPROCESS_OK:
        raise BridgeError(code, _last_error())
    return 0


cdef bytes _utf8(object text):
    if isinstance(text, bytes):
        return text
    return (<str>text).encode("utf-8")


def call():
    """The seeds' snippet, verbatim in spirit: raise "my event" with payload "my payload"."""
    event_name = 'my event'.encode('utf-8')
    payload = 'my payload'.encode('utf-8')
    TykTriggerEvent(event_name, payload)


def init(config_json=None):
    """CoProcessInit: a JSON object like tyk.conf's coprocess_options (None = defaults)."""
    cdef bytes config
    if config_json is None:
        _check(CoProcessInit(NULL))
    else:
        config = _utf8(config_json)
        _check(CoProcessInit(config))


def load_driver(name, path, config_json=None):
    """CoProcessLoadDriver: load the driver library at `path` under `name`."""
    cdef bytes n = _utf8(name)
    cdef bytes p = _utf8(str(path))
    cdef bytes c
    if config_json is None:
        _check(CoProcessLoadDriver(n, p, NULL))
    else:
        c = _utf8(config_json)
        _check(CoProcessLoadDriver(n, p, c))


def load_bundle(driver, bundle_path):
    """CoProcessLoadBundle: hand a bundle directory to the driver named `driver`."""
    cdef bytes d = _utf8(driver)
    cdef bytes b = _utf8(str(bundle_path))
    _check(CoProcessLoadBundle(d, b))


def load_api(api_definition_json):
    """CoProcessLoadApi: a Tyk API definition (classic or OAS, JSON text). Objects whose
    spec["APIID"] names it are then routed to its driver and hook chain."""
    cdef bytes d = _utf8(api_definition_json)
    _check(CoProcessLoadApi(d))


def unload_api(api_id):
    """CoProcessUnloadApi: forget the API loaded under `api_id`."""
    cdef bytes i = _utf8(api_id)
    _check(CoProcessUnloadApi(i))


def list_apis():
    """CoProcessListApis: the loaded APIs, as JSON text (an array, sorted by api_id)."""
    cdef char* text = CoProcessListApis()
    if text == NULL:
        raise MemoryError("CoProcessListApis returned NULL")
    try:
        return (<bytes>text).decode("utf-8", "replace")
    finally:
        CoProcessFree(text)


def set_plain_errors(bint plain):
    """CoProcessSetPlainErrors: report failed hooks on the API path as errors (True) or, as Tyk's
    gateway does, as 403/500 answers through return_overrides (False, the default)."""
    CoProcessSetPlainErrors(plain)


def dispatch(const unsigned char[:] data, driver=None):
    """Dispatch (or DispatchWithDriver): run one hook on a serialized coprocess.Object, return the
    driver's serialized Object. The input is borrowed; the output is copied into `bytes` and the
    bridge's malloc'd buffer is freed with CoProcessMessageFree before returning."""
    cdef CoProcessMessage input
    cdef CoProcessMessage out
    cdef int code
    cdef bytes name
    cdef const char* name_ptr = NULL
    if data.shape[0] > 0x7FFFFFFF:
        raise ValueError("a CoProcessMessage holds at most 2 GiB - 1 bytes")
    input.p_data = <void*>&data[0] if data.shape[0] > 0 else NULL
    input.length = <int>data.shape[0]
    out.p_data = NULL
    out.length = 0
    if driver is not None:
        name = _utf8(driver)
        name_ptr = name
    with nogil:
        if name_ptr == NULL:
            code = Dispatch(&input, &out)
        else:
            code = DispatchWithDriver(name_ptr, &input, &out)
    _check(code)
    try:
        return (<char*>out.p_data)[:out.length] if out.length > 0 else b""
    finally:
        CoProcessMessageFree(&out)


def dispatch_event(event_json):
    """DispatchEvent: deliver a Tyk event (JSON text) to every loaded driver."""
    cdef bytes e = _utf8(event_json)
    DispatchEvent(e)


def reload():
    """Reload: hot-reload every driver whose file changed."""
    with nogil:
        Reload()


def shutdown():
    """CoProcessShutdown: unload every driver, forget events and stored data."""
    with nogil:
        CoProcessShutdown()


def trigger_event(event_name, payload):
    """TykTriggerEvent: raise an event; it reaches the event handler or the queue."""
    cdef bytes n = _utf8(event_name)
    cdef bytes p = _utf8(payload)
    TykTriggerEvent(n, p)


def store(key, value, int ttl=0):
    """TykStoreData: store `value` under `key` for `ttl` seconds (0 = no expiry)."""
    cdef bytes k = _utf8(key)
    cdef bytes v = _utf8(value)
    TykStoreData(k, v, ttl)


def get(key):
    """TykGetData: the stored value ("" when absent or expired)."""
    cdef bytes k = _utf8(key)
    cdef char* value = TykGetData(k)
    if value == NULL:
        raise MemoryError("TykGetData returned NULL")
    try:
        return (<bytes>value).decode("utf-8", "replace")
    finally:
        CoProcessFree(value)


def log(message, level="info"):
    """CoProcessLog: log through the host's log handler (or stderr)."""
    cdef bytes m = _utf8(message)
    cdef bytes l = _utf8(level)
    CoProcessLog(m, l)


def next_event():
    """CoProcessNextEvent: the oldest queued event as (name, payload), or None when none waits."""
    cdef char* name = NULL
    cdef char* payload = NULL
    cdef int code = CoProcessNextEvent(&name, &payload)
    if code == COPROCESS_ERR_EMPTY:
        return None
    _check(code)
    try:
        return ((<bytes>name).decode("utf-8", "replace"),
                (<bytes>payload).decode("utf-8", "replace"))
    finally:
        CoProcessFree(name)
        CoProcessFree(payload)


def last_error():
    """CoProcessLastError: the last failure's message on this thread ("" when none)."""
    return _last_error()


# Handlers. The bridge calls them on whatever thread raised the event or log line, possibly while the
# GIL is released (inside dispatch()), so they take the GIL themselves and never let an exception
# escape into C: a failing Python handler is reported with sys.unraisablehook.
cdef object _event_handler = None
cdef object _log_handler = None


cdef void _call_handler(object handler, const char* first, const char* second) noexcept:
    """Calls handler(first, second) with the GIL held; an exception goes to sys.unraisablehook."""
    if handler is None:
        return
    try:
        handler(first.decode("utf-8", "replace"), second.decode("utf-8", "replace"))
    except BaseException as e:
        import sys
        sys.unraisablehook(_Unraisable(e, handler))


cdef void _on_event(const char* event_name, const char* payload, void* user_data) noexcept with gil:
    _call_handler(_event_handler, event_name, payload)


cdef void _on_log(const char* message, const char* level, void* user_data) noexcept with gil:
    _call_handler(_log_handler, message, level)


class _Unraisable:
    def __init__(self, exc, obj):
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored in a coprocess-bridge handler"
        self.object = obj


def set_event_handler(handler):
    """CoProcessSetEventHandler: `handler(event_name, payload)` receives every event; None removes it
    (events then wait in the queue for next_event())."""
    global _event_handler
    _event_handler = handler
    if handler is None:
        CoProcessSetEventHandler(NULL, NULL)
    else:
        CoProcessSetEventHandler(_on_event, NULL)


def set_log_handler(handler):
    """CoProcessSetLogHandler: `handler(message, level)` receives every log line; None = stderr."""
    global _log_handler
    _log_handler = handler
    if handler is None:
        CoProcessSetLogHandler(NULL, NULL)
    else:
        CoProcessSetLogHandler(_on_log, NULL)
