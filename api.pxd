# api.pxd — Cython declarations of api.h, the host-facing C API of coprocess-bridge.
#
#     from api cimport CoProcessMessage, Dispatch, CoProcessMessageFree, TykTriggerEvent
#
# Put the repository root on both the Cython include path (`cython -I <root>`, for this file) and the C
# include path (`cc -I <root>`, for api.h), and link with `-lcoprocess_bridge`. examples/cython/ is a
# complete module built that way.
#
# Kept in sync with api.h by `cargo test --test pxd_sync`: every function, the struct, the status enum
# and the handler typedefs must appear here with the same types (parameter names may differ).
#
# Ownership and threads are as documented in api.h: every pointer argument is borrowed for the call;
# what the bridge returns (Dispatch's out.p_data, TykGetData, CoProcessNextEvent) is malloc'd and
# freed with CoProcessMessageFree / CoProcessFree; CoProcessLastError() is never freed. Every function
# is thread-safe and never raises or aborts on bad input, so the whole block is `nogil`: call
# Dispatch inside `with nogil:` and other Python threads keep running while a driver works. Handlers
# run on the thread that raised the event or log line, possibly without the GIL: a Cython handler
# must be declared `noexcept with gil`.

cdef extern from "api.h" nogil:

    # A serialized coprocess.Object: `length` bytes at `p_data`. Identical to Tyk's api.h.
    ctypedef struct CoProcessMessage:
        void* p_data
        int length

    # Result codes of the functions returning int. The numbers are stable.
    cdef enum CoProcessStatus:
        COPROCESS_OK = 0
        COPROCESS_ERR_NULL_ARGUMENT = 1
        COPROCESS_ERR_INVALID_LENGTH = 2
        COPROCESS_ERR_INVALID_OBJECT = 3
        COPROCESS_ERR_UNKNOWN_DRIVER = 4
        COPROCESS_ERR_NO_DRIVER = 5
        COPROCESS_ERR_DRIVER_FAILED = 6
        COPROCESS_ERR_DRIVER_BAD_OUTPUT = 7
        COPROCESS_ERR_LOAD_FAILED = 8
        COPROCESS_ERR_INVALID_CONFIG = 9
        COPROCESS_ERR_INVALID_UTF8 = 10
        COPROCESS_ERR_ALREADY_EXISTS = 11
        COPROCESS_ERR_EMPTY = 12
        COPROCESS_ERR_DISABLED = 13
        COPROCESS_ERR_PANIC = 14
        COPROCESS_ERR_INVALID_JSON = 15
        COPROCESS_ERR_INVALID_API = 16
        COPROCESS_ERR_UNKNOWN_API = 17
        COPROCESS_ERR_STORE = 18
        COPROCESS_ERR_BUNDLE = 19

    # Handlers; NULL means "no handler". Their strings are valid only during the call.
    ctypedef void (*CoProcessEventHandler)(const char* event_name, const char* payload, void* user_data) noexcept
    ctypedef void (*CoProcessLogHandler)(const char* message, const char* level, void* user_data) noexcept

    # Setup and drivers.
    int CoProcessInit(const char* config_json)
    int CoProcessLoadDriver(const char* name, const char* path, const char* config_json)
    int CoProcessLoadBundle(const char* driver, const char* bundle_path)
    void Reload()
    void CoProcessShutdown()

    # Tyk API definitions: routing by spec["APIID"], hook chains, ID extractor (see api.h).
    int CoProcessLoadApi(const char* api_definition_json)
    int CoProcessUnloadApi(const char* api_id)
    char* CoProcessListApis()  # malloc'd JSON array: CoProcessFree
    void CoProcessSetPlainErrors(int plain)

    # Hooks and events. `input` is borrowed; on success `out.p_data` is malloc'd: CoProcessMessageFree.
    int Dispatch(const CoProcessMessage* input, CoProcessMessage* out)
    int DispatchWithDriver(const char* driver, const CoProcessMessage* input, CoProcessMessage* out)
    void DispatchEvent(const char* event_json)

    # Memory and errors.
    void CoProcessMessageFree(CoProcessMessage* msg)
    void CoProcessFree(void* p)
    const char* CoProcessLastError()
    void CoProcessClearLastError()

    # "coprocess-bridge X.Y.Z (driver ABI N)"; static, never freed.
    const char* CoProcessVersion()

    # Metrics: format 0 = Prometheus text, 1 = JSON; malloc'd (CoProcessFree), NULL for another format.
    char* CoProcessMetrics(int format)

    # Host side of events and logs.
    void CoProcessSetEventHandler(CoProcessEventHandler handler, void* user_data)
    void CoProcessSetLogHandler(CoProcessLogHandler handler, void* user_data)
    int CoProcessNextEvent(char** event_name, char** payload)

    # Tyk's api.h surface, unchanged (non-const char* as in Tyk's header).
    void TykStoreData(char* key, char* value, int ttl)
    char* TykGetData(char* key)
    void TykTriggerEvent(char* event_name, char* payload)
    void CoProcessLog(char* msg, char* level)
