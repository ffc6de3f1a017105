"""`gsam train --recipe NAME`: the paper's per-dataset settings as presets that explicit settings override."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from gsam.cli import cli
from gsam.commands.train import RECIPE_NAMES
from gsam.errors import GSAMError
from gsam.train.recipes import RECIPES, apply_recipe


@pytest.fixture(scope="module")
def binary_data(tmp_path_factory):
    from gsam.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data") / "binary"
    write_synthetic_dataset(root, num_classes=2, train=2, val=1, min_size=64, max_size=72, seed=2, progress=False)
    return root


def _train(data, out, *flags):
    return CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), "--model", "tiny", "--epochs", "1",
                                    "--steps-per-epoch", "1", "--batch-size", "1", "--workers", "0", "--quiet", *flags])


def test_cli_choices_are_the_recipes():
    assert RECIPE_NAMES == list(RECIPES)


def test_recipe_values_reach_config_yaml(tmp_path, binary_data):
    result = _train(binary_data, tmp_path / "run", "--recipe", "isbi2012")
    assert result.exit_code == 0, result.output
    train = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert (train["recipe"], train["crop"], train["resize"], train["num_classes"]) == ("isbi2012", [128, 128],
                                                                                      [256, 256], 1)


def test_explicit_flags_and_config_keys_override_the_recipe(tmp_path, binary_data):
    config = tmp_path / "settings.yaml"
    config.write_text("resize: [96, 80]\n")
    result = _train(binary_data, tmp_path / "run", "--recipe", "isbi2012", "--crop", "64", "--num-classes", "2",
                    "--config", str(config))
    assert result.exit_code == 0, result.output
    train = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert (train["crop"], train["resize"], train["num_classes"]) == ([64, 64], [96, 80], 2)


def test_apply_recipe_keeps_explicit_settings_only():
    settings = {"recipe": "Cityscapes", "crop": (64, 64), "resize": None, "num_classes": None, "batch_size": 2}
    merged = apply_recipe(settings, explicit={"crop", "batch_size"})
    assert merged == {"recipe": "cityscapes", "crop": (64, 64), "resize": (512, 1024), "num_classes": 19,
                      "batch_size": 2}
    assert apply_recipe({"recipe": None, "crop": None}, explicit=()) == {"recipe": None, "crop": None}
    # native size with a recipe's other settings: `resize: null` in a --config file
    assert apply_recipe({"recipe": "camvid", "resize": None}, explicit={"resize"})["resize"] is None
    with pytest.raises(GSAMError, match="unknown recipe"):
        apply_recipe({"recipe": "ade20k"}, explicit=())


def test_a_dataset_that_does_not_fit_the_recipe_is_refused(tmp_path, synth_data):
    result = _train(synth_data, tmp_path / "run", "--recipe", "isbi2012")
    assert result.exit_code != 0
    assert "3 classes, but recipe isbi2012 expects 2" in result.output
    assert not (tmp_path / "run").exists()
