"""Bounded soak of `gsam serve` (gateway, supervisor and Triton, as users run it): mixed-size requests from many
threads to every CPU model (gsam_python over HTTP and gRPC, gsam_image with PNG bytes over HTTP), plus clients
that give up mid-request, with the served tree's resident memory before and after. Then, on the same server:
the gateway's cost against its tritonserver's own ports, side by side (requests alternating between the two),
and the time to answer again after `kill -9` of gsam_python's python stub.

    python benchmarks/soak.py --requests 2000 --threads 16 [--onnx model.onnx] [--overhead-iters 10] [--out soak.json]

Without --onnx it exports a tiny random-weights model. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from gsam.bench.process_memory import descendants, tree_memory_mib
from gsam.deploy.triton.repository import build_repository
from gsam.runtime.backends import load_backend
from gsam.runtime.serving.serve_process import ServeProcess
from gsam.runtime.serving.server import GRPC_KEY, SERVING_HEADER
from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL

SIZES = [(64, 64), (96, 128), (160, 120), (200, 300), (33, 47), (256, 192)]
ABORT_SIZE = (384, 384)
OVERHEAD_SIDES = (64, 512, 1024)  # 0.004, 0.26 and 1.05 megapixels


def impatient_client(url_http: str, url_grpc: str, stop: threading.Event, counts: dict, rounds: int) -> None:
    """A bounded number of large requests with a tiny timeout, each dropped mid-request."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    image = np.random.default_rng(1).uniform(0, 255, (1, 3, *ABORT_SIZE)).astype(np.float32)
    for _ in range(rounds):
        if stop.is_set():
            return
        for module, url, kwargs in ((http, url_http, {"network_timeout": 0.02}), (grpc, url_grpc, {})):
            client = module.InferenceServerClient(url, **kwargs)
            request = module.InferInput("image", list(image.shape), "FP32")
            request.set_data_from_numpy(image)
            try:
                extra = {"client_timeout": 0.02} if module is grpc else {}
                client.infer(TENSOR_MODEL, [request], **extra)
                counts["completed"] += 1
            except Exception:
                counts["aborted"] += 1
            client.close()
        time.sleep(1.0)


def load_phase(served: ServeProcess, threads: int, requests: int, inputs: dict, time_limit: float) -> dict:
    """`requests` mixed-size requests from `threads` threads (gRPC, HTTP and gsam_image clients in turn,
    each created in its own thread: tritonclient's HTTP client is bound to its thread)."""
    lock, issued = threading.Lock(), [0]
    latencies: dict[str, list[float]] = {"http": [], "grpc": [], "image": []}
    errors: list[str] = []
    deadline = time.monotonic() + time_limit

    def worker(index: int) -> None:
        protocol = ("grpc", "http", "image")[index % 3]
        client = load_backend(f"triton-{protocol}", served.grpc_url if protocol == "grpc" else served.http_url)
        while True:
            with lock:
                if issued[0] >= requests or time.monotonic() > deadline:
                    break
                n = issued[0]
                issued[0] += 1
            size = SIZES[n % len(SIZES)]
            start = time.perf_counter()
            try:
                out = client(inputs[size])
                assert out["mask"].shape == (1, *size)
                with lock:
                    latencies[protocol].append((time.perf_counter() - start) * 1000)
            except Exception as exc:
                with lock:
                    errors.append(str(exc)[:200])
        client.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return {"issued": issued[0], "latencies": latencies, "errors": errors, "wall": time.perf_counter() - started}


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _internal_key(served: ServeProcess) -> str:
    """The serving key gsam serve's tritonserver wants for inference: on its command line (docs/security.md)."""
    for pid in descendants(served.process.pid):
        args = open(f"/proc/{pid}/cmdline").read().split("\0")
        if args[0].endswith("bin/tritonserver"):
            serving = next(a for a in args if a.startswith("--http-restricted-api=") and "inference" in a)
            return serving.rsplit("=", 1)[1]
    raise RuntimeError("gsam serve runs no tritonserver")


def _infer(module, client, image: np.ndarray, headers: dict) -> None:
    """What gsam's Triton client sends: FP32 in, logits and mask out."""
    tensor = module.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    client.infer(TENSOR_MODEL, [tensor], outputs=[module.InferRequestedOutput("logits"),
                                                   module.InferRequestedOutput("mask")], headers=headers)


def gateway_overhead(served: ServeProcess, iters: int) -> list[dict]:
    """p50 of one request through gsam serve's gateway and straight to its own tritonserver (internal port, with
    the key), alternating, on the same warm server, at each side, over HTTP and gRPC; concurrency 1."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    key = _internal_key(served)
    paths = {("http", "gateway"): (http, served.http_url, {}), ("grpc", "gateway"): (grpc, served.grpc_url, {}),
             ("http", "direct"): (http, f"127.0.0.1:{served.internal_http_port}", {SERVING_HEADER: key}),
             ("grpc", "direct"): (grpc, f"127.0.0.1:{served.internal_grpc_port}", {GRPC_KEY: key})}
    clients = {k: (module, module.InferenceServerClient(url, **({"network_timeout": 600} if module is http else {})),
                   headers) for k, (module, url, headers) in paths.items()}
    rows = []
    for side in OVERHEAD_SIDES:
        image = np.random.default_rng(side).uniform(0, 255, (1, 3, side, side)).astype(np.float32)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in paths}
        for module, client, headers in clients.values():  # one warm-up each
            _infer(module, client, image, headers)
        for _ in range(iters):
            for path, (module, client, headers) in clients.items():
                start = time.perf_counter()
                _infer(module, client, image, headers)
                times[path].append((time.perf_counter() - start) * 1000)
        for protocol in ("http", "grpc"):
            through, around = times[(protocol, "gateway")], times[(protocol, "direct")]
            gateway, direct = _pct(through, 50), _pct(around, 50)
            paired = [a - b for a, b in zip(through, around)]  # a gateway request against the direct one of its round
            rows.append({"size": f"{side}x{side}", "megapixels": round(side * side / 1e6, 3), "protocol": protocol,
                         "p50_direct_ms": direct, "p50_gateway_ms": gateway, "ratio": round(gateway / direct, 3),
                         "median_paired_added_ms": _pct(paired, 50), "n": iters})
    for _, client, _ in clients.values():
        client.close()
    return rows


def _status(url: str, path: str, data: bytes | None = None, headers: dict | None = None) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{url}{path}", data=data, headers=headers or {}),
                                    timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def stub_recovery(served: ServeProcess) -> dict:
    """kill -9 of gsam_python's stub; a small request and a readiness check every 0.1 s until it answers again."""
    data = np.zeros((1, 3, 64, 64), np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 64, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}).encode()

    def infer() -> int | None:
        return _status(served.http_url, "/v2/models/gsam_python/infer", header + data,
                       {"Inference-Header-Content-Length": str(len(header))})

    stub = next(pid for pid in descendants(served.process.pid)
                if "gsam_python/1/model.py" in open(f"/proc/{pid}/cmdline").read())
    assert infer() == 200
    killed = time.monotonic()
    os.kill(stub, signal.SIGKILL)
    failures, not_ready = 0, 0.0
    while time.monotonic() - killed < 120:
        answer, ready = infer(), _status(served.http_url, "/v2/health/ready")
        if answer == 200 and failures:
            break
        failures += answer != 200
        not_ready = time.monotonic() - killed if ready == 503 else not_ready
        time.sleep(0.1)
    return {"answered_again_after_s": round(time.monotonic() - killed, 1), "failed_requests": failures,
            "ready_503_until_s": round(not_ready, 1),
            "log": [line for line in served.lines if TENSOR_MODEL in line and ("probe" in line or "reload" in line)]}


def soak_phase(served: ServeProcess, requests: int, threads: int, time_limit: float, aborts: int) -> dict:
    rng = np.random.default_rng(0)
    inputs = {s: rng.uniform(0, 255, (1, 3, *s)).astype(np.float32) for s in SIZES}
    warm = load_phase(served, threads, threads * len(SIZES), inputs, time_limit)  # every size, full concurrency
    time.sleep(1.0)
    rss_before = tree_memory_mib(served.process.pid)
    stop = threading.Event()
    impatient = {"completed": 0, "aborted": 0}
    disturber = threading.Thread(target=impatient_client,
                                 args=(served.http_url, served.grpc_url, stop, impatient, aborts))
    trace: list[tuple[float, float]] = []

    def sample_memory() -> None:  # RSS every 5 s: a plateau is allocation, a slope would be a leak
        t0 = time.monotonic()
        while not stop.wait(5.0):
            trace.append((round(time.monotonic() - t0, 1), round(tree_memory_mib(served.process.pid), 1)))

    sampler = threading.Thread(target=sample_memory)
    disturber.start()
    sampler.start()
    main = load_phase(served, threads, requests, inputs, time_limit)
    stop.set()
    disturber.join()
    sampler.join()
    time.sleep(1.0)
    rss_after = tree_memory_mib(served.process.pid)
    latencies = main["latencies"]
    served_ms = latencies["http"] + latencies["grpc"] + latencies["image"]
    return {
        "requests": main["issued"], "threads": threads, "errors": len(main["errors"]) + len(warm["errors"]),
        "first_errors": (warm["errors"] + main["errors"])[:3], "wall_s": round(main["wall"], 1),
        "requests_per_s": round(len(served_ms) / main["wall"], 2),
        "latency_ms": {p: {"p50": _pct(v, 50), "p90": _pct(v, 90), "p99": _pct(v, 99), "n": len(v)}
                       for p, v in latencies.items()},
        "impatient_clients": impatient,
        "served_rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1),
                          "growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1),
                          "trace_s_mb": trace},
        "sizes": [list(s) for s in SIZES],
    }


def soak(onnx_path: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "triton_models"
        build_repository(onnx_path, repo, log=lambda s: None)
        with ServeProcess(repo, [TENSOR_MODEL, IMAGE_MODEL]) as served:
            pid = served.process.pid  # gsam serve itself (the gateway): the tree without its children
            gateway_start = tree_memory_mib(pid) - tree_memory_mib(pid, include_root=False)
            report = soak_phase(served, args.requests, args.threads, args.time_limit, args.aborts)
            report["gateway_overhead"] = gateway_overhead(served, args.overhead_iters)
            report["stub_kill"] = stub_recovery(served)
            report["gateway_rss_mb"] = {"ready": round(gateway_start, 1), "end": round(
                tree_memory_mib(pid) - tree_memory_mib(pid, include_root=False), 1)}
            report["sigterm_exit_s"] = round(served.stop(), 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=1200.0)
    parser.add_argument("--aborts", type=int, default=10, help="Rounds of dropped requests (HTTP and gRPC each).")
    parser.add_argument("--overhead-iters", type=int, default=10, help="Requests per size, path and protocol.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx
        if onnx_path is None:
            import torch

            from gsam.export.onnx import export_onnx
            from gsam.model import build_gsam

            torch.manual_seed(0)
            onnx_path = Path(tmp) / "tiny.onnx"
            export_onnx(build_gsam("tiny", num_classes=3), onnx_path, exporter="torchscript", log=lambda s: None)
        report = soak(onnx_path, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
