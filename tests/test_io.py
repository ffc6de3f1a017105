"""gsam.io: artifacts get the mode the umask gives (a non-root container must read a copied repository),
and the atomic/staged writers keep their all-or-nothing behaviour."""

from __future__ import annotations

import os
import stat

import pytest

from gsam.io import atomic_path, current_umask, staged_file, staged_folder, write_text_atomic


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_every_writer_gives_the_umask_mode_not_mkstemps_0600(tmp_path, umask):
    write_text_atomic(tmp_path / "config.pbtxt", "name: 'x'")
    with atomic_path(tmp_path / "model.onnx") as tmp:
        tmp.write_bytes(b"onnx")
    with staged_file(tmp_path / "export.onnx") as tmp:
        tmp.write_bytes(b"onnx")
        (tmp.parent / "export.onnx.data").write_bytes(b"weights")
    with staged_folder(tmp_path / "deploy") as stage:
        (stage / "triton_models" / "gsam_python").mkdir(parents=True)
        (stage / "manifest.json").write_text("{}")
    for name in ("config.pbtxt", "model.onnx", "export.onnx", "export.onnx.data", "deploy/manifest.json"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    for name in ("deploy", "deploy/triton_models/gsam_python"):
        assert _mode(tmp_path / name) == 0o777 & ~umask, name


def test_a_failed_write_still_leaves_nothing(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.onnx") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("verification failed")
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "deploy") as stage:
        (stage / "half.txt").write_text("x")
        raise RuntimeError("gate failed")
    assert (tmp_path / "model.onnx").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
