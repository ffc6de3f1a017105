"""Bounded soak of a real Triton server: mixed-size requests from many threads to every CPU model
(gsam_python over HTTP and gRPC, gsam_image with PNG bytes over HTTP), plus clients that give up
mid-request, with the server's resident memory before and after.

    python benchmarks/soak.py --requests 2000 --threads 16 [--onnx model.onnx] [--out soak.json]

Without --onnx it exports a tiny random-weights model. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from gsam.runtime.backends import load_backend
from gsam.runtime.bench.process_memory import tree_memory_mib
from gsam.runtime.triton.repository import build_repository
from gsam.runtime.triton.server import TritonServer, free_port

SIZES = [(64, 64), (96, 128), (160, 120), (200, 300), (33, 47), (256, 192)]
ABORT_SIZE = (384, 384)


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
                client.infer("gsam_python", [request], **extra)
                counts["completed"] += 1
            except Exception:
                counts["aborted"] += 1
            client.close()
        time.sleep(1.0)


def load_phase(server: TritonServer, threads: int, requests: int, inputs: dict, time_limit: float) -> dict:
    """`requests` mixed-size requests from `threads` threads (gRPC, HTTP and gsam_image clients in turn,
    each created in its own thread: tritonclient's HTTP client is bound to its thread)."""
    lock, issued = threading.Lock(), [0]
    latencies: dict[str, list[float]] = {"http": [], "grpc": [], "image": []}
    errors: list[str] = []
    deadline = time.monotonic() + time_limit

    def worker(index: int) -> None:
        protocol = ("grpc", "http", "image")[index % 3]
        client = load_backend(f"triton-{protocol}", server.grpc_url if protocol == "grpc" else server.http_url)
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


def soak(onnx_path: Path, requests: int, threads: int, time_limit: float, aborts: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "triton_models"
        build_repository(onnx_path, repo)
        with TritonServer(repo, ["gsam_python", "gsam_image"], free_port(), free_port(),
                          log_path=Path(tmp) / "triton.log") as server:
            rng = np.random.default_rng(0)
            inputs = {s: rng.uniform(0, 255, (1, 3, *s)).astype(np.float32) for s in SIZES}
            warm = load_phase(server, threads, threads * len(SIZES), inputs, time_limit)  # every size, full concurrency
            time.sleep(1.0)
            rss_before = tree_memory_mib(server.process.pid)
            stop = threading.Event()
            impatient = {"completed": 0, "aborted": 0}
            disturber = threading.Thread(target=impatient_client,
                                         args=(server.http_url, server.grpc_url, stop, impatient, aborts))
            trace: list[tuple[float, float]] = []

            def sample_memory() -> None:  # RSS every 5 s: a plateau is allocation, a slope would be a leak
                t0 = time.monotonic()
                while not stop.wait(5.0):
                    trace.append((round(time.monotonic() - t0, 1), round(tree_memory_mib(server.process.pid), 1)))

            sampler = threading.Thread(target=sample_memory)
            disturber.start()
            sampler.start()
            main = load_phase(server, threads, requests, inputs, time_limit)
            stop.set()
            disturber.join()
            sampler.join()
            time.sleep(1.0)
            rss_after = tree_memory_mib(server.process.pid)
            latencies = main["latencies"]
            served = latencies["http"] + latencies["grpc"] + latencies["image"]
            pct = lambda values, q: round(float(np.percentile(values, q)), 1) if values else None  # noqa: E731
            return {
                "requests": main["issued"], "threads": threads, "errors": len(main["errors"]) + len(warm["errors"]),
                "first_errors": (warm["errors"] + main["errors"])[:3], "wall_s": round(main["wall"], 1),
                "requests_per_s": round(len(served) / main["wall"], 2),
                "latency_ms": {p: {"p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99), "n": len(v)}
                               for p, v in latencies.items()},
                "impatient_clients": impatient,
                "server_rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1),
                                  "growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1),
                                  "trace_s_mb": trace},
                "sizes": [list(s) for s in SIZES],
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=1200.0)
    parser.add_argument("--aborts", type=int, default=10, help="Rounds of dropped requests (HTTP and gRPC each).")
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
        report = soak(onnx_path, args.requests, args.threads, args.time_limit, args.aborts)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
