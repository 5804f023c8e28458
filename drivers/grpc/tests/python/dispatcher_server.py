#!/usr/bin/env python3
"""A Tyk gRPC plugin server (coprocess.Dispatcher) in Python grpcio, as Tyk users write them: the remote
end of the bridge's `grpc` driver in tests and benchmarks.

    dispatcher_server.py --listen tcp://127.0.0.1:0 [--name A] [--max-message-bytes N]
                         [--tls-cert cert.pem --tls-key key.pem [--tls-client-ca ca.pem]] [--events FILE]

Prints `LISTENING <address>` (with the real port) once it serves. Plugin logic, by hook:
- every Pre hook: set_headers["X-Rust-Driver"] = "rust" (what examples/rust_driver does in-process),
  and set_headers["X-Served-By"] = NAME when --name is given;
- hook_name "Slow": waits --slow-ms before answering;
- hook_name "Fail": fails with INTERNAL "plugin failed on purpose";
- hook_name "BodySize": set_headers["X-Body-Size"] = len(request.raw_body), Object echoed back.
Events: each payload is appended as a line to --events FILE.
Stops on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coprocess_stubs  # noqa: E402

import grpc  # noqa: E402

pb, pb_grpc = coprocess_stubs.load()
PRE = 1  # HookType.Pre (coprocess_common.proto)


class Dispatcher(pb_grpc.DispatcherServicer):
    def __init__(self, args):
        self.args = args

    async def Dispatch(self, obj, context):
        name = obj.hook_name
        if name == "Slow":
            await asyncio.sleep(self.args.slow_ms / 1000.0)
        elif name == "Fail":
            await context.abort(grpc.StatusCode.INTERNAL, "plugin failed on purpose")
        elif name == "BodySize":
            obj.request.set_headers["X-Body-Size"] = str(len(obj.request.raw_body))
        if obj.hook_type == PRE:
            obj.request.set_headers["X-Rust-Driver"] = "rust"
            if self.args.name:
                obj.request.set_headers["X-Served-By"] = self.args.name
        return obj

    async def DispatchEvent(self, event, context):
        if self.args.events:
            with open(self.args.events, "a", encoding="utf-8") as f:
                f.write(event.payload.replace("\n", " ") + "\n")
        return pb.EventReply()


async def serve(args):
    options = []
    if args.max_message_bytes:
        options += [
            ("grpc.max_receive_message_length", args.max_message_bytes),
            ("grpc.max_send_message_length", args.max_message_bytes),
        ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_DispatcherServicer_to_server(Dispatcher(args), server)
    address = coprocess_stubs.parse_address(args.listen)
    if args.tls_cert:
        with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
            pair = (k.read(), c.read())
        if args.tls_client_ca:
            with open(args.tls_client_ca, "rb") as ca:
                creds = grpc.ssl_server_credentials([pair], root_certificates=ca.read(), require_client_auth=True)
        else:
            creds = grpc.ssl_server_credentials([pair])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    await server.start()
    if address.startswith("unix:"):
        shown = args.listen
    else:
        host = address.rsplit(":", 1)[0]
        shown = f"tcp://{host}:{port}"
    print(f"LISTENING {shown}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--max-message-bytes", type=int, default=0)
    p.add_argument("--slow-ms", type=int, default=2000)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    p.add_argument("--events")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
