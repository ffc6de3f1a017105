"""Dataset layout, its checks through the CLI, and the synthetic generator."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli
from gsam.data.dataset import SegmentationDataset, open_dataset_spec
from gsam.data.imageio import read_image
from gsam.data.synth import write_synthetic_dataset


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_is_deterministic_and_follows_the_layout(tmp_path):
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(cli, ["data", "synth", "--out", str(tmp_path / name), "--classes", "4", "--train", "5",
                                     "--val", "3", "--seed", "7"])
        assert result.exit_code == 0, result.output
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    other = runner.invoke(cli, ["data", "synth", "--out", str(tmp_path / "c"), "--classes", "4", "--train", "5", "--seed", "8"])
    assert other.exit_code == 0 and _digest(tmp_path / "c") != _digest(tmp_path / "a")
    root = tmp_path / "a"
    assert len(list((root / "train" / "images").glob("*.png"))) == 5
    assert len(list((root / "val" / "masks").glob("*.png"))) == 3
    spec = open_dataset_spec(root)
    assert spec.names == ("background", "disc", "square", "triangle")
    sizes = {Image.open(p).size for p in (root / "train" / "images").glob("*.png")}
    assert any(w != h for w, h in sizes) and len(sizes) > 1
    dataset = SegmentationDataset.open(root, "train")
    ids = set().union(*(set(np.unique(dataset[i][1].numpy())) for i in range(len(dataset))))
    assert ids <= {0, 1, 2, 3} and len(ids) >= 3


def test_binary_masks_are_read_as_zero_one(tmp_path):
    write_synthetic_dataset(tmp_path, num_classes=2, train=3, val=1, progress=False)
    raw = np.asarray(Image.open(next((tmp_path / "train" / "masks").glob("*.png"))))
    assert set(np.unique(raw)) <= {0, 255}
    dataset = SegmentationDataset.open(tmp_path, "train")
    assert set(np.unique(dataset[0][1].numpy())) <= {0, 1}


def test_16_bit_and_grayscale_images_become_rgb(tmp_path):
    gray16 = (np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 13)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8 and image.max() > 200
    import tifffile

    tifffile.imwrite(tmp_path / "rgb16.tif", np.full((40, 50, 3), 65535, dtype=np.uint16))
    assert read_image(tmp_path / "rgb16.tif").min() == 255


def _break(root, how):
    train = root / "train"
    first_image = sorted((train / "images").glob("*.png"))[0]
    first_mask = train / "masks" / first_image.name
    if how == "image without mask":
        first_mask.unlink()
        return first_image, "has no mask"
    if how == "mask without image":
        first_image.unlink()
        return first_mask, "has no image"
    if how == "size mismatch":
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(first_mask)
        return first_mask, "mask is 20x30"
    if how == "class out of range":
        mask = np.asarray(Image.open(first_mask)).copy()
        mask[0, 0] = 7
        Image.fromarray(mask).save(first_mask)
        return first_mask, "class id 7 outside the 3 declared classes"
    if how == "unreadable image":
        first_image.write_bytes(b"\x89PNG not really")
        return first_image, "cannot read image"
    if how == "empty split":
        for p in (train / "images").glob("*"):
            p.unlink()
        return train / "images", "empty split"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["image without mask", "mask without image", "size mismatch",
                                 "class out of range", "unreadable image", "empty split"])
def test_bad_dataset_fails_in_one_line_through_the_cli(tmp_path, synth_data, how):
    root = tmp_path / "data"
    shutil.copytree(synth_data, root)
    culprit, message = _break(root, how)
    result = CliRunner().invoke(cli, ["train", "--data", str(root), "--out", str(tmp_path / "run"),
                                      "--model", "tiny", "--epochs", "1", "--workers", "0", "--quiet"])
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and message in error_lines[0] and str(culprit) in error_lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # nothing created for a dataset that fails its checks
