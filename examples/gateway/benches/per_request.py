#!/usr/bin/env python3
"""Load-independent counts per request of the demo gateway, scenario by scenario: instructions (Ir)
and calls to malloc/realloc/calloc, from valgrind's callgrind.

  python3 examples/gateway/benches/per_request.py [--requests N] GATEWAY_BINARY...

Each binary (e.g. this build's target/release/coprocess-gateway and a copy of main's) is started
under `valgrind --tool=callgrind` with four of the load bench's gateway scenarios (no_plugin, pre_hook,
pre_hook_pool, pre_auth_post) on the bridge and the example driver of its directory's target dir
(target/release/libcoprocess_bridge.so, libcoprocess_rust_driver.so; build them first), proxying to
an echo upstream in a plain process of the first binary. For each scenario: a warm-up, then the
counters are zeroed (`callgrind_control -z`), N and 2N GETs are sent on one keep-alive connection,
and two batches of N GETs are sent on one keep-alive connection, each followed by a dump
(`callgrind_control -d`; a dump holds the costs since the previous one): per request = the second
batch's counts / N. Instruction and allocation counts do not move with the machine's load, unlike
times.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

APIS = {
    "no_plugin": {},
    "pre_hook": {"custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}]}},
    # The same Pre hook, the library loaded as "pooled" (not inline): dispatched off the async
    # workers (its driver's lane, or the blocking pool).
    "pre_hook_pool": {"custom_middleware": {"driver": "pooled", "pre": [{"name": "AddHeader"}]}},
    "pre_auth_post": {
        "enable_coprocess_auth": True,
        "custom_middleware": {
            "driver": "native",
            "pre": [{"name": "AddHeader"}],
            "post": [{"name": "PostHook"}],
            "auth_check": {"name": "Auth"},
            "id_extractor": {
                "extract_from": "header",
                "extract_with": "value",
                "extractor_config": {"header_name": "Authorization"},
            },
        },
    },
}


def start(cmd, marker, timeout=120):
    """Starts `cmd` and waits for a stdout line starting with `marker`; returns (process, rest)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(marker):
            # Keep reading its output (the access log), as a terminal would.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, line[len(marker):].strip()
    proc.kill()
    sys.exit(f"{cmd[0]} did not print {marker!r}")


def requests(conn, host, path, n):
    for _ in range(n):
        conn.request("GET", path, headers={"Host": host, "Authorization": "Bearer tok"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status


def dump_counts(path):
    """(Ir total, calls to each allocation function) of one callgrind dump."""
    names, calls = {}, {}
    current, total = None, 0
    alloc = {"malloc", "realloc", "calloc", "free"}
    with open(path) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1), "")
                else:
                    name = line.split("=", 1)[1].strip()
                if line.startswith("cfn="):
                    current = name
            elif line.startswith("calls=") and current in alloc:
                calls[current] = calls.get(current, 0) + int(line[6:].split()[0])
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return total, calls


def measure(binary, upstream, n, workdir):
    target = os.path.dirname(os.path.abspath(binary))
    # The bridge and driver of the target dir the binary was built in (a copy aside: its own dir's,
    # else this build's).
    libs = target if os.path.exists(os.path.join(target, "libcoprocess_bridge.so")) else ARGS_TARGET
    apps = os.path.join(workdir, "apps")
    os.makedirs(apps, exist_ok=True)
    for name, extra in APIS.items():
        api = {
            "api_id": name,
            "org_id": "o",
            "proxy": {"listen_path": f"/{name}/", "target_url": f"http://{upstream}", "strip_listen_path": True},
        }
        api.update(extra)
        with open(os.path.join(apps, f"{name}.json"), "w") as f:
            json.dump(api, f)
    driver = os.path.join(libs, "libcoprocess_rust_driver.so")
    config = {
        "listen": "127.0.0.1:0",
        "bridge": os.path.join(libs, "libcoprocess_bridge.so"),
        "coprocess_options": {
            "drivers": [
                {"name": name, "path": driver, "config": {"tokens": ["tok"], "cache_seconds": 3600}}
                for name in ("native", "pooled")
            ],
            "log_level": "warning",
        },
        "apps": [apps],
    }
    config_path = os.path.join(workdir, "gateway.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    out = os.path.join(workdir, "callgrind.out")
    gateway, addr = start(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, config_path],
        "coprocess-gateway listening on http://",
    )
    rows = {}
    try:
        conn = http.client.HTTPConnection(addr, timeout=60)
        for name in APIS:
            path = f"/{name}/x"
            requests(conn, addr, path, 50)
            subprocess.run(["callgrind_control", "-z", str(gateway.pid)], check=True, capture_output=True)
            dumps = []
            for batch in (n, n):
                requests(conn, addr, path, batch)
                before = set(os.listdir(workdir))
                subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
                new = sorted(set(os.listdir(workdir)) - before)
                dumps.append(dump_counts(os.path.join(workdir, new[-1])))
            ir, calls = dumps[1]
            rows[name] = (ir / n, {k: v / n for k, v in sorted(calls.items())})
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
    return rows


def main():
    global ARGS_TARGET
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", help="a directory to keep the callgrind dumps in (for callgrind_annotate)")
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    ARGS_TARGET = os.path.dirname(os.path.abspath(args.binaries[0]))
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            tmp = args.keep
        echo_config = os.path.join(tmp, "echo.json")
        with open(echo_config, "w") as f:
            json.dump({"listen": "127.0.0.1:0", "echo_upstream": "127.0.0.1:0",
                       "bridge": os.path.join(ARGS_TARGET, "libcoprocess_bridge.so")}, f)
        echo, upstream = start([args.binaries[0], echo_config], "echo upstream on http://")
        try:
            for i, binary in enumerate(args.binaries):
                work = os.path.join(tmp, str(i))
                os.makedirs(work, exist_ok=True)
                rows = measure(binary, upstream, args.requests, work)
                if args.keep:
                    print(f"dumps in {work}: callgrind.out.<pid>.<n>, two per scenario in the order below")
                base = rows["no_plugin"][0]
                print(f"{binary} ({args.requests} requests per batch):")
                for name, (ir, calls) in rows.items():
                    allocs = ", ".join(f"{k} {v:.1f}" for k, v in calls.items())
                    print(f"  {name:<14} Ir/req {ir:>9.0f} ({(ir / base - 1) * 100:+6.1f}%)   {allocs}")
        finally:
            echo.terminate()
            echo.wait(timeout=30)


if __name__ == "__main__":
    main()
