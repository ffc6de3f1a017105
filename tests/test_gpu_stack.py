"""gsam.gpu_stack: each layer of a GPU host's stack read from the machine's own files, and a fix for each
missing one. The machine here has no GPU; the GPU cases are read from files laid out as a GPU host has them
(sysfs, /proc) or from the installed-package metadata pip writes."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

from gsam import gpu_stack


def _pci(root, *devices):
    for i, (vendor, cls) in enumerate(devices):
        folder = root / f"0000:0{i}:00.0"
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "class").write_text(cls + "\n")
    return root


def test_nvidia_gpus_are_counted_on_the_pci_bus_driver_or_not(tmp_path):
    root = _pci(tmp_path / "pci", ("0x10de", "0x030200"), ("0x10de", "0x040300"), ("0x8086", "0x030000"),
                ("0x10de", "0x030000"))
    assert gpu_stack.nvidia_gpus_on_pci(root) == 2  # the NVIDIA audio function and the Intel GPU do not count
    assert gpu_stack.nvidia_gpus_on_pci(tmp_path / "absent") == 0


def test_the_driver_version_is_read_from_proc(tmp_path, monkeypatch):
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  "
                    "(dvs-builder@U16)  Sun Jul 27 06:54:38 UTC 2025\nGCC version:  gcc version 12.3.0\n")
    assert gpu_stack.driver_version(proc) == "580.65.06"
    monkeypatch.setattr(gpu_stack.shutil, "which", lambda name: None)
    assert gpu_stack.driver_version(tmp_path / "none") is None


@pytest.mark.parametrize("version, on_pci, cuda, status, words", [
    ("580.65.06", 1, 13, "ok", "R580"),
    ("575.51.03", 1, 13, "missing", "older than R580, which CUDA 13"),
    ("535.104.05", 1, 12, "ok", "R525"),
    (None, 2, 13, "missing", "2 NVIDIA GPU(s) on the PCI bus but no driver loaded: install NVIDIA driver R580"),
    (None, 0, 13, "skip", "no NVIDIA GPU in this machine"),
])
def test_the_driver_row_needs_the_branch_of_torchs_cuda(version, on_pci, cuda, status, words):
    name, got, detail = gpu_stack.driver_row(version, on_pci, cuda)
    assert (name, got) == ("NVIDIA driver", status) and words in detail


def _installed(monkeypatch, **versions):
    def version(name):
        if name in versions:
            return versions[name]
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gpu_stack.metadata, "version", version)


def test_onnxruntime_without_the_gpu_build_is_missing_with_the_extra_that_fixes_it(monkeypatch):
    _installed(monkeypatch, onnxruntime="1.23.2")
    name, status, detail = gpu_stack.onnxruntime_row(has_gpu=True)
    assert status == "missing" and "onnxruntime 1.23.2 is the CPU build" in detail
    assert "pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21'" in detail


def test_a_gpu_build_overwritten_by_the_cpu_build_is_named_as_such(monkeypatch):
    """Both distributions write the one onnxruntime folder: the CPU build's files leave no CUDA provider."""
    _installed(monkeypatch, onnxruntime="1.23.2", **{"onnxruntime-gpu": "1.23.2"})
    fake = types.SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    _, status, detail = gpu_stack.onnxruntime_row(has_gpu=True)
    assert status == "missing" and "pip uninstall -y onnxruntime onnxruntime-gpu" in detail and "files won" in detail


def test_a_cuda_provider_that_falls_back_to_the_cpu_is_missing_its_libraries(monkeypatch):
    _installed(monkeypatch, **{"onnxruntime-gpu": "1.23.2"})
    fake = types.SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    assert gpu_stack.onnxruntime_row(has_gpu=False)[1] == "skip"
    monkeypatch.setattr(gpu_stack, "_cuda_provider_starts", lambda: False)
    _, status, detail = gpu_stack.onnxruntime_row(has_gpu=True)
    assert status == "missing" and "fell back to the CPU" in detail and "[cuda,cudnn]" in detail
    monkeypatch.setattr(gpu_stack, "_cuda_provider_starts", lambda: True)
    assert gpu_stack.onnxruntime_row(has_gpu=True)[1] == "ok"


def test_the_cuda_provider_probe_runs_a_real_session():
    """Here (CPU onnxruntime) the probe's session cannot be on CUDA: False, not an error."""
    pytest.importorskip("onnxruntime")
    assert gpu_stack._cuda_provider_starts() is False


def test_tensorrt_missing_names_nvidias_index_and_a_version_other_than_the_pin_says_what_follows(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(gpu_stack.importlib.util, "find_spec", lambda name: None)
    _, status, detail = gpu_stack.tensorrt_row("10.13.3.9")
    assert status == "missing" and "--extra-index-url https://pypi.nvidia.com" in detail
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.3.9", __spec__=None))
    assert gpu_stack.tensorrt_row("10.13.3.9") == ("TensorRT", "ok", "TensorRT 10.13.3.9 (the version gsam[gpu] pins)")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.4.0.106", __spec__=None))
    assert "gsam[gpu] pins 10.13.3.9" in gpu_stack.tensorrt_row("10.13.3.9")[2]


def test_the_report_on_this_cpu_host_skips_every_gpu_layer_with_the_fix_for_a_gpu_host():
    rows = gpu_stack.gpu_stack_report()
    assert [r[0] for r in rows] == ["NVIDIA driver", "torch CUDA", "onnxruntime CUDA provider", "TensorRT"]
    assert all(status in ("ok", "missing", "skip") for _, status, _ in rows)
    if gpu_stack.driver_version() is None and gpu_stack.nvidia_gpus_on_pci() == 0:
        assert all(status != "missing" for _, status, _ in rows)
    table = gpu_stack.format_report(rows)
    assert table[0] == "| layer | status | detail |" and len(table) == 2 + len(rows)
