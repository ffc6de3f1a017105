"""`gsam eval` on any artifact and `gsam compare`: one IoU table whatever runs the model, a side-by-side
table with mask agreement and a plot, and a wrong kind of artifact answered in one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_model):
    """A run holding tiny_model and its ONNX export (torchscript: seconds)."""
    from gsam.export.onnx import export_checkpoint
    from gsam.model.checkpoint import save_gsam_checkpoint

    folder = tmp_path_factory.mktemp("eval_compare")
    (folder / "run").mkdir()
    save_gsam_checkpoint(folder / "run" / "best.pt", tiny_model, epoch=1)
    export_checkpoint(folder / "run", folder / "model.onnx", exporter="torchscript", log=lambda s: None)
    return folder / "run", folder / "model.onnx"


def _eval(model, data, *extra):
    result = CliRunner().invoke(cli, ["eval", str(model), "--data", str(data), *map(str, extra)])
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_of_an_onnx_file_prints_the_runs_table_and_writes_beside_it(artifacts, synth_data, tmp_path):
    run, onnx = artifacts
    from_run, from_onnx = _eval(run, synth_data, "--device", "cpu"), _eval(onnx, synth_data)
    def table(text):
        return [line for line in text.splitlines() if line.split()[:1] in (["background"], ["disc"], ["square"],
                                                                           ["mIoU"], ["pixel"])]

    assert table(from_run) == table(from_onnx) and len(table(from_run)) == 5
    report = json.loads(onnx.with_name("model.eval_val.json").read_text())
    assert report["backend"] == "onnxruntime" and report["images"] == 6 and len(report["iou"]) == 3
    assert json.loads((run / "eval_val.json").read_text())["miou"] == pytest.approx(report["miou"], abs=1e-3)


def test_compare_prints_side_by_side_agreement_latency_and_writes_a_plot(artifacts, synth_data, tmp_path):
    run, onnx = artifacts
    result = CliRunner().invoke(cli, ["compare", str(run), str(onnx), str(run), "--data", str(synth_data),
                                      "--out", str(tmp_path / "cmp"), "--latency", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "class " in line and "model.onnx" in line)  # after tqdm's \r
    assert header[header.index("class "):].split() == ["class", "run", "model.onnx", "run'"]
    agreement = next(line for line in lines if line.startswith("agreement")).split()
    assert agreement[1] == "(ref)" and agreement[3] == "100.0000%"  # the same run twice agrees everywhere
    assert float(agreement[2].rstrip("%")) > 99  # the ONNX export of it, all but a few boundary pixels
    assert any(line.startswith("ms/image") for line in lines)
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [m["name"] for m in report["models"]] == ["run", "model.onnx", "run'"]
    assert report["models"][2]["agreement"] == 1.0 and report["models"][0]["latency_ms"] > 0
    with Image.open(tmp_path / "cmp" / "compare.png") as plot:
        assert plot.format == "PNG" and plot.width > 300


def test_wrong_kinds_and_a_lone_model_fail_in_one_line(artifacts, tiny_onnx, synth_data, tmp_path):
    from gsam.deploy.triton.repository import build_repository

    repo = tmp_path / "triton_models"
    build_repository(tiny_onnx, repo, log=lambda s: None)
    cases = [(["eval", str(repo), "--data", str(synth_data)], "a Triton model repository, not a run directory"),
             (["eval", str(synth_data), "--data", str(synth_data)], "a dataset folder, not a run directory, .pt, .onnx, .plan or a Triton URL (host:port), which gsam eval takes"),
             (["compare", str(artifacts[0]), str(repo), "--data", str(synth_data), "--out", str(tmp_path / "c")],
              "which gsam compare takes"),
             (["compare", str(artifacts[0]), "--data", str(synth_data), "--out", str(tmp_path / "c")],
              "needs two or more")]
    for args, message in cases:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
