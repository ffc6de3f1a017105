"""`gsam deploy`: one call from a training run to a folder a serving host can take as it is.

    OUT/onnx/model.<precision>.onnx   verified ONNX variants (fp32 through the export gates; the
                                      others through gsam.export.precision's gates)
    OUT/triton_models/                a Triton repository built from the fp32 variant
    OUT/profiles.txt                  TensorRT shape profiles suggested from the dataset's sizes
    OUT/trtexec.sh                    the trtexec lines to build the engines on the GPU host
    OUT/bench/                        (with bench) CPU latency on the run's own image sizes
    OUT/manifest.json                 every artifact with its sha256, size and lineage

The folder is built beside OUT and renamed into place at the end, so a failed deploy leaves
nothing half-written at OUT. Library first: the CLI and other callers use `deploy()`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import GSAMError
from .facts import PRECISIONS
from .io import sha256_file, write_text_atomic

MANIFEST_NAME = "manifest.json"
PROFILE_BUCKETS = 3


@dataclass
class Artifact:
    path: str  # relative to the deploy folder
    sha256: str
    size_bytes: int
    kind: str
    lineage: dict[str, str] = field(default_factory=dict)


@dataclass
class DeployManifest:
    run: str
    precisions: list[str]
    profiles: list[str]
    artifacts: list[Artifact]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, folder: str | Path) -> "DeployManifest":
        path = Path(folder) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
            return cls(data["run"], data["precisions"], data["profiles"], [Artifact(**a) for a in data["artifacts"]])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GSAMError(f"{path}: not a gsam deploy manifest ({exc})") from None

    def verify(self, folder: str | Path) -> list[str]:
        """Artifacts whose file is missing or whose sha256 differs from the manifest's."""
        folder = Path(folder)
        return [a.path for a in self.artifacts
                if not (folder / a.path).is_file() or sha256_file(folder / a.path) != a.sha256]


def parse_precisions(text: str) -> list[str]:
    wanted = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [p for p in wanted if p not in PRECISIONS]
    if bad or not wanted:
        raise GSAMError(f"--precision {text!r}: expected a comma-separated list of {', '.join(PRECISIONS)}")
    return ["fp32"] + [p for p in dict.fromkeys(wanted) if p != "fp32"]  # fp32 is every variant's reference


def make_variant(fp32_onnx: Path, out: Path, precision: str, run: Path, log) -> Path:
    """A lower-precision variant of the fp32 file, kept only if it passes the export gate: the run's
    PyTorch model as the reference on its validation images, calibrated on its training images."""
    from .export.gate_data import load_gate_images, run_data_folder
    from .export.precision import make_variant as build_variant
    from .runtime.backends import load_backend

    gate = load_gate_images(run_data_folder(run))
    build_variant(fp32_onnx, out, precision, reference=load_backend("torch", run), images=gate.images,
                  labels=gate.labels, calib_images=gate.calib_images if precision == "int8" else None, log=log)
    return out


def dataset_images(run: Path) -> tuple[Path | None, list[Path]]:
    """The dataset the run trained on (from its config.yaml) and its image files."""
    import yaml

    from .data.imageio import IMAGE_SUFFIXES

    config = run / "config.yaml"
    if not config.is_file():
        return None, []
    data = (yaml.safe_load(config.read_text()) or {}).get("train", {}).get("data")
    if not data or not Path(data).is_dir():
        return None, []
    root = Path(data)
    return root, sorted(p for p in root.glob("*/images/*") if p.suffix.lower() in IMAGE_SUFFIXES)


def choose_profiles(spec: str, run: Path, min_size: int):
    """'auto': suggested from the dataset's size histogram; else profiles separated by ';'."""
    from .export.profiles import parse_profile, sizes_from_dataset, suggest_profiles

    if spec.strip().lower() != "auto":
        return [parse_profile(p, min_size) for p in spec.split(";") if p.strip()]
    root, _ = dataset_images(run)
    if root is None:
        raise GSAMError(f"{run}: --profiles auto needs the run's dataset (config.yaml train.data); give --profiles "
                        "'min=1x3x256x256,opt=1x3x512x512,max=1x3x1024x1024' instead")
    return suggest_profiles(sizes_from_dataset(root), buckets=PROFILE_BUCKETS, min_size=min_size)


def trtexec_lines(variants: dict[str, Path], profiles, folder: Path) -> list[str]:
    """One strongly typed trtexec line per ONNX variant, paths relative to the folder: the engine
    computes in the variant's precision (fp16 engines come from the fp16 ONNX, int8 ones from the
    QDQ ONNX), so no precision flags are needed and the line works on TensorRT 10 and 11."""
    from .export.tensorrt import BuildSettings, trtexec_command

    return [trtexec_command(onnx.relative_to(folder), f"engines/model.{precision}.plan", BuildSettings(profiles))
            for precision, onnx in variants.items()]


def _bench(onnx: Path, profiles, out: Path, log) -> None:
    from .runtime.bench.runner import run_bench

    sizes = list(dict.fromkeys((p.opt[2], p.opt[3]) for p in profiles))
    table = run_bench(["onnxruntime", "triton-grpc"], onnx, str(onnx), None, None, "gsam_python", sizes, 1, 1, 3,
                      None, [1], None, None, out, log=log)
    write_text_atomic(out / "report.md", "# CPU backends on the run's own image sizes\n\n```\n" + table + "\n```\n\n"
                      "![latency](latency_vs_megapixels.png)\n![throughput](throughput_vs_concurrency.png)\n")


def _artifacts(folder: Path) -> list[Artifact]:
    from .export.metadata import read_onnx_facts

    kinds = {".onnx": "onnx", ".pbtxt": "triton-config", ".py": "triton-code", ".sh": "script", ".txt": "text",
             ".md": "report", ".png": "plot", ".json": "report", ".csv": "report", ".data": "onnx-weights"}
    artifacts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        lineage = {}
        if path.suffix == ".onnx":
            lineage = dict(read_onnx_facts(path).lineage)
        artifacts.append(Artifact(str(path.relative_to(folder)), sha256_file(path), path.stat().st_size,
                                  kinds.get(path.suffix, "file"), lineage))
    return artifacts


def deploy(run: str | Path, out: str | Path, precisions: list[str] | None = None, profiles: str = "auto",
           bench: bool = False, log: Callable[[str], None] = print, k8s=None) -> DeployManifest:
    """Build the deploy folder at `out` (which must not exist or be empty) from a run directory.

    With `k8s` (a gsam.runtime.k8s.K8sOptions), Kubernetes and KServe manifests for the repository are
    validated and written to OUT/k8s and OUT/kserve, and listed in the manifest like every artifact.
    """
    from .export.onnx import export_checkpoint
    from .runtime.triton.repository import build_repository

    run, out = Path(run), Path(out)
    if not run.is_dir():
        raise GSAMError(f"{run}: no such run directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GSAMError(f"{out}: already exists and is not empty; choose a new --out")
    precisions = precisions or ["fp32"]
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (stage / "onnx").mkdir()
        fp32 = stage / "onnx" / "model.fp32.onnx"
        log(f"exporting {run} to fp32 ONNX (verified against PyTorch)...")
        export_checkpoint(run, fp32, log=log)
        from .export.metadata import read_onnx_facts

        min_size = read_onnx_facts(fp32).min_size
        chosen = choose_profiles(profiles, run, min_size)
        variants = {"fp32": fp32}
        for precision in precisions[1:]:
            log(f"building the {precision} variant (gated against the PyTorch model)...")
            variants[precision] = make_variant(fp32, stage / "onnx" / f"model.{precision}.onnx", precision, run, log)
        write_text_atomic(stage / "profiles.txt", "".join(f"{p.flag()}\n" for p in chosen))
        write_text_atomic(stage / "trtexec.sh", "#!/usr/bin/env bash\n# Run on the GPU host, from this folder.\n"
                          "set -euo pipefail\nmkdir -p engines\n" +
                          "".join(line + "\n" for line in trtexec_lines(variants, chosen, stage)))
        log("writing the Triton repository...")
        build_repository(fp32, stage / "triton_models")
        if k8s is not None:
            from .runtime.k8s import write_manifests

            log("writing Kubernetes and KServe manifests (validated offline)...")
            for note in write_manifests(stage / "triton_models", stage, k8s, repo_label=out / "triton_models").notes:
                log(f"note: {note}")
        if bench:
            log("benchmarking the CPU backends on the run's image sizes...")
            _bench(fp32, chosen, stage / "bench", log)
            for leftover in ("triton_models", "triton.log", "model.onnx"):
                target = stage / "bench" / leftover
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        manifest = DeployManifest(str(run), list(variants), [p.flag() for p in chosen], _artifacts(stage))
        write_text_atomic(stage / MANIFEST_NAME, manifest.to_json())
        if out.exists():
            out.rmdir()
        stage.rename(out)
        return manifest
    finally:
        shutil.rmtree(stage, ignore_errors=True)
