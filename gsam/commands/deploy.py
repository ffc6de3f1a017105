"""`gsam deploy`: a run directory -> a deployable folder (a thin wrapper around gsam.deploy)."""

from __future__ import annotations

import click

from ..precisions import ONNX_PRECISIONS
from .options import gate_options, out_option, profile_option, retired


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@out_option("The deploy folder to create (must not exist or be empty).", type=click.Path(file_okay=False),
            required=True)
@click.option("--precisions", default="fp32", show_default=True,
              help=f"ONNX variants to build and verify, comma-separated from {', '.join(ONNX_PRECISIONS)} (fp32 always).")
@gate_options
@profile_option("A TensorRT profile for trtexec.sh and the repository (repeatable) [default: suggested from the "
                "dataset's size histogram].")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
              help="The run's verified fp32 export (gsam export onnx RUN) to use instead of exporting again; its "
                   "lineage must name the run's checkpoint.")
@click.option("--bench", is_flag=True, help="Also benchmark the CPU backends on the run's own image sizes.")
@click.option("--k8s", is_flag=True, help="Also write Kubernetes (OUT/k8s) and KServe (OUT/kserve) manifests, "
                                           "validated offline; see `gsam triton k8s --help` for the details.")
@click.option("--replicas", type=int, default=1, show_default=True, help="With --k8s: replicas at start.")
@click.option("--gpus-per-replica", type=int, help="With --k8s: nvidia.com/gpu per pod [default: from the models].")
@click.option("--storage-uri", help="With --k8s: where pods read the repository (pvc://, s3://, gs://, as://).")
@click.option("--container-image", "image", help="With --k8s: the Triton container image REPOSITORY:YY.MM-py3.")
@retired("--image", "was renamed --container-image (an image elsewhere in gsam is a picture)")
@retired("--precision", "was renamed --precisions (a comma-separated list)")
@retired("--profiles", "was replaced by --profile, repeated once per profile (none: suggested from the dataset)")
def deploy(run, out, precisions, min_agreement, max_miou_drop, profiles, onnx_path, bench, k8s, replicas,
           gpus_per_replica, storage_uri, image) -> None:
    """One command from a run directory to a deployable folder: verified ONNX variants, TensorRT
    profiles and trtexec lines, a Triton repository, and a manifest of every artifact with its
    sha256 and lineage (optionally a short CPU benchmark report).

    Example: gsam deploy runs/demo --out deploy/demo --precisions fp32,int8 --bench --k8s
    Reusing an export: gsam deploy runs/demo --onnx model.onnx --out deploy/demo
    """
    from gsam.export.gate import GateThresholds
    from gsam.export.profiles import parse_profile

    from ..deploy.folder import MANIFEST_NAME, parse_precisions
    from ..deploy.folder import deploy as build

    options = None
    if k8s:
        from gsam.deploy.k8s import K8sOptions

        options = K8sOptions(replicas=replicas, gpus_per_replica=gpus_per_replica, storage_uri=storage_uri,
                             image=image)
    manifest = build(run, out, precisions=parse_precisions(precisions),
                     profiles=[parse_profile(p) for p in profiles] or None, bench=bench, k8s=options,
                     thresholds=GateThresholds(min_agreement, max_miou_drop), onnx=onnx_path, log=click.echo)
    click.echo(f"wrote {len(manifest.artifacts)} artifacts to {out} (listed with sha256 in {out}/{MANIFEST_NAME})")
