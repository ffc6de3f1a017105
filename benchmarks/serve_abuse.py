"""`gsam serve` under abuse, measured: 2,000 idle connections, 200 stalled gzip uploads, and SIGTERM
with max-size requests in flight. Prints a markdown table (and writes it with --out).

    python benchmarks/serve_abuse.py [--onnx model.onnx] [--out benchmarks/results/serve_abuse.md] \
        [-- gsam serve options]

Without --onnx it exports a tiny random-weights model. The repository is built with --max-pixels 1048576 (a 1x3x512x546
FP32 tensor, what a stalled upload inflates to, is legal; a max-size request is 1x3x1024x1024). Started as root on a
machine whose Python lives under a 0700 /root, gsam serve runs in the tests' mount namespace (tests/support/serving.py)
so that tritonserver can run as nobody. RSS is gsam serve's own process (the gateway: the bodies never reach
tritonserver); the peak is sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import gzip
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.serving import readable_dir, serve  # noqa: E402  (the tests' way of running gsam serve as root)

from gsam.deploy.triton.repository import build_repository  # noqa: E402
from gsam.runtime.triton_names import TENSOR_MODEL

MAX_PIXELS = 1024 * 1024


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text)[1]) / 1024


class Peak:
    """The highest VmRSS of `pid` while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.value, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> "Peak":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, rss_mib(self.pid))
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def binary(shape):
    import json

    import numpy as np

    data = np.zeros(shape, np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "image", "shape": list(shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}).encode()
    return header, data


def post(port, body, headers, timeout=120):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v2/models/gsam_python/infer", body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def infer(port, shape=(1, 3, 64, 64), connection=None):
    header, data = binary(shape)
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    if connection is None:
        return post(port, header + data, headers)
    connection.request("POST", "/v2/models/gsam_python/infer", header + data, headers)
    response = connection.getresponse()
    response.read()
    return response.status


def idle_connections(served, count: int) -> dict:
    """`count` sockets that send nothing, on the HTTP port; a client with a keep-alive connection opened before
    keeps being answered."""
    import http.client

    keep = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=60)
    assert infer(served.http_port, connection=keep) == 200
    before = rss_mib(served.process.pid)
    with Peak(served.process.pid) as peak:
        opening = time.monotonic()
        sockets = [socket.create_connection(("127.0.0.1", served.http_port), timeout=30) for _ in range(count)]
        flooded = time.monotonic()
        answered = [infer(served.http_port, connection=keep) for _ in range(5)]
        while infer(served.http_port) != 200 and time.monotonic() - flooded < 60:  # new clients: after the timeout
            time.sleep(0.2)
        new_client_after = time.monotonic() - opening
    poller = select.poll()  # select() stops at fd 1024
    for sock in sockets:
        poller.register(sock, select.POLLIN)
    readable = {fd for fd, _ in poller.poll(0)}
    refused = 0
    for sock in sockets:
        if sock.fileno() in readable:
            try:
                refused += sock.recv(64).startswith(b"HTTP/1.1 503")
            except OSError:
                pass
    for sock in sockets:
        sock.close()
    keep.close()
    return {"before": before, "peak": peak.value, "kept_alive_answers": answered, "refused_503": refused,
            "new_client_answered_after_s": new_client_after, "opening_s": flooded - opening}


def stalled_uploads(served, count: int) -> dict:
    header, data = binary((1, 3, 512, 546))
    packed = gzip.compress(header + data, 9)
    head = (f"POST /v2/models/gsam_python/infer HTTP/1.1\r\nHost: 127.0.0.1:{served.http_port}\r\n"
            f"Content-Encoding: gzip\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(packed)}\r\n\r\n").encode()
    before = rss_mib(served.process.pid)

    def answer(sock):
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            pass
        found = re.match(rb"HTTP/1\.1 (\d{3})", data)
        return int(found[1]) if found else None

    with Peak(served.process.pid) as peak:
        started = time.monotonic()
        sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", served.http_port), timeout=120)
            sock.sendall(head + packed[:-64])
            sockets.append(sock)
        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(answer, sockets))
        closed_after = time.monotonic() - started
    for sock in sockets:
        sock.close()
    time.sleep(1.0)
    return {"before": before, "peak": peak.value, "after": rss_mib(served.process.pid), "gzip_bytes": len(packed),
            "inflated_bytes": len(header) + len(data), "answers": {str(k): answers.count(k) for k in set(answers)},
            "closed_after_s": closed_after, "answers_after": infer(served.http_port)}


def sigterm_under_load(repo: Path, args: tuple[str, ...], requests: int) -> dict:
    served = serve(repo, [TENSOR_MODEL], args=args).start()
    with ThreadPoolExecutor(requests) as pool:
        flying = [pool.submit(infer, served.http_port, (1, 3, 1024, 1024)) for _ in range(requests)]
        while not any(f.done() and f.result() == 200 for f in flying):
            time.sleep(0.05)
        pending = sum(not f.done() for f in flying)
        seconds = served.stop()
        answers = [f.result() for f in flying]
    return {"pending": pending, "seconds": seconds, "code": served.process.returncode,
            "answers": {str(k): answers.count(k) for k in set(answers)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--stalled", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=24)
    parser.add_argument("--out", type=Path)
    parser.add_argument("serve_args", nargs="*", help="extra gsam serve options (after --)")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gsam-abuse-"))
    folder = readable_dir()
    try:
        onnx = options.onnx
        if onnx is None:
            from gsam.export.onnx import export_onnx
            from gsam.model import build_gsam

            onnx = work / "tiny.onnx"
            export_onnx(build_gsam("tiny", num_classes=3), onnx, exporter="torchscript", log=lambda s: None)
        repo = folder / "triton_models"
        build_repository(onnx, repo, max_pixels=MAX_PIXELS, log=lambda s: None)
        args = tuple(options.serve_args)
        with serve(repo, [TENSOR_MODEL], args=args) as served:
            idle = idle_connections(served, options.idle)
            stalled = stalled_uploads(served, options.stalled)
            alive = served.process.poll() is None
        term = sigterm_under_load(repo, args, options.in_flight)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    flags = open("/proc/cpuinfo").read()
    simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    rows = [
        ("CPU", f"{cpu} ({simd}), {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores"),
        (f"{options.idle:,} idle connections (HTTP)", f"gsam serve RSS {idle['before']:.0f} MiB before, peak "
         f"{idle['peak']:.0f} MiB (+{idle['peak'] - idle['before']:.1f}); {idle['refused_503']} refused with 503 "
         f"past the cap; a keep-alive client opened before answered {idle['kept_alive_answers']}; a new client got "
         f"200 {idle['new_client_answered_after_s']:.1f} s after the first idle socket opened (they took "
         f"{idle['opening_s']:.1f} s to open; 503 until --header-timeout closed the idle ones)"),
        (f"{options.stalled} stalled gzip uploads ({stalled['gzip_bytes']:,} B inflating to "
         f"{stalled['inflated_bytes']:,} B, all but 64 B sent)",
         f"RSS {stalled['before']:.0f} MiB before, peak {stalled['peak']:.0f} MiB "
         f"(+{stalled['peak'] - stalled['before']:.1f}), {stalled['after']:.0f} MiB after; answers "
         f"{stalled['answers']}; all closed within {stalled['closed_after_s']:.1f} s; next request "
         f"{stalled['answers_after']}; gsam serve alive: {alive}"),
        (f"SIGTERM with {term['pending']} max-size (1x3x1024x1024) requests under way",
         f"exited in {term['seconds']:.1f} s with code {term['code']}; answers {term['answers']} (None: cancelled "
         "at the drain's end)"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    print(table)
    if options.out:
        options.out.write_text(table)


if __name__ == "__main__":
    main()
