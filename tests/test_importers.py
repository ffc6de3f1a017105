"""`gsam data import --from g-sam`: a tiny fake of each dataset in the official loaders' layout (real
folder and file names, generated pixels) imports, passes `gsam data check` and trains for a step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli
from gsam.commands.data import IMPORT_DATASETS
from gsam.data.imageio import read_image, read_mask
from gsam.data.importers import IMPORTERS
from gsam.data.importers.cityscapes import LABEL_TO_TRAIN_ID

RNG = np.random.default_rng(0)


def _rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _blob(h: int, w: int, inside, outside) -> np.ndarray:
    """A rectangle of `inside` on `outside` (scalars or RGB triples)."""
    channels = np.ndim(inside)
    out = np.empty((h, w, 3) if channels else (h, w), dtype=np.uint8)
    out[...] = outside
    out[h // 4: 3 * h // 4, w // 4: w // 2] = inside
    return out


def make_isbi2012(root: Path) -> None:
    for i in range(3):  # folder 0 is validation with the default fold 0
        _png(root / "Image" / f"train-volume-{i:02d}" / f"slice_{i:02d}.png", _rgb(64, 64)[:, :, 0])
        _png(root / "Label" / f"train-labels-{i:02d}" / f"slice_{i:02d}.png", _blob(64, 64, (0, 0, 0), (255, 255, 255)))


def make_camvid(root: Path) -> None:
    for split, names in (("train", ["0001TP_006690", "0001TP_006720"]), ("val", ["0016E5_07959"])):
        for name in names:
            _png(root / "image" / split / f"{name}.png", _rgb(72, 96))
            ids = RNG.integers(0, 12, (72, 96), dtype=np.uint8)  # 11 = void
            _png(root / "image" / f"{split}annot" / f"{name}.png", ids)
        (root / "list").mkdir(parents=True, exist_ok=True)
        (root / "list" / f"{split}_d.txt").write_text("".join(f"{split}/{n}.png\n" for n in names))
        (root / "list" / f"{split}_l.txt").write_text("".join(f"{split}annot/{n}.png\n" for n in names))


def make_m_building(root: Path) -> None:
    for split, names in (("train", ["22678915_15", "22678930_15"]), ("val", ["22828930_15"])):
        for name in names:
            (root / "tiff" / split).mkdir(parents=True, exist_ok=True)
            (root / "tiff" / f"{split}_labels").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "tiff" / split / f"{name}.tiff", _rgb(80, 80), photometric="rgb")
            tifffile.imwrite(root / "tiff" / f"{split}_labels" / f"{name}.tif",
                             _blob(80, 80, (255, 255, 255), (0, 0, 0)), photometric="rgb")


def make_kvasir(root: Path) -> None:
    (root / "datamodel").mkdir(parents=True)
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        np.save(root / "datamodel" / f"{split}_data_1.npy", np.stack([_rgb(64, 64) for _ in range(n)]))
        np.save(root / "datamodel" / f"{split}_label_1.npy", np.stack([_blob(64, 64, 255, 0) for _ in range(n)]))


def make_synapse(root: Path) -> None:
    (root / "datamodel").mkdir(parents=True)
    for split, n in (("train", 2), ("val", 1)):
        np.save(root / "datamodel" / f"{split}_data_1.npy", RNG.uniform(0, 255, (n, 64, 64)).astype(np.float32))
        np.save(root / "datamodel" / f"{split}_label_1.npy", RNG.integers(0, 9, (n, 64, 64)).astype(np.uint8))


CITY_IDS = np.array([0, 1, 4, 7, 8, 11, 14, 17, 18, 21, 23, 24, 26, 29, 31, 33], dtype=np.uint8)


def make_cityscapes(root: Path) -> None:
    for split, city, frames in (("train", "aachen", ["000000_000019", "000001_000019"]),
                                ("val", "frankfurt", ["000000_000294"])):
        for frame in frames:
            base = f"{city}_{frame}"
            _png(root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", _rgb(48, 96))
            labels = CITY_IDS[np.arange(48 * 96).reshape(48, 96) % len(CITY_IDS)]
            _png(root / "gtFine" / split / city / f"{base}_gtFine_labelIds.png", labels)
            _png(root / "gtFine" / split / city / f"{base}_gtFine_color.png", _rgb(48, 96))  # not a label


def make_trans10k(root: Path) -> None:
    def pair(folder: Path, name: str) -> None:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(64, 80)).save(folder / "images" / f"{name}.jpg", quality=95)
        mask = _blob(64, 80, (255, 255, 255), (0, 0, 0))
        mask[:8] = 85
        _png(folder / "masks" / f"{name}_mask.png", mask)

    pair(root / "train", "1")
    pair(root / "train", "2")
    for difficulty in ("easy", "hard"):
        pair(root / "val" / difficulty, f"{difficulty}1")


LAYOUTS = {"isbi2012": make_isbi2012, "camvid": make_camvid, "m-building": make_m_building, "kvasir": make_kvasir,
           "synapse": make_synapse, "cityscapes": make_cityscapes, "trans10k": make_trans10k}
EXPECTED_COUNTS = {"isbi2012": {"train": 2, "val": 1}, "camvid": {"train": 2, "val": 1},
                   "m-building": {"train": 2, "val": 1}, "kvasir": {"train": 2, "val": 1, "test": 1},
                   "synapse": {"train": 2, "val": 1}, "cityscapes": {"train": 2, "val": 1},
                   "trans10k": {"train": 2, "val": 2}}


def test_cli_choices_are_the_importers():
    assert IMPORT_DATASETS == list(IMPORTERS) == list(LAYOUTS)


def _import(dataset: str, src: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["data", "import", "--from", "g-sam", "--dataset", dataset, str(src),
                                    "--out", str(out), *extra])


@pytest.mark.parametrize("dataset", list(LAYOUTS))
def test_official_layout_imports_checks_and_trains(dataset, tmp_path):
    src, out = tmp_path / "src", tmp_path / "data"
    LAYOUTS[dataset](src)
    result = _import(dataset, src, out)
    assert result.exit_code == 0, result.output
    counts = EXPECTED_COUNTS[dataset]
    for split, n in counts.items():
        assert len(list((out / split / "masks").iterdir())) == n, split
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(counts)
    classes = yaml.safe_load((out / "classes.yaml").read_text())
    assert classes["imported_from"]["dataset"] == dataset and len(classes["palette"]) == len(classes["names"])
    if dataset not in ("kvasir", "synapse"):  # file-based images are linked, not copied
        assert all(p.is_symlink() for p in (out / "train" / "images").iterdir())

    check = CliRunner().invoke(cli, ["data", "check", str(out)])
    assert check.exit_code == 0, check.output

    run = tmp_path / "run"
    trained = CliRunner().invoke(cli, ["train", "--recipe", dataset, "--data", str(out), "--out", str(run),
                                       "--model", "tiny", "--resize", "64x64", "--crop", "64", "--epochs", "1",
                                       "--steps-per-epoch", "1", "--batch-size", "1", "--workers", "0", "--quiet"])
    assert trained.exit_code == 0, trained.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["recipe"] == dataset and config["classes"]["names"] == classes["names"]


def test_binary_labels_follow_the_red_channel_rule(tmp_path):
    make_isbi2012(tmp_path / "src")
    assert _import("isbi2012", tmp_path / "src", tmp_path / "data").exit_code == 0
    mask = read_mask(next((tmp_path / "data" / "val" / "masks").iterdir()))
    expected = (_blob(64, 64, (0, 0, 0), (255, 255, 255))[:, :, 0] < 150).astype(np.int64)
    np.testing.assert_array_equal(mask, expected)  # the dark rectangle (membrane) is class 1
    assert (tmp_path / "data" / "val" / "images" / "train-volume-00_slice_00.png").is_symlink()


def test_cityscapes_label_ids_map_to_19_train_ids_and_ignore(tmp_path):
    make_cityscapes(tmp_path / "src")
    assert _import("cityscapes", tmp_path / "src", tmp_path / "data").exit_code == 0
    ids = read_mask(tmp_path / "src" / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png")
    mask = read_mask(tmp_path / "data" / "train" / "masks" / "aachen_000000_000019.png")
    expected = {0: 255, 1: 255, 4: 255, 7: 0, 8: 1, 11: 2, 14: 255, 17: 5, 18: 255, 21: 8, 23: 10, 24: 11, 26: 13,
                29: 255, 31: 16, 33: 18}
    for label_id, train_id in expected.items():
        assert set(np.unique(mask[ids == label_id]).tolist()) == {train_id}, label_id
    assert len(LABEL_TO_TRAIN_ID) == 19 and sorted(LABEL_TO_TRAIN_ID.values()) == list(range(19))
    classes = yaml.safe_load((tmp_path / "data" / "classes.yaml").read_text())
    assert len(classes["names"]) == 19 and classes["ignore_index"] == 255


def test_camvid_void_becomes_the_ignore_index(tmp_path):
    make_camvid(tmp_path / "src")
    assert _import("camvid", tmp_path / "src", tmp_path / "data").exit_code == 0
    ids = read_mask(tmp_path / "src" / "image" / "trainannot" / "0001TP_006690.png")
    mask = read_mask(tmp_path / "data" / "train" / "masks" / "train_0001TP_006690.png")
    np.testing.assert_array_equal(mask, np.where(ids == 11, 255, ids))


def test_float_ct_slices_are_stored_losslessly(tmp_path):
    make_synapse(tmp_path / "src")
    assert _import("synapse", tmp_path / "src", tmp_path / "data").exit_code == 0
    original = np.load(tmp_path / "src" / "datamodel" / "train_data_1.npy")[1]
    stored = tifffile.imread(tmp_path / "data" / "train" / "images" / "train_1_00001.tif")
    assert stored.dtype == np.float32 and np.array_equal(stored, original)
    assert read_image(tmp_path / "data" / "train" / "images" / "train_1_00001.tif").shape == (64, 64, 3)


def test_trans10k_mask_values_map_to_three_classes(tmp_path):
    make_trans10k(tmp_path / "src")
    assert _import("trans10k", tmp_path / "src", tmp_path / "data").exit_code == 0
    mask = read_mask(tmp_path / "data" / "val" / "masks" / "hard_hard1.png")
    assert set(np.unique(mask).tolist()) == {0, 1, 2} and (mask[:8] == 1).all()


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def test_wrong_layout_is_one_line_naming_the_folder(tmp_path):
    make_isbi2012(tmp_path / "src")
    result = _import("cityscapes", tmp_path / "src", tmp_path / "data")
    _one_line_error(result, str(tmp_path / "src" / "leftImg8bit" / "train"), "missing folder")
    assert not (tmp_path / "data").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no half-written dataset left behind


@pytest.mark.parametrize("dataset,break_it,fragment", [
    ("camvid", lambda s: _png(s / "image" / "trainannot" / "0001TP_006720.png", np.full((72, 96), 12, np.uint8)),
     "0001TP_006720.png: label value 12"),
    ("trans10k", lambda s: _png(s / "val" / "hard" / "masks" / "hard1_mask.png", np.full((64, 80), 128, np.uint8)),
     "hard1_mask.png: mask value 128"),
    ("m-building", lambda s: (s / "tiff" / "val" / "22828930_15.tiff").unlink(), "22828930_15.tif: label has no image"),
    ("kvasir", lambda s: np.save(s / "datamodel" / "val_label_1.npy", np.zeros((2, 64, 64), np.uint8)),
     "val_label_1.npy: array shape (2, 64, 64)"),
    ("isbi2012", lambda s: _png(s / "Label" / "train-labels-01" / "slice_01.png", np.zeros((32, 64), np.uint8)),
     "slice_01.png: label is 32x64 but its image is 64x64"),
    ("cityscapes", lambda s: (s / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png").unlink(),
     "frankfurt_000000_000294_leftImg8bit.png: no label"),
    ("synapse", lambda s: np.save(s / "datamodel" / "val_label_1.npy", np.full((1, 64, 64), 9, np.uint8)),
     "val_label_1.npy[0]: label value 9"),
])
def test_inconsistent_input_is_one_line_naming_the_file(tmp_path, dataset, break_it, fragment):
    LAYOUTS[dataset](tmp_path / "src")
    break_it(tmp_path / "src")
    result = _import(dataset, tmp_path / "src", tmp_path / "data")
    _one_line_error(result, fragment)
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_an_existing_dataset_is_never_overwritten(tmp_path):
    make_kvasir(tmp_path / "src")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    _one_line_error(_import("kvasir", tmp_path / "src", tmp_path / "data"), "already exists")
    assert (tmp_path / "data" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("line", ["../../outside.png", "train/../../../outside.png", "/etc/outside.png"])
def test_list_lines_outside_the_source_folder_are_refused_naming_the_list_and_line(tmp_path, line):
    make_camvid(tmp_path / "src")
    (tmp_path / "outside.png").write_bytes((tmp_path / "src" / "image" / "train" / "0001TP_006690.png").read_bytes())
    image_list = tmp_path / "src" / "list" / "train_d.txt"
    image_list.write_text("train/0001TP_006690.png\n\n" + line + "\n")  # the blank line still counts
    result = _import("camvid", tmp_path / "src", tmp_path / "data")
    _one_line_error(result, f"{image_list}: line 3: '{line}' points outside", "list lines must name files under it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.png", "src"]


def test_imported_dataset_takes_the_umask_mode_not_mkdtemps_0700(tmp_path):
    import os

    make_camvid(tmp_path / "src")
    previous = os.umask(0o022)
    try:
        assert _import("camvid", tmp_path / "src", tmp_path / "data").exit_code == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "data" / "classes.yaml").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "data" / "train" / "masks").stat().st_mode & 0o777 == 0o755


def test_label_files_pillow_would_hand_to_other_programs_are_refused(tmp_path):
    make_camvid(tmp_path / "src")
    label = tmp_path / "src" / "image" / "trainannot" / "0001TP_006720.png"
    label.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 96 72\nshowpage\n")
    result = _import("camvid", tmp_path / "src", tmp_path / "data")
    _one_line_error(result, f"{label}: cannot read label (not a PNG, JPEG, TIFF, BMP file)")
