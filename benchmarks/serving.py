"""What a request costs on the wire and in time, per way of calling a real Triton server, and what
dynamic batching does to throughput.

    python benchmarks/serving.py --onnx model.onnx [--size 1024] [--iters 5] [--out serving.md]
    python benchmarks/serving.py --onnx model.onnx --bls-sizes 512,1024,2048 --bls-iters 9 --out bls.md

1. Bytes on the wire (HTTP bodies, binary-data extension) and p50 latency at SIZE x SIZE for:
   FP32 tensor in / logits+mask out (everything), FP32 in / mask out, UINT8 in / mask out, and
   gsam_image (JPEG in, PNG out).
2. Throughput of gsam_python at concurrency 1, 4 and 8 for a same-size workload, with the dynamic
   batcher on (max batch 8) and off (max_batch_size 0), each on its own server.
3. With --bls-sizes: request bytes of an FP32 tensor, a UINT8 tensor and a JPEG at each size, and
   gsam_image's p50/p99 when it computes in gsam_python through BLS against gsam_image running
   onnxruntime in its own process (`--compute-model in-process`): two servers, requests alternated
   between them, so both see the same machine.
Loopback only; the image is a smooth synthetic picture (a photo-like JPEG size).
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gsam.deploy.triton.repository import Batching, build_repository
from gsam.runtime.serving.server import TritonServer, free_port
from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL


def synthetic_photo(size: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with a few shapes, so JPEG/PNG sizes look like a photo's, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(6 * x + rng.uniform(0, 6)) * np.cos(4 * y + rng.uniform(0, 6)) for _ in range(3)]
    image = (np.stack(channels, -1) * 80 + 128 + rng.normal(0, 6, (size, size, 3)))
    rows, cols = np.mgrid[0:size, 0:size]
    for _ in range(6):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(0.05, 0.2) * size
        image[(rows - cy) ** 2 + (cols - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def request_body(name: str, array: np.ndarray, datatype: str, outputs: list[str]) -> tuple[bytes, int]:
    import tritonclient.http as httpclient

    request = httpclient.InferInput(name, list(array.shape), datatype)
    request.set_data_from_numpy(array, binary_data=True)
    wanted = [httpclient.InferRequestedOutput(o, binary_data=True) for o in outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body([request], outputs=wanted)
    return body, json_size


def post(url: str, model: str, body: bytes, json_size: int | None) -> tuple[int, float]:
    """(response body bytes, seconds) of one POST; raises on a non-200 answer."""
    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    start = time.perf_counter()
    connection.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    seconds = time.perf_counter() - start
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{model}: HTTP {response.status}: {data[:200]!r}")
    return len(data), seconds


def wire_table(server: TritonServer, size: int, iters: int) -> str:
    rgb = synthetic_photo(size)
    tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    jpeg = jpeg_bytes(rgb)
    cases = [
        ("FP32 tensor in, logits+mask out", TENSOR_MODEL, request_body("image", tensor.astype(np.float32), "FP32",
                                                                         ["logits", "mask"])),
        ("FP32 tensor in, mask out", TENSOR_MODEL, request_body("image", tensor.astype(np.float32), "FP32", ["mask"])),
        ("UINT8 tensor in, mask out", TENSOR_MODEL, request_body("image_uint8", tensor, "UINT8", ["mask"])),
        ("gsam_image: JPEG in, PNG out", IMAGE_MODEL,
         request_body("image_bytes", np.array([jpeg], dtype=np.object_), "BYTES", ["mask_png"])),
    ]
    rows = [f"| request ({size}x{size}) | request bytes | response bytes | p50 ms | runs |", "|---|---:|---:|---:|---:|"]
    for label, model, (body, json_size) in cases:
        post(server.http_url, model, body, json_size)  # warm-up
        times, received = [], 0
        for _ in range(iters):
            received, seconds = post(server.http_url, model, body, json_size)
            times.append(seconds * 1000)
        rows.append(f"| {label} | {len(body):,} | {received:,} | {statistics.median(times):.0f} | {iters} |")
    return "\n".join(rows)


def throughput(server: TritonServer, size: int, concurrency: int, requests: int) -> tuple[float, int, int]:
    """(requests per second, inferences, executions) for `requests` same-size mask requests."""
    import tritonclient.http as httpclient

    images = [np.random.default_rng(i).integers(0, 256, (1, 3, size, size), dtype=np.uint8) for i in range(requests)]
    bodies = [request_body("image_uint8", x, "UINT8", ["mask"]) for x in images]
    stats = httpclient.InferenceServerClient(server.http_url)
    before = stats.get_inference_statistics(TENSOR_MODEL)["model_stats"][0]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda b: post(server.http_url, TENSOR_MODEL, *b), bodies))
    wall = time.perf_counter() - start
    after = stats.get_inference_statistics(TENSOR_MODEL)["model_stats"][0]
    return (requests / wall, int(after["inference_count"]) - int(before["inference_count"]),
            int(after["execution_count"]) - int(before["execution_count"]))


def throughput_table(onnx: Path, work: Path, size: int, requests: int, levels: list[int]) -> str:
    rows = [f"| dynamic batching | concurrency | requests/s ({size}x{size}) | inferences | executions |",
            "|---|---:|---:|---:|---:|"]
    for label, batching in (("on (max batch 8, 2 ms)", Batching(8, (), 2000)), ("off", None)):
        repo = work / f"repo-{'on' if batching else 'off'}"
        build_repository(onnx, repo, batching=batching)
        with TritonServer(repo, [TENSOR_MODEL], free_port(), free_port(), log_path=work / "triton.log") as server:
            throughput(server, size, 1, 2)  # warm-up
            for level in levels:
                rate, inferences, executions = throughput(server, size, level, requests)
                rows.append(f"| {label} | {level} | {rate:.2f} | {inferences} | {executions} |")
    return "\n".join(rows)


def bls_table(onnx: Path, work: Path, sizes: list[int], iters: int) -> str:
    """gsam_image through BLS against in-process, alternated request by request; bytes per way of sending."""
    bytes_rows = ["| image | FP32 tensor | UINT8 tensor | JPEG (q 90) |", "|---|---:|---:|---:|"]
    time_rows = ["| image | BLS p50 ms | BLS p99 ms | in-process p50 ms | in-process p99 ms | BLS / in-process (p50) |",
                 "|---|---:|---:|---:|---:|---:|"]
    servers = {}
    for name, compute in (("bls", "auto"), ("in-process", "in-process")):
        build_repository(onnx, work / f"repo-{name}", compute_model=compute, log=lambda s: None)
        servers[name] = TritonServer(work / f"repo-{name}", [TENSOR_MODEL, IMAGE_MODEL], free_port(), free_port(),
                                     log_path=work / f"triton-{name}.log").start()
    try:
        for size in sizes:
            rgb = synthetic_photo(size)
            tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
            jpeg = request_body("image_bytes", np.array([jpeg_bytes(rgb)], dtype=np.object_), "BYTES", ["mask_png"])
            sent = [len(request_body("image", tensor.astype(np.float32), "FP32", ["mask"])[0]),
                    len(request_body("image_uint8", tensor, "UINT8", ["mask"])[0]), len(jpeg[0])]
            bytes_rows.append(f"| {size}x{size} ({size * size / 1e6:.2f} MP) | " + " | ".join(f"{b:,}" for b in sent)
                              + " |")
            times: dict[str, list[float]] = {name: [] for name in servers}
            for name, server in servers.items():  # warm-up
                post(server.http_url, IMAGE_MODEL, *jpeg)
            for _ in range(iters):
                for name, server in servers.items():
                    times[name].append(post(server.http_url, IMAGE_MODEL, *jpeg)[1] * 1000)
            bls, local = (np.percentile(times[n], [50, 99]) for n in ("bls", "in-process"))
            time_rows.append(f"| {size}x{size} | {bls[0]:.0f} | {bls[1]:.0f} | {local[0]:.0f} | {local[1]:.0f} | "
                             f"{bls[0] / local[0]:.3f} |")
    finally:
        for server in servers.values():
            server.stop()
    return ("### Request bytes, mask out\n\n" + "\n".join(bytes_rows) + f"\n\n### gsam_image, {iters} requests per "
            "size and way, alternated\n\n" + "\n".join(time_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--size", type=int, default=1024, help="Side of the wire/latency image.")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256, help="Side of the same-size throughput workload.")
    parser.add_argument("--requests", type=int, default=32, help="Requests per throughput case.")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--bls-sizes", help="Sides for section 3 only, e.g. 512,1024,2048 (sections 1-2 skipped).")
    parser.add_argument("--bls-iters", type=int, default=9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.bls_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            text = (f"# gsam_image: compute through BLS against in-process\n\nmodel: {args.onnx}\n\n"
                    + bls_table(args.onnx, Path(tmp), [int(s) for s in args.bls_sizes.split(",")], args.bls_iters)
                    + "\n")
        print(text)
        if args.out:
            args.out.write_text(text)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_repository(args.onnx, work / "repo")
        with TritonServer(work / "repo", [TENSOR_MODEL, IMAGE_MODEL], free_port(), free_port(),
                          log_path=work / "triton.log") as server:
            wire = wire_table(server, args.size, args.iters)
        batching = throughput_table(args.onnx, work, args.batch_size, args.requests, levels)
    text = (f"# Serving: wire bytes and latency, dynamic batching\n\nmodel: {args.onnx}\n\n## Bytes on the wire and "
            f"p50 latency\n\n{wire}\n\n## Throughput, same-size workload (UINT8 in, mask out)\n\n{batching}\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
