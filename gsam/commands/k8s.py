"""`gsam triton k8s`: Kubernetes and KServe manifests for a model repository, validated offline."""

from __future__ import annotations

import click

from .options import out_option, repo_option, retired, triton_models_option


@click.command("k8s")
@click.argument("given", required=False, metavar="", callback=lambda ctx, param, value: _retired_repo(ctx, value))
@repo_option("The model repository `gsam triton build` wrote.")
@out_option("Folder for k8s/ and kserve/.", type=click.Path(file_okay=False))
@click.option("--replicas", type=int, default=1, show_default=True, help="Replicas at start (the HPA's minimum).")
@click.option("--max-replicas", type=int, help="The HPA's maximum.  [default: 4 x --replicas]")
@click.option("--gpus-per-replica", type=int,
              help="nvidia.com/gpu per pod.  [default: 1 when a loaded model runs on KIND_GPU, else 0]")
@triton_models_option("Models to load, comma-separated.  [default: gsam_trt if present, else gsam_python]")
@click.option("--container-image", "image", help="The container image the pods run, built from OUT/image/Dockerfile: "
                                                "REPOSITORY:YY.MM-py3[-...] "
                              "(the tag names the Triton release), optionally @sha256:DIGEST to pin the build, or "
                              "REPOSITORY@sha256:DIGEST.  [default: gsam-triton:YY.MM-py3-gsamVERSION, FROM the NGC "
                              "tritonserver release whose TensorRT built gsam_trt, else the newest known]")
@click.option("--storage-uri", help="Where pods read the repository: pvc://CLAIM[/PATH], s3://, gs:// or as://.  "
                                    "[default: a new PersistentVolumeClaim NAME-models]")
@click.option("--memory", help="Memory request and limit per pod, e.g. 4Gi.  [default: the server's and models' "
                               "fixed memory plus each model's largest legal request, at its measured cost per pixel]")
@click.option("--cpu", default="1", show_default=True, help="CPU request per pod.")
@click.option("--name", default="gsam", show_default=True, help="Name of the Deployment, Service, HPA and InferenceService.")
@click.option("--namespace", help="Namespace for every object.  [default: kubectl's current one]")
@click.option("--autoscale", type=click.Choice(["cpu", "queue"]), default="cpu", show_default=True,
              help="HPA on CPU utilization, or on Triton's queue time through the custom-metrics API.")
@click.option("--target-cpu", type=int, default=70, show_default=True, help="Target CPU utilization, percent.")
@click.option("--target-queue-us", type=int, default=200_000, show_default=True,
              help="Target per pod of nv_inference_queue_duration_us_per_second (microseconds queued per second).")
@click.option("--client-label", default="gsam.io/client=true", show_default=True, metavar="KEY=VALUE",
              help="The NetworkPolicy admits HTTP and gRPC only from pods with this label (same namespace).")
@click.option("--monitoring-namespace", default="monitoring", show_default=True,
              help="The NetworkPolicy admits the metrics port only from pods of this namespace.")
@retired("--triton-model", "was renamed --triton-models (a comma-separated list)")
@retired("--image", "was renamed --container-image (an image elsewhere in gsam is a picture)")
def k8s(given, repo, out, replicas, max_replicas, gpus_per_replica, triton_models, image, storage_uri, memory, cpu, name,
        namespace, autoscale, target_cpu, target_queue_us, client_label, monitoring_namespace) -> None:
    """Write Kubernetes manifests (k8s/), a KServe InferenceService (kserve/) and the image to build (image/) for --repo.

    Everything is read from the repository `gsam triton build` wrote: model names, instance
    kinds (GPUs are refused for CPU-only models), the engine's TensorRT version (which picks the
    Triton release the image is built FROM), and each model's request bound, tiling and batch
    (the memory limit). Pods run `gsam serve` as a non-root user on a read-only filesystem, probed
    by `gsam health`; a NetworkPolicy admits labelled clients and the monitoring namespace. Every
    manifest is checked against the Kubernetes schemas and KServe's SDK before it is written; no
    cluster is contacted.

    Example: gsam triton k8s --repo triton_models --out deploy --replicas 2 --autoscale queue
    """
    from gsam.deploy.container.releases import release_mark
    from gsam.deploy.k8s import K8sOptions, write_manifests
    from gsam.deploy.k8s.manifests import KUBERNETES_VERSION

    options = K8sOptions(
        replicas=replicas, max_replicas=max_replicas, gpus_per_replica=gpus_per_replica,
        models=triton_models or None,
        image=image, storage_uri=storage_uri, memory=memory, cpu=cpu, name=name, namespace=namespace,
        autoscale=autoscale, target_cpu_percent=target_cpu, target_queue_us_per_s=target_queue_us,
        client_label=client_label, monitoring_namespace=monitoring_namespace)
    result = write_manifests(repo, out, options)
    for path in result.files:
        click.echo(f"wrote {path}")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"note: {release_mark(result.plan.release)}")
    click.echo(f"validated offline against the Kubernetes {KUBERNETES_VERSION} schemas and KServe's SDK (no cluster "
               f"contacted); apply with: kubectl apply -f {out}/k8s")


def _retired_repo(ctx: click.Context, value: str | None) -> None:
    """The repository was once positional; every command now takes it as --repo."""
    if value is not None:
        raise click.UsageError(f"the repository is given as --repo now, as in every command: gsam triton k8s "
                               f"--repo {value} ...", ctx)
