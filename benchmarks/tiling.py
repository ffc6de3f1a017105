"""Latency and peak memory of whole-image against tiled inference in onnxruntime, by image size.

Each measurement runs in a fresh child process, so its peak resident memory (ru_maxrss) is its own:
the model, a random uint8 image of the size, and either one whole-image forward pass or the tiled,
band-by-band pass (TiledSegmenter.blended_rows, masks kept per band and dropped). Prints a markdown table.

    python benchmarks/tiling.py --model tiny=benchmarks/work/tiny.onnx --sizes 1024,2048,4096,6000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(model: str, side: int, mode: str, tile: int, overlap: int, threads: int) -> None:
    import numpy as np

    from gsam.pixels.masks import logits_to_mask
    from gsam.runtime.backends import load_backend
    from gsam.runtime.backends.tiled import TiledSegmenter

    segmenter = load_backend("onnxruntime", model, threads=threads)
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    start = time.perf_counter()
    if mode == "whole":
        mask = segmenter(image.transpose(2, 0, 1)[None].astype(np.float32))["mask"]
        rows = mask.shape[1]
    else:
        tiled = TiledSegmenter(segmenter, tile, overlap)
        rows = 0
        for _, logits in tiled.blended_rows(lambda y0, y1: image[y0:y1].transpose(2, 0, 1), side, side):
            rows += logits_to_mask(logits[None]).shape[1]
    seconds = time.perf_counter() - start
    assert rows == side
    print(json.dumps({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def agreement(run_dir: str, cases: list[tuple[int, int, int, int]], seam: int = 16) -> None:
    """Tiled against whole-image masks of a trained model on generated images: all pixels, and those
    within `seam` pixels of an inner tile edge against the rest."""
    import numpy as np

    from gsam.data.synth import make_sample
    from gsam.model.segmenter import to_model_input
    from gsam.pixels.tiling import tile_layout, tile_starts
    from gsam.runtime.backends import load_backend
    from gsam.runtime.backends.tiled import TiledSegmenter

    def near_edge(length, tile, overlap):
        size, starts = tile_layout(length, tile, overlap)
        edges = [e for s in starts for e in (s, s + size) if 0 < e < length]
        return np.min(np.abs(np.arange(length)[:, None] - np.array(edges or [-10**9])[None]), axis=1) < seam

    backend = load_backend("torch", run_dir)
    print(f"\nAgreement of tiled with whole-image masks ({run_dir}, generated images; seam = within {seam} px "
          "of an inner tile edge)\n")
    print("| image | tile | overlap | tiles | agreement | disagreement at seams | elsewhere |")
    print("|---|---|---|---|---|---|---|")
    for height, width, tile, overlap in cases:
        image, _ = make_sample(np.random.default_rng(height * 7 + width), height, width, 3)
        batch = to_model_input(image)
        whole = backend(batch)["mask"][0]
        tiled = TiledSegmenter(backend, tile, overlap)(batch)["mask"][0]
        same = whole == tiled
        near = near_edge(height, tile, overlap)[:, None] | near_edge(width, tile, overlap)[None]
        count = len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))
        print(f"| {height}x{width} | {tile} | {overlap} | {count} | {same.mean():.2%} | "
              f"{1 - same[near].mean():.2%} | {1 - same[~near].mean():.2%} |", flush=True)


def measure(model: str, side: int, mode: str, tile: int, overlap: int, threads: int) -> dict | str:
    command = [sys.executable, __file__, "--child", model, str(side), mode, str(tile), str(overlap), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        return f"failed (exit {done.returncode}{': ' + lines[-1][:80] if lines else ''})"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH.onnx (repeatable)")
    parser.add_argument("--sizes", default="1024,2048,4096,6000", help="square sides; NAME:SIDES per model overrides")
    parser.add_argument("--model-sizes", action="append", default=[], help="NAME=SIDE,SIDE for one model")
    parser.add_argument("--whole-max-mp", type=float, default=40.0, help="skip whole-image runs above this size")
    parser.add_argument("--model-whole-max-mp", action="append", default=[],
                        help="NAME=MP: skip this model's whole-image runs above MP (a whole vit_b pass needs "
                             "about 1.3 GB per megapixel)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--agreement", metavar="RUN", help="also compare masks of this trained run, tiled vs whole")
    args = parser.parse_args()
    if args.child:
        model, side, mode, tile, overlap, threads = args.child
        child(model, int(side), mode, int(tile), int(overlap), int(threads))
        return
    per_model = {name: [int(s) for s in sides.split(",")] for name, sides in (m.split("=") for m in args.model_sizes)}
    whole_max = {name: float(mp) for name, mp in (m.split("=") for m in args.model_whole_max_mp)}
    print(f"onnxruntime CPU, {args.threads} threads; tiles {args.tile} overlapping by {args.overlap}; "
          "peak RSS of a fresh process (model + uint8 image + inference)\n")
    print("| model | image | megapixels | whole: s | whole: peak RSS | tiled: s | tiled: peak RSS | tiles |")
    print("|---|---|---|---|---|---|---|---|")
    from gsam.pixels.tiling import Tiles, tile_count

    for spec in args.model:
        name, path = spec.split("=", 1)
        for side in per_model.get(name, [int(s) for s in args.sizes.split(",")]):
            mp = side * side / 1e6
            cells = []
            for mode in ("whole", "tiled"):
                limit = whole_max.get(name, args.whole_max_mp)
                if mode == "whole" and mp > limit:
                    cells.append(f"not run (> {limit:g} MP)")
                    continue
                result = measure(path, side, mode, args.tile, args.overlap, args.threads)
                cells.append(result if isinstance(result, str) else
                             f"{result['seconds']:.1f} | {result['peak_rss'] / 2**30:.2f} GiB")
                print(f"  {name} {side} {mode}: {cells[-1]}", file=sys.stderr, flush=True)
            cells = [c if " | " in c else f"{c} | " for c in cells]
            print(f"| {name} | {side}x{side} | {mp:.1f} | {cells[0]} | {cells[1]} | "
                  f"{tile_count(side, side, args.tile, args.overlap)} of "
                  f"{'x'.join(map(str, Tiles(args.tile, args.overlap).shape(side, side)))} |", flush=True)
    if args.agreement:
        agreement(args.agreement, [(256, 320, 192, 128), (512, 512, 192, 128), (512, 512, 256, 64),
                                   (768, 1024, 256, 128), (768, 1024, 384, 128)])


if __name__ == "__main__":
    main()
