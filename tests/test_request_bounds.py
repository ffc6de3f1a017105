"""The request-bound contract (gsam.pixels.bounds): one writer, one reader, one default. Changing the default
in that one place moves the repository builder, the Triton-side python model, the gateway's limits and the
Kubernetes plan together."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

import gsam.pixels.bounds as contract
from gsam.pixels.bounds import BoundsError, RequestBounds

NEW_DEFAULT = 300 * 300


def _triton_side_bounds(model_dir, monkeypatch):
    """Initialize the repository's own copy of model.py (as Triton's python backend would) and return its bounds."""
    from google.protobuf import json_format

    from gsam.runtime.serving.model_config import read_model_config

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    version = model_dir / "1"
    monkeypatch.syspath_prepend(str(version))
    for name in [m for m in sys.modules if m in ("model", "compute") or m.startswith("gsam_pixels")]:
        monkeypatch.delitem(sys.modules, name)
    import model  # the copy under version/, importing gsam_pixels beside it

    config = json_format.MessageToDict(read_model_config(model_dir), preserving_proto_field_name=True)
    triton = model.TritonPythonModel()
    triton.initialize({"model_config": json.dumps(config), "model_repository": str(model_dir), "model_version": "1",
                       "model_instance_kind": "CPU", "model_instance_device_id": "0"})
    return triton.bounds


def test_changing_the_one_default_moves_builder_triton_side_gateway_and_k8s_plan(tiny_onnx, tmp_path, monkeypatch):
    from gsam.deploy.k8s.plan import model_load
    from gsam.deploy.k8s.repository_facts import read_repository
    from gsam.deploy.triton.repository import build_repository
    from gsam.runtime.serving.limits import load_limits

    original = contract.DEFAULT_MAX_PIXELS
    monkeypatch.setattr(contract, "DEFAULT_MAX_PIXELS", NEW_DEFAULT)
    repo = tmp_path / "repo"
    build_repository(tiny_onnx, repo, log=lambda s: None)
    config = (repo / "gsam_python" / "config.pbtxt").read_text()
    assert re.search(rf'key: "max_pixels"\s*value \{{\s*string_value: "{NEW_DEFAULT}"', config)  # the builder
    assert _triton_side_bounds(repo / "gsam_python", monkeypatch).max_pixels == NEW_DEFAULT  # Triton's python model
    assert load_limits(repo, ["gsam_python"])["gsam_python"].max_pixels == NEW_DEFAULT  # the gateway
    assert model_load(read_repository(repo).models["gsam_python"], 0).max_pixels == NEW_DEFAULT  # the k8s plan
    # A config without the parameter falls back to the same one default, in every reader.
    for folder in ("gsam_python", "gsam_image"):
        path = repo / folder / "config.pbtxt"
        path.write_text(re.sub(r'parameters \{\s*key: "max_pixels"\s*value \{\s*string_value: "\d+"\s*\}\s*\}', "",
                               path.read_text()))
        assert "max_pixels" not in path.read_text()
    copied = repo / "gsam_python" / "1" / "gsam_pixels" / "bounds.py"  # Triton's side reads the same file's default
    assert copied.read_bytes() == Path(contract.__file__).read_bytes()
    assert _triton_side_bounds(repo / "gsam_python", monkeypatch).max_pixels == original  # the file's own, unpatched
    monkeypatch.setattr(contract, "DEFAULT_MAX_PIXELS", NEW_DEFAULT + 1)
    assert load_limits(repo, ["gsam_python"])["gsam_python"].max_pixels == NEW_DEFAULT + 1
    assert model_load(read_repository(repo).models["gsam_python"], 0).max_pixels == NEW_DEFAULT + 1


def test_the_contract_round_trips_and_refuses_bad_parameters():
    bounds = RequestBounds.build(512 * 512, tile=256, overlap=32, max_tiled_pixels=4096 * 4096, input_dtype="uint8")
    assert RequestBounds.read(bounds.parameters()) == bounds
    assert RequestBounds.read({"max_pixels": "0"}).max_pixels == 0  # unbounded, said explicitly
    assert RequestBounds.read({}, profile_pixels=123).max_pixels == 123  # an engine's profiles bound it
    assert RequestBounds.read({"tile": "64"}).max_tiled_pixels == contract.DEFAULT_MAX_TILED_PIXELS
    for params, message in [({"max_pixels": "lots"}, "'max_pixels' must be an integer"),
                            ({"tile": "-1"}, "'tile' must be >= 0"), ({"input_dtype": "fp16"}, "'input_dtype'")]:
        with pytest.raises(BoundsError, match=message):
            RequestBounds.read(params)
