#!/usr/bin/env python3
"""Drive coprocess-bridge from Python through the Cython module tyk_bridge (tyk_bridge.pyx).

    PYTHONPATH=<dir holding tyk_bridge*.so> python3 examples/cython/demo.py <path/to/c_driver.so>

The driver path may also come from $COPROCESS_DRIVER. The driver is examples/c_driver (it adds a
header on Pre hooks and re-raises every Tyk event as "CDriverEvent"). No protobuf library is needed:
the Object is encoded by hand below, as a gateway holding serialized bytes would pass them on.

Prints what happens and exits 0 only when every check passes (1 otherwise, 2 on usage errors).
"""

import json
import os
import sys
import threading

import tyk_bridge

HEADER_NAME = "X-Cython-Host"
HEADER_VALUE = "tyk_bridge"


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def pre_object():
    """coprocess.Object{hook_type: Pre, hook_name: "MyPreMiddleware", request{url, method,
    headers{"Accept": "*/*"}}, spec{"APIID": "cython-demo"}}."""
    header = field(1, b"Accept") + field(2, b"*/*")
    request = field(1, header) + field(5, b"/get") + field(11, b"GET")
    spec = field(1, b"APIID") + field(2, b"cython-demo")
    return (
        varint(1 << 3 | 0) + varint(1)  # hook_type = Pre
        + field(2, b"MyPreMiddleware")
        + field(3, request)
        + field(6, spec)
    )


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.failed += 1


def main(argv):
    driver = argv[1] if len(argv) > 1 else os.environ.get("COPROCESS_DRIVER")
    if not driver:
        print("usage: demo.py <path/to/c_driver.so> (or set COPROCESS_DRIVER)", file=sys.stderr)
        return 2
    checks = Checks()

    # 1. The seeds' snippet: with no event handler, the event waits in the bridge's queue.
    tyk_bridge.init()
    tyk_bridge.call()
    checks.check(tyk_bridge.next_event() == ("my event", "my payload"),
                 "call(): TykTriggerEvent('my event', 'my payload') reached the event queue")
    checks.check(tyk_bridge.next_event() is None, "the queue is empty afterwards")

    # 2. An event handler written in Python, called back from C.
    events = []
    lock = threading.Lock()

    def on_event(name, payload):
        with lock:
            events.append((name, payload))

    tyk_bridge.set_event_handler(on_event)
    tyk_bridge.trigger_event("CythonEvent", '{"from": "cython"}')
    checks.check(events == [("CythonEvent", '{"from": "cython"}')],
                 "trigger_event() reached the Python event handler")

    # 3. A handler that raises: the exception goes to sys.unraisablehook, never into C.
    unraisable = []
    default_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append

    def broken_handler(name, payload):
        raise RuntimeError(f"handler failed on {name}")

    tyk_bridge.set_event_handler(broken_handler)
    tyk_bridge.trigger_event("BrokenHandlerEvent", "")
    sys.unraisablehook = default_hook
    checks.check(len(unraisable) == 1 and "BrokenHandlerEvent" in str(unraisable[0].exc_value),
                 "an exception in a handler is reported through sys.unraisablehook")
    tyk_bridge.set_event_handler(on_event)

    # 4. Log lines, the bridge's own and ours, reach a Python log handler.
    logs = []
    tyk_bridge.set_log_handler(lambda message, level: logs.append((level, message)))

    # 5. Load the C driver and dispatch a Pre hook through it.
    config = json.dumps({"header_name": HEADER_NAME, "header_value": HEADER_VALUE})
    tyk_bridge.load_driver("native", driver, config)
    tyk_bridge.log("hello from Cython", "warning")
    checks.check(any("loaded driver 'native'" in m for _, m in logs)
                 and ("warning", "hello from Cython") in logs,
                 "log lines reach the Python log handler")
    request = pre_object()
    result = tyk_bridge.dispatch(request)
    print(f"dispatched {len(request)} bytes, got {len(result)} bytes back")
    checks.check(result.startswith(request), "the driver's output extends its input")
    expected_patch = field(3, field(2, field(1, HEADER_NAME.encode()) + field(2, HEADER_VALUE.encode())))
    checks.check(result[len(request):] == expected_patch,
                 f"the driver set request header {HEADER_NAME}: {HEADER_VALUE}")
    checks.check(tyk_bridge.dispatch(request, driver="native") == result,
                 "dispatch(driver='native') routes to the same driver")

    # Tyk API definitions: load one, see it listed, forget it.
    api = {"api_id": "cython-api", "org_id": "default", "name": "Cython API",
           "custom_middleware": {"driver": "native", "pre": [{"name": "MyPreMiddleware"}]}}
    tyk_bridge.load_api(json.dumps(api))
    listed = json.loads(tyk_bridge.list_apis())
    checks.check([a["api_id"] for a in listed] == ["cython-api"]
                 and [h["name"] for h in listed[0]["pre"]] == ["MyPreMiddleware"],
                 "load_api()/list_apis(): the API definition is loaded with its Pre hook")
    tyk_bridge.unload_api("cython-api")
    checks.check(json.loads(tyk_bridge.list_apis()) == [], "unload_api() forgets it")
    try:
        tyk_bridge.unload_api("cython-api")
        checks.check(False, "unloading an unknown API is refused")
    except tyk_bridge.BridgeError as e:
        checks.check(e.code == tyk_bridge.ERR_UNKNOWN_API,
                     "unloading an unknown API raises BridgeError(COPROCESS_ERR_UNKNOWN_API)")

    # 6. Dispatch from several Python threads at once (the GIL is released while the driver runs).
    results = []

    def worker():
        for _ in range(200):
            out = tyk_bridge.dispatch(request)
            with lock:
                results.append(out == result)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checks.check(len(results) == 800 and all(results), "800 dispatches from 4 threads all agree")

    # 7. Events through the driver: DispatchEvent -> driver -> trigger_event -> our handler.
    with lock:
        events.clear()
    tyk_bridge.dispatch_event('{"message": {"key": "value"}, "handler_name": "cython"}')
    checks.check(any(name == "CDriverEvent" and '"handler_name"' in payload for name, payload in events),
                 "dispatch_event() reached the driver, which raised CDriverEvent back to Python")

    # 8. The store, both ways.
    tyk_bridge.store("cython:key", "value", 60)
    checks.check(tyk_bridge.get("cython:key") == "value", "store()/get() round-trip")
    checks.check(tyk_bridge.get("cython:absent") == "", "get() of an absent key is ''")

    # 9. Errors are exceptions with the bridge's code and message, never crashes.
    try:
        tyk_bridge.dispatch(b"\xff\xff\xff")
        checks.check(False, "malformed input is refused")
    except tyk_bridge.BridgeError as e:
        print(f"malformed input: {e}")
        checks.check(e.code == tyk_bridge.ERR_INVALID_OBJECT and e.message,
                     "malformed input raises BridgeError(COPROCESS_ERR_INVALID_OBJECT)")
    try:
        tyk_bridge.dispatch(request, driver="nope")
        checks.check(False, "an unknown driver is refused")
    except tyk_bridge.BridgeError as e:
        checks.check(e.code == tyk_bridge.ERR_UNKNOWN_DRIVER and "nope" in e.message,
                     "an unknown driver raises BridgeError(COPROCESS_ERR_UNKNOWN_DRIVER)")
    try:
        tyk_bridge.load_driver("missing", "/nonexistent/driver.so")
        checks.check(False, "a missing driver file is refused")
    except tyk_bridge.BridgeError as e:
        checks.check(e.code == tyk_bridge.ERR_LOAD_FAILED and "/nonexistent/driver.so" in e.message,
                     "a missing driver file raises BridgeError(COPROCESS_ERR_LOAD_FAILED) naming it")

    tyk_bridge.set_event_handler(None)
    tyk_bridge.set_log_handler(None)
    tyk_bridge.shutdown()

    if checks.failed:
        print(f"{checks.failed} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
