"""gsam.load -> Predictor: one pipeline for Python, `gsam predict` and the rest; every input kind, tiling,
the example in docs/python_api.md, and wrong kinds of target refused in one line."""

from __future__ import annotations

import doctest
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gsam
from gsam.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model):
    """A run directory holding tiny_model as best.pt (no training: the pipeline is under test, not the weights)."""
    from gsam.model.checkpoint import save_gsam_checkpoint

    run = tmp_path_factory.mktemp("predictor") / "run"
    run.mkdir()
    save_gsam_checkpoint(run / "best.pt", tiny_model, epoch=1)
    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for name, (h, w) in {"small": (96, 128), "large": (230, 300)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("kind", ["run", "onnx"])
def test_load_gives_the_mask_gsam_predict_writes_whole_and_tiled(kind, tiny_run, tiny_onnx, photos, tmp_path):
    target = str(tiny_run if kind == "run" else tiny_onnx)
    result = CliRunner().invoke(cli, ["predict", target, str(photos), "--out", str(tmp_path), "--device", "cpu",
                                      "--amp", "off", "--tile-above", "30000"] if kind == "run" else
                                ["predict", target, str(photos), "--out", str(tmp_path), "--tile-above", "30000"])
    assert result.exit_code == 0, result.output
    with gsam.load(target, device="cpu", amp="off", tile_above=30000) as predictor:
        small, large = predictor.predict(photos / "small.png"), predictor.predict(photos / "large.png")
    assert (small.tiled, large.tiled) == (False, True)  # 230x300 is above the threshold: tiles, band by band
    for got in (small, large):
        assert got.mask.dtype == np.uint8 and got.mask.shape == got.image.shape[:2]
        np.testing.assert_array_equal(got.mask, _mask(tmp_path / "masks" / f"{got.name}.png"))


def test_every_input_kind_gives_the_same_mask_and_scores_on_request(tiny_run, photos, tmp_path):
    path = photos / "small.png"
    with gsam.load(tiny_run, device="cpu", amp="off") as predictor:
        want = predictor.predict(path, logits=True, probabilities=True)
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for given in (str(path), path.read_bytes(), Image.open(path), pixels):
            np.testing.assert_array_equal(predictor.predict(given).mask, want.mask)
        streamed = predictor.predict_many([path, path])
        assert not isinstance(streamed, list)
        assert [r.name for r in streamed] == ["small", "small"]
    assert want.logits.shape == (3, 96, 128) and want.probabilities.shape == (3, 96, 128)
    np.testing.assert_allclose(want.probabilities.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(want.logits.argmax(axis=0), want.mask)
    mask_path, overlay_path = want.save(tmp_path)
    np.testing.assert_array_equal(_mask(mask_path), want.mask)
    assert _mask(overlay_path).shape == (96, 128, 3)


@pytest.mark.parametrize("given, message", [
    (np.zeros((64, 64), np.uint8), "uint8 (H, W, 3)"),
    (np.zeros((64, 64, 3), np.float32), "uint8 (H, W, 3)"),
    (b"not an image", "image bytes"),
    (12, "cannot segment a int"),
    (np.zeros((8, 8, 3), np.uint8), "below the model's minimum side"),
])
def test_bad_inputs_fail_in_one_line(tiny_run, given, message):
    from gsam.errors import GSAMError

    with gsam.load(tiny_run, device="cpu", amp="off") as predictor, pytest.raises(GSAMError) as err:
        predictor.predict(given)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_wrong_kinds_of_target_name_the_kind_and_what_takes_it(tiny_onnx, synth_data, photos, tmp_path):
    from gsam.deploy.triton.repository import build_repository

    repo = tmp_path / "triton_models"
    build_repository(tiny_onnx, repo, log=lambda s: None)
    cases = [(repo, "a Triton model repository, not a run directory, .pt, .onnx", "gsam serve --repo"),
             (repo / "gsam_python", "a Triton model folder, not", "gsam serve --repo"),
             (synth_data, "a dataset folder, not", "gsam eval RUN --data"),
             (photos / "small.png", "an image, not", "give the model first")]
    for target, kind, hint in cases:
        result = CliRunner().invoke(cli, ["predict", str(target), str(photos), "--out", str(tmp_path / "o")])
        assert result.exit_code == 1 and kind in result.output and hint in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_the_one_liner_of_the_issue_runs(tiny_run, photos):
    code = f"import gsam; r = gsam.load({str(tiny_run)!r}, amp='off').predict({str(photos / 'small.png')!r}); " \
           "print(r.mask.shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "(96, 128)"


def test_the_readme_python_api_example_runs(tiny_run, tmp_path, monkeypatch, capsys):
    """README's example as written, in a folder holding demo_out/run and photo.png: the front page stays true."""
    import re

    code = re.search(r"## Python API\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    (tmp_path / "demo_out").mkdir()
    (tmp_path / "demo_out" / "run").symlink_to(tiny_run)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 130, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(90, 130)"
    assert (tmp_path / "pred" / "masks" / "photo.png").is_file() and (tmp_path / "pred" / "overlays" / "photo.png").is_file()


def test_the_python_api_doc_example_runs(tiny_run, tmp_path, monkeypatch):
    """docs/python_api.md's example, as a doctest, in a folder holding runs/demo and photo.png."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(tiny_run)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    failed, tried = doctest.testfile(str(ROOT / "docs" / "python_api.md"), module_relative=False,
                                     optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 8 and failed == 0
    assert (tmp_path / "predictions" / "masks" / "photo.png").is_file()
