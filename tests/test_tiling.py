"""Tiled inference: the tile layout, blending, equality with whole-image inference, big files, bad input."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gsam.cli import cli
from gsam.errors import GSAMError
from gsam.pixels.tiling import Tiles, axis_weights, iter_blended_rows, segment_tiled, tile_layout, tile_starts


def pointwise(batch: np.ndarray) -> np.ndarray:
    """A fake model whose logits at a pixel depend only on that pixel: every tile agrees exactly."""
    return np.stack([batch[:, 0] - batch[:, 1], batch[:, 2] * 0.5, -batch[:, 0]], axis=1)


@given(length=st.integers(1, 12000), tile=st.integers(2, 2048), data=st.data())
@example(length=2048, tile=1024, data=None).via("three tiles of 768")
@example(length=6000, tile=1024, data=None).via("the 36-megapixel side")
@settings(max_examples=300, deadline=None)
def test_fewest_equal_tiles_cover_the_axis_edge_to_edge(length, tile, data):
    overlap = data.draw(st.integers(0, tile - 1)) if data else 128
    min_size = data.draw(st.integers(1, tile)) if data else 32
    size, starts = tile_layout(length, tile, overlap, min_size)
    fewest = 1 if length <= tile else -(-(length - overlap) // (tile - overlap))
    assert len(starts) == fewest and min(min_size, length) <= size <= min(tile, length)
    assert (size == length) == (length <= tile)
    assert starts[0] == 0 and starts[-1] + size == length and starts == sorted(set(starts))
    assert all(size - (b - a) >= overlap for a, b in zip(starts, starts[1:]))  # overlap at least as asked
    steps = [b - a for a, b in zip(starts, starts[1:])]
    assert not steps or max(steps) - min(steps) <= 1  # spread evenly: no tile slides over its neighbour
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + size] = True
        w = axis_weights(s, size, length, overlap)
        assert (w > 0).all() and (w.max() == 1.0 or 2 * overlap >= size)
    assert covered.all()


def test_blending_a_pointwise_model_gives_the_whole_image_result():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 3, 150, 230)).astype(np.float32)
    whole = pointwise(images)
    for window in ("linear", "gaussian"):
        tiled = segment_tiled(pointwise, images, Tiles(64, 24, window=window), batch_size=3)
        np.testing.assert_allclose(tiled["logits"], whole, rtol=1e-5, atol=1e-4)
        assert tiled["mask"].shape == (2, 150, 230) and tiled["mask"].dtype == np.int32
    # pixels that only one tile covers keep that tile's logits bit for bit
    single = segment_tiled(pointwise, images, Tiles(64, 24))["logits"]
    rows, columns = tile_starts(150, 64, 24)[1], tile_starts(230, 64, 24)[1]  # where the second tiles begin
    assert rows > 20 and columns > 20
    assert np.array_equal(single[:, :, :rows, :columns], whole[:, :, :rows, :columns])


def test_rows_are_blended_band_by_band_and_tiles_batched():
    calls, reads = [], []
    height, width, tile = 700, 300, 128

    def run(batch):
        calls.append(batch.shape)
        return pointwise(batch)

    image = np.random.default_rng(1).uniform(0, 255, (3, height, width)).astype(np.float32)

    def read_rows(y0, y1):
        reads.append((y0, y1))
        return image[:, y0:y1]

    bands = list(iter_blended_rows(run, read_rows, height, width, Tiles(tile, 32), batch_size=2))
    (rows, ys), (columns, _) = tile_layout(height, tile, 32), tile_layout(width, tile, 32)
    assert (len(ys), rows, columns) == (7, 128, 122)  # 7 x 3 tiles; the columns shrink from 128 to fit evenly
    assert all(y1 - y0 == rows for y0, y1 in reads)  # never more than a tile of rows read
    assert [y for y, _ in bands] == ys
    assert sum(b.shape[1] for _, b in bands) == height and all(b.shape[1] <= tile for _, b in bands)
    assert max(n for n, *_ in calls) == 2 and all(shape[2:] == (rows, columns) for shape in calls)


def test_image_in_one_tile_gives_exactly_the_whole_image_result(tiny_onnx):
    from gsam.runtime.backends import load_backend
    from gsam.runtime.backends.tiled import TiledSegmenter

    backend = load_backend("onnxruntime", tiny_onnx)
    image = np.random.default_rng(2).uniform(0, 255, (1, 3, 72, 100)).astype(np.float32)
    whole, tiled = backend(image), TiledSegmenter(backend, tile=128, overlap=32)(image)
    assert np.array_equal(whole["logits"], tiled["logits"]) and np.array_equal(whole["mask"], tiled["mask"])


def seam_distance(length: int, tile: int, overlap: int) -> np.ndarray:
    """Per position along an axis: distance to the nearest inner tile edge."""
    size, starts = tile_layout(length, tile, overlap)
    edges = [e for s in starts for e in (s, s + size) if 0 < e < length]
    positions = np.arange(length)
    return np.min(np.abs(positions[:, None] - np.array(edges)[None, :]), axis=1)


def test_medium_image_tiled_agrees_with_whole(trained_run):
    """Trained tiny model, 512x512 generated image, tiles of 256 with the default overlap of 128."""
    from gsam.data.synth import make_sample
    from gsam.model.segmenter import to_model_input
    from gsam.runtime.backends import load_backend
    from gsam.runtime.backends.tiled import DEFAULT_OVERLAP, TiledSegmenter

    backend = load_backend("torch", trained_run)
    image, _ = make_sample(np.random.default_rng(5), 512, 512, 3)
    batch = to_model_input(image)
    whole = backend(batch)["mask"][0]
    tiled = TiledSegmenter(backend, tile=256, overlap=DEFAULT_OVERLAP)(batch)["mask"][0]
    agree = whole == tiled
    print(f"agreement {agree.mean():.4%}")
    assert agree.mean() >= 0.995, agree.mean()
    # near an inner tile edge (within 16 px) the disagreement is at most 2 points above the rest
    near = (seam_distance(512, 256, DEFAULT_OVERLAP)[:, None] < 16) | (seam_distance(512, 256, DEFAULT_OVERLAP)[None] < 16)
    assert (1 - agree[near].mean()) <= (1 - agree[~near].mean()) + 0.02


def test_predict_tiled_through_the_cli(tiny_onnx, tmp_path):
    import tifffile
    from PIL import Image

    from gsam.model.segmenter import to_model_input
    from gsam.runtime.backends import load_backend

    image = np.random.default_rng(3).integers(0, 255, (160, 200, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "strips.tif", image, compression="zlib", rowsperstrip=16)
    Image.fromarray(image).save(tmp_path / "small.png")
    result = CliRunner().invoke(cli, ["predict", str(tiny_onnx), str(tmp_path / "strips.tif"),
                                       str(tmp_path / "small.png"), "--out", str(tmp_path / "out"),
                                       "--tile", "96", "--overlap", "32"])
    assert result.exit_code == 0, result.output
    tiled = np.asarray(Image.open(tmp_path / "out/masks/strips.png"))
    assert tiled.shape == (160, 200)
    assert np.array_equal(tiled, np.asarray(Image.open(tmp_path / "out/masks/small.png")))
    whole = load_backend("onnxruntime", tiny_onnx)(to_model_input(image))["mask"][0]
    assert (tiled == whole).mean() > 0.5  # random weights: near-tied logits, but the same image and model
    # automatic tiling above --tile-above, said in the log
    result = CliRunner().invoke(cli, ["predict", str(tiny_onnx), str(tmp_path / "small.png"), "--out",
                                       str(tmp_path / "auto"), "--tile-above", "20000"])
    assert result.exit_code == 0 and "is above --tile-above 20000" in result.output, result.output
    result = CliRunner().invoke(cli, ["predict", str(tiny_onnx), str(tmp_path / "small.png"), "--out",
                                       str(tmp_path / "default")])
    assert result.exit_code == 0 and "B per pixel (measured for tiny)" in result.output, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "default/masks/small.png")), whole)


def test_big_masks_are_written_as_tiled_tiffs(tiny_onnx, tmp_path, monkeypatch):
    import tifffile

    from gsam.data import large_image

    monkeypatch.setattr(large_image, "TIFF_ABOVE_PIXELS", 100 * 100)
    monkeypatch.setattr("gsam.runtime.prediction.TIFF_ABOVE_PIXELS", 100 * 100)
    image = np.random.default_rng(4).integers(0, 255, (140, 300, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "contiguous.tif", image)
    result = CliRunner().invoke(cli, ["predict", str(tiny_onnx), str(tmp_path / "contiguous.tif"),
                                       "--out", str(tmp_path / "out"), "--tile", "128", "--overlap", "32"])
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out/masks/contiguous.tif") as tif:
        assert tif.pages.first.is_tiled and tif.pages.first.shape == (140, 300)
    overlay = tifffile.imread(tmp_path / "out/overlays/contiguous.tif")
    assert overlay.shape == (140, 300, 3)


@pytest.mark.parametrize("flags,message", [
    (["--tile", "16"], "--tile 16 --overlap 128: tile 16 is below the model's minimum side of 32 pixels"),
    (["--tile", "64", "--overlap", "64"], "overlap 64 must be at least 0 and smaller than the tile (64)"),
])
def test_bad_tiling_flags_fail_in_one_line(tiny_onnx, tmp_path, flags, message):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["predict", str(tiny_onnx), str(tmp_path / "a.png"), "--out",
                                       str(tmp_path / "out"), *flags])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code != 0 and len(errors) == 1 and message in errors[0], result.output


def test_unreadable_big_files_fail_in_one_line(tiny_onnx, tmp_path):
    import tifffile
    from PIL import Image

    tifffile.imwrite(tmp_path / "big.tif", np.zeros((600, 800, 3), np.uint8), compression="zlib", rowsperstrip=32)
    data = (tmp_path / "big.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:len(data) // 3])
    Image.fromarray(np.zeros((120, 120, 3), np.uint8)).save(tmp_path / "bomb.png")
    for name, flags, message in [("cut.tif", ["--tile", "256"], "cut.tif: cannot read"),
                                 ("bomb.png", ["--max-image-pixels", "5000"],
                                  "bomb.png: image of 14400 pixels is above the decompression-bomb limit of 5000")]:
        result = CliRunner().invoke(cli, ["predict", str(tiny_onnx), str(tmp_path / name), "--out",
                                           str(tmp_path / "out"), *flags])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "--max-image-pixels" in result.output or name != "bomb.png"
        assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_eval_tiled(trained_run, synth_data, tmp_path):
    import json

    reports = {}
    for name, flags in [("whole", []), ("tiled", ["--tile", "64", "--overlap", "32"])]:
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(cli, ["eval", str(trained_run), "--data", str(synth_data), "--out", str(out),
                                           *flags])
        assert result.exit_code == 0, result.output
        reports[name] = json.loads(out.read_text())
    assert reports["tiled"]["tile"] == 64
    assert abs(reports["tiled"]["miou"] - reports["whole"]["miou"]) < 0.05, reports


# Peak resident memory of `gsam predict --tile 1024` on a 6000x6000 TIFF with the tiny model (measured 1.02 GiB,
# 198 s with the TIFF generation; one whole-image pass would need about 36 M pixels x 300 B = 10 GiB).
BIG_TIFF_PEAK_BOUND = 1.5 * 2**30


@pytest.mark.slow
def test_6000x6000_tiff_in_bounded_memory(tiny_onnx, tmp_path):
    import tifffile

    from gsam.data.large_image import write_tiled_tiff

    side = 6000
    rng = np.random.default_rng(6)
    write_tiled_tiff(tmp_path / "big.tif", ((y, rng.integers(0, 256, (min(500, side - y), side, 3), dtype=np.uint8))
                                            for y in range(0, side, 500)), side, side, channels=3)
    command = [sys.executable, "-m", "gsam", "predict", str(tiny_onnx), str(tmp_path / "big.tif"),
               "--out", str(tmp_path / "out"), "--tile", "1024"]
    # a fresh parent whose only child is gsam predict, so RUSAGE_CHILDREN is that child's peak alone
    probe = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    code, peak = (int(v) for v in result.stdout.split())
    assert code == 0, result.stderr[-2000:]
    print(f"peak RSS of gsam predict on {side}x{side}: {peak / 2**30:.2f} GiB")
    assert peak < BIG_TIFF_PEAK_BOUND, peak
    with tifffile.TiffFile(tmp_path / "out/masks/big.tif") as tif:
        assert tif.pages.first.shape == (side, side) and tif.pages.first.is_tiled
    with tifffile.TiffFile(tmp_path / "out/overlays/big.tif") as tif:
        assert tif.pages.first.shape == (side, side, 3)


def test_triton_build_refuses_tiles_that_cannot_work(tiny_onnx, tmp_path):
    from gsam.deploy.triton.repository import Tiling, build_repository

    for tiling, fragment in [(Tiling(tile=16, overlap=4), "minimum side (32)"), (Tiling(tile=64, overlap=64), "overlap"),
                             (Tiling(tile=512, overlap=64), "above --max-pixels")]:
        with pytest.raises(GSAMError, match=re.escape(fragment)):
            build_repository(tiny_onnx, tmp_path / "repo", max_pixels=256 * 256, tiling=tiling, log=lambda s: None)
    assert not (tmp_path / "repo").exists()
