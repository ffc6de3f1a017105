"""A newcomer's first hour (issue 31): defaults that do not surprise and a --config that takes what gsam writes."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from gsam import __version__
from gsam.cli import cli
from gsam.train.config import TrainConfig


def test_train_without_a_model_or_weights_says_what_to_pass(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "--sam-checkpoint sam_vit_b_01ec64.pth" in result.output and "--model tiny" in result.output
    assert "https://dl.fbaipublicfiles.com/segment_anything/" in result.output
    assert not (tmp_path / "run").exists()


def test_print_config_writes_the_format_config_reads(tmp_path):
    printed = CliRunner().invoke(cli, ["train", "--data", "DATA", "--out", "RUN", "--model", "tiny", "--crop", "64",
                                       "--epochs", "3", "--print-config"])
    assert printed.exit_code == 0, printed.output
    settings = yaml.safe_load(printed.output)
    assert list(settings) == [f for f in TrainConfig.__dataclass_fields__]
    cfg = TrainConfig.from_dict(settings)
    assert (cfg.model, cfg.crop, cfg.epochs) == ("tiny", (64, 64), 3)
    (tmp_path / "my.yaml").write_text(printed.output)
    again = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "my.yaml"), "--lr", "0.5", "--print-config"])
    assert yaml.safe_load(again.output) == {**settings, "lr": 0.5}


def test_config_takes_a_runs_own_config_yaml(tmp_path):
    run_config = {"gsam_version": __version__, "model": {"name": "tiny"}, "classes": ["bg", "fg"],
                  "train": TrainConfig(data="DATA", out="runs/old", model="tiny", epochs=7).to_dict()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(run_config))
    result = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "config.yaml"), "--out", "runs/new",
                                      "--print-config"])
    assert result.exit_code == 0, result.output
    settings = yaml.safe_load(result.output)
    assert (settings["data"], settings["out"], settings["model"], settings["epochs"]) == ("DATA", "runs/new", "tiny", 7)
