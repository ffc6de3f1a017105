"""`gsam export ...`: ONNX with dynamic sizes, TensorRT engines, shape profiles."""

from __future__ import annotations

import click

from ..model.facts import INPUT_DTYPES
from ..precisions import ONNX_PRECISIONS, PRECISIONS
from .options import SIZE_LIST, gate_options, out_option, precision_option, profile_option, retired


@click.group()
def export() -> None:
    """Deployable models: one dynamic-size ONNX file, TensorRT engines with shape profiles."""


@export.command("onnx")
@click.argument("model", type=click.Path(exists=False))
@out_option("The .onnx file to write.", type=click.Path(dir_okay=False))
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="dynamo: compact opset-18 graph (slower to export); torchscript: opset 17, fast.")
@click.option("--opset", type=int, help="ONNX opset [default: 18 for dynamo, 17 for torchscript].")
@click.option("--verify-sizes", type=SIZE_LIST, help="Sizes to check against PyTorch, e.g. 37x211,640x480.")
@click.option("--tolerance", type=float, default=1e-3, show_default=True, help="Largest relative error accepted.")
@click.option("--simplify", is_flag=True, help="Run onnxslim, then verify again.")
@click.option("--input-dtype", type=click.Choice(list(INPUT_DTYPES)), default="float32", show_default=True,
              help="The image input's type: uint8 casts inside the graph, so a request carries 1 byte per channel "
                   "instead of 4 (TensorRT takes UINT8 as a network input).")
@precision_option("; ".join(f"{name}: {PRECISIONS[name].onnx}" for name in ONNX_PRECISIONS)
                  + ". I/O stays fp32/int32.")
@click.option("--calib-images", type=click.IntRange(1), default=32, show_default=True,
              help="int8: number of training images to calibrate on.")
@click.option("--int8-scheme", type=click.Choice(["auto", "tensorrt", "cpu"]), default="auto", show_default=True,
              help="int8 activations: tensorrt = signed and symmetric (the only one TensorRT builds); cpu = unsigned "
                   "with a zero point (onnxruntime only; 2x faster than fp32 on a CPU with VNNI, BENCHMARKS.md); "
                   "auto = the one measured faster in onnxruntime on this CPU (tensorrt unless cpu wins by 5%), "
                   "recorded in the file. For an engine pass tensorrt.")
@click.option("--calib-data", type=click.Path(file_okay=False),
              help="Dataset folder (train/ and val/) for calibration and the gate [default: the run's training data].")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
              help="fp16/int8: the run's verified fp32 export (gsam export onnx RUN) to convert instead of exporting "
                   "again; its lineage must name the run's checkpoint.")
@gate_options
def export_onnx_command(model, out, exporter, opset, verify_sizes, tolerance, simplify, input_dtype, precision,
                        calib_images, int8_scheme, calib_data, onnx_path, min_agreement, max_miou_drop) -> None:
    """Export MODEL (a run directory or gsam checkpoint) to ONNX with dynamic batch, height and width.

    The file is written only after onnxruntime matches PyTorch at sizes the trace never
    saw (non-square, odd, larger, batch 2); otherwise the command fails and writes nothing.

    With --precision fp16 or int8 the verified fp32 export is converted, then gated on the
    run's validation images at native size (and resized to unseen sizes) against the
    PyTorch model: it is written only if the masks agree and the val mIoU did not drop.

    Example: gsam export onnx runs/demo --out model.onnx --verify-sizes 37x211,640x480

    Example: gsam export onnx runs/demo --out model.int8.onnx --precision int8 --calib-images 64

    Example (CPU serving only): gsam export onnx runs/demo --out model.int8cpu.onnx --precision int8 --int8-scheme cpu

    Example (1 byte per channel on the wire): gsam export onnx runs/demo --out model.u8.onnx --input-dtype uint8

    A verified fp32 file is converted without exporting again: with the run (gated against its PyTorch model)
    or alone (gated against the fp32 file; --calib-data names the images):

    Example: gsam export onnx runs/demo --onnx model.onnx --out model.fp16.onnx --precision fp16

    Example: gsam export onnx model.onnx --out model.int8.onnx --precision int8 --calib-data demo_data
    """
    from gsam.export.onnx import export_checkpoint

    options = dict(exporter=exporter, opset=opset, verify_sizes=verify_sizes, tolerance=tolerance, simplify=simplify,
                   input_dtype=input_dtype)
    if precision == "int8":
        from gsam.export.int8_choice import choose_int8_scheme

        int8_scheme, why = choose_int8_scheme(int8_scheme)
        click.echo(f"int8 scheme: {int8_scheme} ({why})")
    if _from_onnx_file(model, onnx_path, precision):
        _variant_of_file(model, out, precision, onnx_path=onnx_path, calib_data=calib_data, calib_images=calib_images,
                         thresholds=(min_agreement, max_miou_drop), int8_scheme=int8_scheme)
        return
    if precision == "fp32":
        report = export_checkpoint(model, out, log=click.echo, **options)
    else:
        from gsam.export.gate import GateThresholds
        from gsam.export.variants import export_checkpoint_variant
        from gsam.runtime.backends import gate_runners

        thresholds = GateThresholds(min_agreement, max_miou_drop)
        report, gate = export_checkpoint_variant(model, out, precision, runners=gate_runners(), calib_data=calib_data,
                                                 calib_count=calib_images, thresholds=thresholds, log=click.echo,
                                                 int8_scheme=int8_scheme, **options)
    click.echo(report.table())
    if precision != "fp32":
        click.echo(gate.table())
        kind = f"int8, {int8_scheme} scheme" if precision == "int8" else precision
        click.echo(f"wrote {gate.path} ({kind}, {gate.size_bytes / 1e6:.1f} MB; fp32 was "
                   f"{report.size_bytes / 1e6:.1f} MB); input image {input_dtype} [batch, 3, height, width]")
        return
    click.echo(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB, {report.nodes} nodes, opset {report.opset}, "
               f"exported in {report.seconds:.1f} s); input image {input_dtype} [batch, 3, height, width]")


def _from_onnx_file(model: str, onnx_path: str | None, precision: str) -> bool:
    """Whether the source is an existing fp32 export; one that is not for a variant is refused, naming its uses."""
    from ..errors import GSAMError

    from_file = model.endswith(".onnx") or onnx_path is not None
    if precision == "fp32" and from_file:
        raise GSAMError(f"{onnx_path or model}: already a gsam ONNX export; --precision fp16 or int8 converts it, "
                        f"gsam export tensorrt builds an engine from it, gsam triton build serves it")
    return from_file


def _variant_of_file(model: str, out: str, precision: str, *, onnx_path: str | None, calib_data: str | None,
                     calib_images: int, thresholds: tuple[float, float], int8_scheme: str) -> None:
    """The fp16/int8 variant of an existing fp32 export (with its run, or alone)."""
    from gsam.export.gate import GateThresholds
    from gsam.export.variants import variant_of_fp32_file
    from gsam.runtime.backends import gate_runners

    source, run = (onnx_path, model) if onnx_path else (model, None)
    gate = variant_of_fp32_file(source, out, precision, runners=gate_runners(), run=run, calib_data=calib_data,
                                calib_count=calib_images, thresholds=GateThresholds(*thresholds), log=click.echo,
                                int8_scheme=int8_scheme)
    click.echo(gate.table())
    kind = f"int8, {int8_scheme} scheme" if precision == "int8" else precision
    click.echo(f"wrote {gate.path} ({kind}, {gate.size_bytes / 1e6:.1f} MB), from {source} without exporting again")


@export.command("tensorrt")
@click.argument("onnx_path", type=click.Path(dir_okay=False))
@out_option("Engine file (.plan); a .plan.json sidecar is written beside it.", type=click.Path(dir_okay=False))
@profile_option("Optimization profile; repeat for several (narrow profiles are faster than one wide one).")
@precision_option("fp16 from an fp32 ONNX: convert to fp16 with fp32 islands (checked against fp32 on the CPU), "
                  "then build [default: the ONNX file's own precision; an fp16 or int8 ONNX builds as it is].",
                  default=None)
@click.option("--converted", type=click.Path(dir_okay=False),
              help="Where --precision fp16 writes the converted ONNX [default: OUT with .fp16.onnx].")
@click.option("--workspace", type=float, default=4.0, show_default=True, help="Builder workspace in GiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Reuse and update this timing cache file.")
@click.option("--tf32", is_flag=True, help="Let fp32 layers compute in TF32 (faster on Ampere and later, inputs "
              "rounded to 10-bit mantissas; recorded in the sidecar). Off: fp32 is fp32.")
@click.option("--print-trtexec", is_flag=True, help="Print the equivalent trtexec command and exit (needs no "
              "TensorRT; with --precision fp16 the converted ONNX is written first).")
@retired("--fp16", "was renamed --precision fp16", is_flag=True)
@retired("--bf16", "was removed: no gate can check a bf16 ONNX file on a CPU; export fp16 (or use --amp bf16 "
         "with the torch backend)", is_flag=True)
def export_tensorrt_command(onnx_path, out, profiles, precision, converted, workspace, timing_cache, tf32,
                            print_trtexec) -> None:
    """Build a strongly typed TensorRT (10 or 11) engine from a gsam ONNX file with one or more shape profiles.

    The engine computes in the ONNX's precision: build an fp16 or int8 export as it is, or
    pass --precision fp16 with an fp32 export to convert it first.

    \b
    Example: gsam export tensorrt model.onnx --out model.plan
      --profile min=1x3x128x128,opt=1x3x512x512,max=1x3x1024x1024
      --profile min=1x3x1024x1024,opt=1x3x1536x1536,max=1x3x2048x2048 --precision fp16

    Example: gsam export tensorrt model.fp16.onnx --out model.plan --profile ... --print-trtexec
    """
    from pathlib import Path

    from gsam.export.metadata import read_onnx_facts
    from gsam.export.profiles import parse_profile
    from gsam.export.tensorrt import (
        BuildSettings,
        build_engine,
        check_engine_source,
        convert_for_engine,
        plan_precision,
        trtexec_command,
    )
    from gsam.runtime.backends import gate_runners

    facts = read_onnx_facts(onnx_path)
    check_engine_source(facts, onnx_path)
    parsed = [parse_profile(p, facts.min_size) for p in profiles]
    target = plan_precision(facts.precision, precision)
    settings = BuildSettings(parsed, target or facts.precision, workspace, timing_cache, tf32=tf32)
    converted = (converted or str(Path(out).with_suffix(f".{target}.onnx"))) if target else None
    if print_trtexec:
        if target:
            onnx_path = convert_for_engine(Path(onnx_path), Path(converted), target, parsed, runners=gate_runners(),
                                           log=click.echo)
        click.echo(trtexec_command(onnx_path, out, settings))
        return
    sidecar = build_engine(onnx_path, out, settings, runners=gate_runners(), log=click.echo, converted=converted)
    click.echo(f"wrote {out} and {out}.json ({sidecar.precision}, profiles: "
               f"{', '.join(p.name for p in sidecar.profiles)})")


@export.command("profiles")
@click.option("--data", type=click.Path(file_okay=False), help="Dataset folder whose image sizes to cover.")
@click.option("--sizes", type=SIZE_LIST, help="Expected sizes instead, e.g. 480x640,720x1280,1024x1024.")
@click.option("--buckets", type=click.IntRange(1, 8), default=3, show_default=True,
              help="The most profiles (fewer when another would not lower the objective).")
@click.option("--max-batch", type=click.IntRange(1), default=1, show_default=True,
              help="The largest batch each suggested profile takes.")
@click.option("--min-size", type=click.IntRange(1), default=32, show_default=True, help="The model's minimum side.")
def export_profiles_command(data, sizes, buckets, max_batch, min_size) -> None:
    """Suggest narrow TensorRT profiles that cover a dataset's (or a list of) image sizes.

    Prints --profile flags ready for `gsam export tensorrt` (stdout) and, on stderr, the
    objective they minimize: the activation memory of the profile each image runs in (TensorRT
    reserves memory for a profile's max shape, so the mean over the images of the max height x
    max width of the profile that contains it). The profiles never overlap, so the profile a
    request runs in, and each profile's warm-up, is never ambiguous; fewer than --buckets come
    back when another cut would not lower the objective.

    Example: gsam export profiles --sizes 480x640,640x480,1024x1024,1080x1920 --buckets 3
    """
    from gsam.export.profiles import sizes_from_dataset, suggest

    from ..errors import GSAMError

    if bool(data) == bool(sizes):
        raise GSAMError("give exactly one of --data and --sizes")
    found = sizes_from_dataset(data) if data else sizes
    suggestion = suggest(found, buckets=buckets, max_batch=max_batch, min_size=min_size)
    for profile in suggestion.profiles:
        click.echo(f"--profile {profile.flag()}")
    for line in suggestion.describe():
        click.echo(f"# {line}", err=True)
