"""`gsam deploy`: one call from a training run to a folder a serving host can take as it is.

    OUT/onnx/model.<precision>.onnx   verified ONNX variants (fp32 through the export gates; the
                                      others through gsam.export.precision's gates)
    OUT/triton_models/                a Triton repository built from the fp32 variant
    OUT/profiles.txt                  TensorRT shape profiles suggested from the dataset's sizes
    OUT/trtexec.sh                    the trtexec lines to build the engines on the GPU host
    OUT/bench/                        (with bench) CPU latency on the run's own image sizes
    OUT/manifest.json                 every artifact with its sha256, size and lineage

The folder is built beside OUT and renamed into place at the end (gsam.io.staged_folder), so a
failed deploy leaves nothing half-written at OUT. Library first: the CLI and other callers use
`deploy()`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gsam.errors import GSAMError
from gsam.io import sha256_file, staged_folder, write_text_atomic
from gsam.model.run import RunDir
from gsam.precisions import onnx_precision

if TYPE_CHECKING:
    from gsam.deploy.k8s import K8sOptions
    from gsam.export.gate import GateThresholds
    from gsam.export.profiles import ShapeProfile

MANIFEST_NAME = "manifest.json"
PROFILE_BUCKETS = 3


@dataclass(frozen=True)
class Variants:
    """The ONNX precisions to write (fp32 first) and what each reduced one's gate needs."""

    precisions: list[str]
    thresholds: GateThresholds | None = None


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
    """'fp32,int8' -> ['fp32', 'int8']: the precision table's ONNX precisions, fp32 first (every variant's reference)."""
    wanted = [onnx_precision(p, "--precisions").name for p in text.split(",") if p.strip()]
    return ["fp32"] + [p for p in dict.fromkeys(wanted) if p != "fp32"]


def suggested_profiles(run: Path, min_size: int) -> list[ShapeProfile]:
    """Profiles from the size histogram of the dataset the run trained on."""
    from gsam.export.profiles import sizes_from_dataset, suggest_profiles

    root = RunDir(run).data_folder()
    if root is None:
        raise GSAMError(f"{run}: choosing profiles needs the run's dataset (config.yaml field 'train.data'); give "
                        "--profile min=1x3x256x256,opt=1x3x512x512,max=1x3x1024x1024 (repeatable) instead")
    return suggest_profiles(sizes_from_dataset(root), buckets=PROFILE_BUCKETS, min_size=min_size)


def trtexec_lines(variants: dict[str, Path], profiles: list[ShapeProfile], folder: Path) -> list[str]:
    """One strongly typed trtexec line per ONNX variant, paths relative to the folder: the engine
    computes in the variant's precision (fp16 engines come from the fp16 ONNX, int8 ones from the
    QDQ ONNX), so no precision flags are needed and the line works on TensorRT 10 and 11."""
    from gsam.export.tensorrt import BuildSettings, trtexec_command

    return [trtexec_command(onnx.relative_to(folder), f"engines/model.{precision}.plan", BuildSettings(profiles))
            for precision, onnx in variants.items()]


def _bench(onnx: Path, profiles: list[ShapeProfile], out: Path, log: Callable[[str], None]) -> None:
    from gsam.bench.harness import BenchPlan
    from gsam.bench.runner import BenchRequest, run_bench

    sizes = list(dict.fromkeys((p.opt[2], p.opt[3]) for p in profiles))
    request = BenchRequest(["onnxruntime", "triton-grpc"], onnx, out, BenchPlan(sizes, warmup=1, iters=3),
                           onnx_path=str(onnx))
    table = run_bench(request, log=log)
    write_text_atomic(out / "report.md", "# CPU backends on the run's own image sizes\n\n```\n" + table + "\n```\n\n"
                      "![latency](latency_vs_megapixels.png)\n![throughput](throughput_vs_concurrency.png)\n")
    for leftover in ("triton_models", "triton.log", "model.onnx"):
        target = out / leftover
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def _artifacts(folder: Path) -> list[Artifact]:
    from gsam.export.metadata import read_onnx_facts

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


def deploy(run: str | Path, out: str | Path, *, precisions: list[str] | None = None,
           profiles: list[ShapeProfile] | None = None, bench: bool = False, k8s: K8sOptions | None = None,
           thresholds: GateThresholds | None = None, onnx: str | Path | None = None,
           log: Callable[[str], None] = print) -> DeployManifest:
    """Build the deploy folder at `out` (which must not exist or be empty) from a run directory.

    `onnx`: the run's verified fp32 export to use instead of exporting again (checked by its lineage).
    `profiles` None: suggested from the run's dataset. With `k8s`, Kubernetes and KServe manifests for
    the repository are validated and written to OUT/k8s and OUT/kserve, and listed in the manifest.
    `thresholds`: what each fp16/int8 variant's gate needs (None: each precision's default).
    """
    run, out = Path(run), Path(out)
    if not run.is_dir():
        raise GSAMError(f"{run}: no such run directory")
    try:
        with staged_folder(out) as stage:
            variants, chosen = _write_models(run, stage, Variants(precisions or ["fp32"], thresholds), profiles,
                                             onnx=onnx, log=log)
            _write_serving(stage, out, variants, chosen, k8s=k8s, log=log)
            if bench:
                log("benchmarking the CPU backends on the run's image sizes...")
                _bench(variants["fp32"], chosen, stage / "bench", log)
            manifest = DeployManifest(str(run), list(variants), [p.flag() for p in chosen], _artifacts(stage))
            write_text_atomic(stage / MANIFEST_NAME, manifest.to_json())
    except FileExistsError as exc:
        raise GSAMError(str(exc)) from None
    return manifest


def _write_models(run: Path, stage: Path, wanted: Variants, profiles: list[ShapeProfile] | None, *,
                  onnx: str | Path | None, log: Callable[[str], None]) -> tuple[dict[str, Path], list[ShapeProfile]]:
    """OUT/onnx/: the verified fp32 export (made now, or the given one) and its gated variants; the profiles,
    chosen or suggested."""
    from gsam.export.gate_data import load_gate_images, run_data_folder
    from gsam.export.metadata import read_onnx_facts
    from gsam.export.onnx import export_checkpoint
    from gsam.export.variants import make_variant
    from gsam.runtime.backends import gate_runners

    (stage / "onnx").mkdir()
    fp32 = stage / "onnx" / "model.fp32.onnx"
    if onnx is not None:
        from gsam.export.reuse import check_fp32_export_of, copy_onnx

        check_fp32_export_of(run, onnx)
        log(f"using {onnx}, the fp32 export of {run}'s checkpoint")
        copy_onnx(Path(onnx), fp32)
    else:
        log(f"exporting {run} to fp32 ONNX (verified against PyTorch)...")
        export_checkpoint(run, fp32, log=log)
    min_size = read_onnx_facts(fp32).min_size
    chosen = [p.validate(min_size) for p in profiles] if profiles else suggested_profiles(run, min_size)
    variants = {"fp32": fp32}
    precisions = wanted.precisions
    if precisions[1:]:
        runners, data = gate_runners(), load_gate_images(run_data_folder(run))
        reference = runners.reference(run)
        for precision in precisions[1:]:
            log(f"building the {precision} variant (gated against the PyTorch model)...")
            variants[precision] = stage / "onnx" / f"model.{precision}.onnx"
            make_variant(fp32, variants[precision], precision, reference=reference, candidate=runners.candidate,
                         data=data, thresholds=wanted.thresholds, log=log)
        reference.close()
    return variants, chosen


def _write_serving(stage: Path, out: Path, variants: dict[str, Path], profiles: list[ShapeProfile], *,
                   k8s: K8sOptions | None, log: Callable[[str], None]) -> None:
    """profiles.txt, trtexec.sh, the Triton repository and, with `k8s`, the manifests."""
    from gsam.deploy.triton.repository import build_repository

    write_text_atomic(stage / "profiles.txt", "".join(f"{p.flag()}\n" for p in profiles))
    write_text_atomic(stage / "trtexec.sh", "#!/usr/bin/env bash\n# Run on the GPU host, from this folder.\n"
                      "set -euo pipefail\nmkdir -p engines\n" +
                      "".join(line + "\n" for line in trtexec_lines(variants, profiles, stage)))
    log("writing the Triton repository...")
    build_repository(variants["fp32"], stage / "triton_models")
    if k8s is not None:
        from gsam.deploy.k8s import write_manifests

        log("writing Kubernetes and KServe manifests (validated offline)...")
        for note in write_manifests(stage / "triton_models", stage, k8s, repo_label=out / "triton_models").notes:
            log(f"note: {note}")
