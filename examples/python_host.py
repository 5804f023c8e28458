#!/usr/bin/env python3
"""A Python gateway host for coprocess-bridge, in ctypes, with Google's protobuf runtime.

    python3 examples/python_host.py --bridge target/release/libcoprocess_bridge.so \\
        --driver target/release/c_driver.so --descriptor-set coprocess.fds

Each option may come from the environment instead: COPROCESS_BRIDGE_LIB, COPROCESS_DRIVER,
COPROCESS_DESCRIPTOR_SET.

  --bridge          the bridge library (libcoprocess_bridge.so, `cargo build --release`).
  --driver          a driver library: examples/c_driver (`make demo` builds target/release/c_driver.so),
                    which sets a request header on Pre hooks and re-raises events as "CDriverEvent".
  --descriptor-set  Tyk's coprocess schema as an encoded google.protobuf.FileDescriptorSet, from which
                    the message classes are built at run time (no protoc, no generated _pb2 files):
                    coprocess_proto::FILE_DESCRIPTOR_SET in Rust, or
                    `protox --include-imports -o coprocess.fds -I proto proto/*.proto`, or
                    `python -m grpc_tools.protoc --include_imports --descriptor_set_out=coprocess.fds
                     -I proto proto/*.proto`.

What it does, as a gateway would: builds a coprocess.Object for a Pre hook with the protobuf package,
serializes it, hands it to Dispatch, decodes the driver's answer, frees the answer with
CoProcessMessageFree, and receives events through a ctypes callback set with
CoProcessSetEventHandler. It prints what it sees and exits 0 only when every check passes (1 when a
check fails or the bridge refuses something, 2 on usage errors).
"""

import argparse
import ctypes
import json
import os
import sys
import threading

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory

# --------------------------------------------------------------------------------------------------
# api.h in ctypes

COPROCESS_OK = 0
COPROCESS_ERR_INVALID_OBJECT = 3


class CoProcessMessage(ctypes.Structure):
    """struct CoProcessMessage { void* p_data; int length; }"""

    _fields_ = [("p_data", ctypes.c_void_p), ("length", ctypes.c_int)]


# void (*)(const char* event_name, const char* payload, void* user_data)
EVENT_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
# void (*)(const char* message, const char* level, void* user_data)
LOG_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)

_MSG_P = ctypes.POINTER(CoProcessMessage)
_SIGNATURES = {
    # name: (restype, argtypes)
    "CoProcessInit": (ctypes.c_int, [ctypes.c_char_p]),
    "CoProcessLoadDriver": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]),
    "Dispatch": (ctypes.c_int, [_MSG_P, _MSG_P]),
    "DispatchWithDriver": (ctypes.c_int, [ctypes.c_char_p, _MSG_P, _MSG_P]),
    "DispatchEvent": (None, [ctypes.c_char_p]),
    "CoProcessMessageFree": (None, [_MSG_P]),
    "CoProcessLastError": (ctypes.c_char_p, []),  # owned by the bridge: never freed
    "CoProcessSetEventHandler": (None, [EVENT_HANDLER, ctypes.c_void_p]),
    "CoProcessSetLogHandler": (None, [LOG_HANDLER, ctypes.c_void_p]),
    "CoProcessShutdown": (None, []),
    "TykTriggerEvent": (None, [ctypes.c_char_p, ctypes.c_char_p]),
}


class BridgeError(Exception):
    def __init__(self, call, code, message):
        super().__init__(f"{call} failed with status {code}: {message}")
        self.code = code
        self.message = message


class Bridge:
    """The bridge's C API with Python types. ctypes releases the GIL during every call."""

    def __init__(self, path):
        # An absolute path: a bare file name would make dlopen search the system directories.
        self.lib = ctypes.CDLL(os.path.abspath(path))
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self._handlers = []  # keeps the ctypes callbacks alive while the bridge may call them

    def last_error(self):
        return self.lib.CoProcessLastError().decode("utf-8", "replace")

    def _check(self, call, code):
        if code != COPROCESS_OK:
            raise BridgeError(call, code, self.last_error())

    def init(self, config=None):
        text = None if config is None else json.dumps(config).encode()
        self._check("CoProcessInit", self.lib.CoProcessInit(text))

    def load_driver(self, name, path, config=None):
        text = None if config is None else json.dumps(config).encode()
        self._check(
            "CoProcessLoadDriver",
            self.lib.CoProcessLoadDriver(name.encode(), os.fsencode(path), text),
        )

    def dispatch_raw(self, data):
        """Dispatch: returns (status, output bytes or None, (out.p_data, out.length) after a
        failure). The input is borrowed by the bridge; the output's malloc'd buffer is copied and
        released with CoProcessMessageFree."""
        buf = ctypes.create_string_buffer(data, len(data))
        message_in = CoProcessMessage(ctypes.cast(buf, ctypes.c_void_p), len(data))
        out = CoProcessMessage(None, 0)
        code = self.lib.Dispatch(ctypes.byref(message_in), ctypes.byref(out))
        if code != COPROCESS_OK:
            return code, None, (out.p_data, out.length)
        try:
            return code, ctypes.string_at(out.p_data, out.length), None
        finally:
            self.lib.CoProcessMessageFree(ctypes.byref(out))
            assert out.p_data is None and out.length == 0, "CoProcessMessageFree resets the message"

    def dispatch(self, data):
        code, result, _ = self.dispatch_raw(data)
        self._check("Dispatch", code)
        return result

    def dispatch_event(self, event):
        self.lib.DispatchEvent(json.dumps(event).encode())

    def trigger_event(self, name, payload):
        self.lib.TykTriggerEvent(name.encode(), payload.encode())

    def _callback(self, c_type, handler):
        """A C function pointer of `c_type` calling handler(str, str), kept alive with the bridge."""

        def trampoline(first, second, _user_data):
            handler(first.decode("utf-8", "replace"), second.decode("utf-8", "replace"))

        callback = c_type(trampoline)
        self._handlers.append(callback)
        return callback

    def set_event_handler(self, handler):
        """handler(name: str, payload: str), called on the thread that raised the event."""
        self.lib.CoProcessSetEventHandler(self._callback(EVENT_HANDLER, handler), None)

    def set_log_handler(self, handler):
        """handler(message: str, level: str)."""
        self.lib.CoProcessSetLogHandler(self._callback(LOG_HANDLER, handler), None)

    def shutdown(self):
        self.lib.CoProcessShutdown()
        self.lib.CoProcessSetEventHandler(EVENT_HANDLER(), None)  # NULL: no handler
        self.lib.CoProcessSetLogHandler(LOG_HANDLER(), None)


# --------------------------------------------------------------------------------------------------
# The schema, from a FileDescriptorSet


def load_schema(path):
    """Builds the coprocess message classes from an encoded FileDescriptorSet.
    Returns (pool, Object class)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    except message.DecodeError as e:
        raise ValueError(f"{path} is not an encoded FileDescriptorSet: {e}") from None
    pool = descriptor_pool.DescriptorPool()
    pending = list(fds.file)
    added = set()
    while pending:  # dependencies first, whatever order the set lists them in
        ready = [f for f in pending if all(d in added for d in f.dependency)]
        if not ready:
            missing = sorted({d for f in pending for d in f.dependency} - added)
            raise ValueError(f"{path}: the descriptor set lacks {', '.join(missing)}")
        for f in ready:
            try:
                pool.Add(f)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: {f.name} is not a valid file descriptor: {e}") from None
            added.add(f.name)
            pending.remove(f)
    try:
        descriptor = pool.FindMessageTypeByName("coprocess.Object")
    except KeyError:
        raise ValueError(f"{path}: no coprocess.Object in this descriptor set") from None
    return pool, message_factory.GetMessageClass(descriptor)


# --------------------------------------------------------------------------------------------------
# The demo


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            self.failed += 1
        return ok


HEADER = ("X-Python-Host", "ctypes")


def run(args):
    pool, Object = load_schema(args.descriptor_set)
    hook_type = pool.FindEnumTypeByName("coprocess.HookType").values_by_name
    bridge = Bridge(args.bridge)
    checks = Checks()

    lock = threading.Lock()
    events, logs = [], []

    def on_event(name, payload):
        with lock:
            events.append((name, payload))

    def on_log(message, level):
        with lock:
            logs.append((level, message))

    bridge.set_event_handler(on_event)
    bridge.set_log_handler(on_log)
    bridge.init()
    bridge.load_driver("native", args.driver, {"header_name": HEADER[0], "header_value": HEADER[1]})
    checks.check(any("loaded driver 'native'" in m for _, m in logs),
                 "the bridge's log lines reach the Python log handler")

    # A Pre hook, as Tyk's gateway would send it.
    obj = Object()
    obj.hook_type = hook_type["Pre"].number
    obj.hook_name = "MyPreMiddleware"
    obj.request.method = "GET"
    obj.request.url = "/get?user=alice"
    obj.request.request_uri = "/get?user=alice"
    obj.request.scheme = "http"
    obj.request.headers["Accept"] = "application/json"
    obj.request.headers["User-Agent"] = "python_host"
    obj.request.params["user"] = "alice"
    obj.request.raw_body = b"\x00\x01binary"
    obj.spec["APIID"] = "python-host-api"
    obj.spec["OrgID"] = "default"
    obj.metadata["source"] = "python_host.py"
    request_bytes = obj.SerializeToString()

    result = Object.FromString(bridge.dispatch(request_bytes))
    print("driver's answer:", json_format.MessageToJson(result, indent=None), flush=True)
    checks.check(result.request.set_headers.get(HEADER[0]) == HEADER[1],
                 f"the driver set request header {HEADER[0]}: {HEADER[1]}")
    untouched = Object()
    untouched.CopyFrom(result)
    untouched.request.ClearField("set_headers")
    checks.check(untouched == obj, "everything else in the Object came back as sent")

    # Another hook type: the C driver hands it back unchanged.
    obj.hook_type = hook_type["Post"].number
    obj.hook_name = "MyPostMiddleware"
    checks.check(Object.FromString(bridge.dispatch(obj.SerializeToString())) == obj,
                 "a Post hook comes back unchanged")

    # Events: from the host itself, and through the driver.
    bridge.trigger_event("PythonHostEvent", '{"from": "python_host"}')
    event = {"message": {"key": "value"}, "handler_name": "python_host",
             "spec": {"APIID": "python-host-api", "OrgID": "default"}}
    bridge.dispatch_event(event)
    with lock:
        seen = list(events)
    print("events:", seen, flush=True)
    checks.check(("PythonHostEvent", '{"from": "python_host"}') in seen,
                 "TykTriggerEvent reached the ctypes event handler")
    checks.check(any(n == "CDriverEvent" and json.loads(p) == event for n, p in seen),
                 "DispatchEvent reached the driver, whose CDriverEvent reached the handler")

    # Bad input: a clear error, no crash, nothing to free.
    code, output, out_fields = bridge.dispatch_raw(b"\x1a\x05abc")  # a truncated `request`
    error_text = bridge.last_error()
    print(f"truncated input: status {code}: {error_text}", flush=True)
    checks.check(code == COPROCESS_ERR_INVALID_OBJECT and output is None and error_text != "",
                 "a truncated Object is refused with COPROCESS_ERR_INVALID_OBJECT and a message")
    checks.check(out_fields == (None, 0), "a failed Dispatch leaves out = {NULL, 0}")

    bridge.shutdown()
    return checks.failed


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="A ctypes host for coprocess-bridge: dispatches a protobuf Object through a driver.")
    parser.add_argument("--bridge", default=os.environ.get("COPROCESS_BRIDGE_LIB"),
                        help="libcoprocess_bridge.so (default: $COPROCESS_BRIDGE_LIB)")
    parser.add_argument("--driver", default=os.environ.get("COPROCESS_DRIVER"),
                        help="the driver library, e.g. c_driver.so (default: $COPROCESS_DRIVER)")
    parser.add_argument("--descriptor-set", default=os.environ.get("COPROCESS_DESCRIPTOR_SET"),
                        help="the coprocess schema as a FileDescriptorSet "
                             "(default: $COPROCESS_DESCRIPTOR_SET)")
    args = parser.parse_args(argv)
    for option, env in [("bridge", "COPROCESS_BRIDGE_LIB"), ("driver", "COPROCESS_DRIVER"),
                        ("descriptor_set", "COPROCESS_DESCRIPTOR_SET")]:
        if not getattr(args, option):
            parser.error(f"--{option.replace('_', '-')} (or ${env}) is required")
    try:
        failed = run(args)
    except (BridgeError, OSError, ValueError) as e:
        print(f"python_host: error: {e}", file=sys.stderr)
        return 1
    if failed:
        print(f"python_host: {failed} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
