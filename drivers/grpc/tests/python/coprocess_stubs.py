"""Python stubs for Tyk's coprocess protocol, generated from the repository's proto/ at run time with
grpc_tools (the protoc that ships in the grpcio-tools wheel), into a cache directory.

    import coprocess_stubs
    pb, pb_grpc = coprocess_stubs.load()   # coprocess_object_pb2, coprocess_object_pb2_grpc
"""

import glob
import hashlib
import importlib
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "proto"))


def load(proto_dir=PROTO_DIR, out_dir=None):
    from grpc_tools import protoc  # noqa: imported here so a missing package fails with a clear name

    protos = sorted(glob.glob(os.path.join(proto_dir, "*.proto")))
    if not protos:
        raise SystemExit(f"no .proto files in {proto_dir}")
    digest = hashlib.sha256()
    for p in protos:
        with open(p, "rb") as f:
            digest.update(f.read())
    if out_dir is None:
        out_dir = os.path.join(tempfile.gettempdir(), f"coprocess-stubs-{digest.hexdigest()[:16]}")
    marker = os.path.join(out_dir, ".complete")
    if not os.path.exists(marker):
        # Generate into a private directory, then rename it into place: concurrent test processes
        # never see half-written stubs.
        os.makedirs(os.path.dirname(out_dir) or ".", exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=os.path.dirname(out_dir))
        args = ["grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={tmp}", f"--grpc_python_out={tmp}"]
        if protoc.main(args + protos) != 0:
            raise SystemExit(f"grpc_tools.protoc failed on {proto_dir}")
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not os.path.exists(marker):  # somebody else won the race only if the marker is there
                raise
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    pb = importlib.import_module("coprocess_object_pb2")
    pb_grpc = importlib.import_module("coprocess_object_pb2_grpc")
    return pb, pb_grpc


def parse_address(addr):
    """tcp://host:port | unix:///path | host:port -> a grpc-python address."""
    if addr.startswith("tcp://"):
        return addr[len("tcp://"):]
    return addr
