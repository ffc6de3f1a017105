"""The TensorRT that `pip install 'gsam[gpu]'` installs, the Triton release table and docs/gpu.md agree, and the
table says of every row whether it is confirmed and from where; `gsam triton k8s` prints that mark."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.tensorrt_stubs import SUPPORTED

from gsam.cli import cli
from gsam.deploy.container.releases import (
    BY_RELEASE,
    DEFAULT_RELEASE,
    GPU_EXTRA_TENSORRT,
    RELEASES,
    choose_image,
    release_for_tensorrt,
    release_mark,
)
from gsam.errors import GSAMError

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_extra_installs_the_tensorrt_of_the_default_triton_release():
    extra = re.search(r"^gpu = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M)
    assert extra and f'"tensorrt-cu13=={GPU_EXTRA_TENSORRT}"' in extra.group(1)
    assert release_for_tensorrt(GPU_EXTRA_TENSORRT) == DEFAULT_RELEASE
    assert BY_RELEASE[DEFAULT_RELEASE].tensorrt == GPU_EXTRA_TENSORRT
    # The code is type-checked against a release of the same major.minor.
    assert ".".join(GPU_EXTRA_TENSORRT.split(".")[:2]) in {".".join(v.split(".")[:2]) for v in SUPPORTED}


def test_the_table_has_every_monthly_release_through_26_x_each_marked_with_its_source():
    releases = [r.release for r in RELEASES]
    months = [f"{y}.{m:02d}" for y in (24, 25, 26) for m in range(1, 13)]
    assert releases == months[months.index("24.05"):months.index(releases[-1]) + 1] and releases[-1] >= "26.08"
    for row in RELEASES:
        assert row.source and isinstance(row.confirmed, bool), row
        assert not row.confirmed or row.tensorrt, f"{row.release}: confirmed without a TensorRT version"
        assert row.tensorrt is None or row.tensorrt.startswith("10.") or row.release >= "26.06"
    assert all(r.tensorrt is None or r.tensorrt.startswith("11.") for r in RELEASES if r.release >= "26.06")


def test_docs_gpu_md_lists_the_same_table_and_the_pinned_version():
    text = (REPO / "docs" / "gpu.md").read_text()
    assert f"tensorrt-cu13=={GPU_EXTRA_TENSORRT}" in text and f"tritonserver:{DEFAULT_RELEASE}-py3" in text
    rows = re.findall(r"^\| (\d\d\.\d\d) \| ([^|]*) \| ([^|]*) \| (confirmed|unconfirmed) \|", text, re.M)
    assert [(r, t.strip(), v.strip(), c) for r, t, v, c in rows] == [
        (r.release, r.triton or "?", r.tensorrt or "?", "confirmed" if r.confirmed else "unconfirmed")
        for r in RELEASES]


def test_marks_say_confirmed_or_not_and_how_to_check():
    mark = release_mark("25.10")
    assert "TensorRT 10.13.3.9" in mark and "UNCONFIRMED" in mark and "dpkg -l" in mark
    assert "unknown TensorRT" in release_mark("26.07") and "not in gsam's release table" in release_mark("23.01")


def test_an_image_of_a_release_with_unknown_tensorrt_is_accepted_one_outside_the_table_is_not():
    image = "nvcr.io/nvidia/tritonserver:26.07-py3"
    assert choose_image(image, "11.4.0.106") == (image, "26.07")
    with pytest.raises(GSAMError, match="release 23.01 is not in the TensorRT table"):
        choose_image("nvcr.io/nvidia/tritonserver:23.01-py3", "11.4.0.106")
    with pytest.raises(GSAMError, match="11.4.0.106, which no known Triton release ships.*unknown for .*26.06"):
        choose_image(None, "11.4.0.106")


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("kubernetes_validate", "kserve")),
                    reason="needs the k8s extra")
def test_triton_k8s_prints_the_tables_mark_for_its_release(tiny_onnx, tmp_path):
    from gsam.deploy.triton.repository import build_repository

    build_repository(tiny_onnx, tmp_path / "repo", log=lambda s: None)
    result = CliRunner().invoke(cli, ["triton", "k8s", "--repo", str(tmp_path / "repo"), "--out", str(tmp_path / "deploy")])
    assert result.exit_code == 0, result.output
    assert f"note: {release_mark(DEFAULT_RELEASE)}" in result.output.splitlines()
