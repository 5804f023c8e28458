#!/usr/bin/env python3
"""A Tyk-style gRPC client of coprocess.Dispatcher in Python grpcio: what a gateway that speaks Tyk's
gRPC protocol does, pointed at `coprocess serve` in the tests.

    dispatcher_client.py --target tcp://127.0.0.1:5555 [--driver NAME] [--hook-type Pre]
        [--hook-name N] [--header K=V ...] [--body-bytes N] [--max-message-bytes N]
        [--raw-hex HEX] [--event JSON] [--count N] [--timeout S]

Prints one JSON line per call: {"ok": true, "set_headers": {...}, "raw_body_len": N,
"return_overrides": {...}} or {"ok": false, "code": "INVALID_ARGUMENT", "details": "..."}.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coprocess_stubs  # noqa: E402

import grpc  # noqa: E402

pb, pb_grpc = coprocess_stubs.load()

HOOKS = {"Unknown": 0, "Pre": 1, "Post": 2, "PostKeyAuth": 3, "CustomKeyCheck": 4, "Response": 5}


def build_object(args):
    obj = pb.Object()
    obj.hook_type = HOOKS[args.hook_type]
    obj.hook_name = args.hook_name
    obj.request.url = "/pet"
    obj.request.method = "GET"
    obj.request.return_overrides.response_code = -1
    for h in args.header:
        k, v = h.split("=", 1)
        obj.request.headers[k] = v
    if args.body_bytes:
        obj.request.raw_body = b"x" * args.body_bytes
    obj.spec["APIID"] = args.api_id
    obj.spec["OrgID"] = "org1"
    return obj


def result_of(reply):
    return {
        "ok": True,
        "set_headers": dict(reply.request.set_headers),
        "raw_body_len": len(reply.request.raw_body),
        "return_overrides": {
            "response_code": reply.request.return_overrides.response_code,
            "response_error": reply.request.return_overrides.response_error,
        },
    }


def failure(e):
    return {"ok": False, "code": e.code().name, "details": e.details() or ""}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--driver")
    p.add_argument("--hook-type", default="Pre", choices=sorted(HOOKS))
    p.add_argument("--hook-name", default="MyPreHook")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--api-id", default="api1")
    p.add_argument("--body-bytes", type=int, default=0)
    p.add_argument("--max-message-bytes", type=int, default=0)
    p.add_argument("--raw-hex", help="send these bytes as the Object, unchecked")
    p.add_argument("--event", help="call DispatchEvent with this payload instead of Dispatch")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--announce", action="store_true", help='print "calling" before each call')
    args = p.parse_args()

    options = []
    if args.max_message_bytes:
        options += [
            ("grpc.max_receive_message_length", args.max_message_bytes),
            ("grpc.max_send_message_length", args.max_message_bytes),
        ]
    address = coprocess_stubs.parse_address(args.target)
    if address.startswith("unix:"):
        # grpc-core sends the socket path as :authority, which RFC 9113 does not allow and servers built
        # on h2 (tonic, so `coprocess serve`) refuse with PROTOCOL_ERROR; grpc-go (Tyk) sends
        # "localhost", as here.
        options.append(("grpc.default_authority", "localhost"))
    channel = grpc.insecure_channel(address, options=options)
    metadata = [("x-coprocess-driver", args.driver)] if args.driver else None
    stub = pb_grpc.DispatcherStub(channel)

    if args.announce:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    for _ in range(args.count):
        if args.announce:
            print("calling", flush=True)
        try:
            if args.event is not None:
                stub.DispatchEvent(pb.Event(payload=args.event), timeout=args.timeout, metadata=metadata)
                out = {"ok": True}
            elif args.raw_hex is not None:
                raw = channel.unary_unary(
                    "/coprocess.Dispatcher/Dispatch",
                    request_serializer=lambda b: b,
                    response_deserializer=pb.Object.FromString,
                )
                out = result_of(raw(bytes.fromhex(args.raw_hex), timeout=args.timeout, metadata=metadata))
            else:
                out = result_of(stub.Dispatch(build_object(args), timeout=args.timeout, metadata=metadata))
        except grpc.RpcError as e:
            out = failure(e)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
