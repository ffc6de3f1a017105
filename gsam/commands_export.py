"""`gsam export ...`: ONNX with dynamic sizes, TensorRT engines, shape profiles."""

from __future__ import annotations

import click

from .cli_types import SIZE_LIST


@click.group()
def export() -> None:
    """Deployable models: one dynamic-size ONNX file, TensorRT engines with shape profiles."""


@export.command("onnx")
@click.argument("source", type=click.Path(exists=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="dynamo: compact opset-18 graph (slower to export); torchscript: opset 17, fast.")
@click.option("--opset", type=int, help="ONNX opset [default: 18 for dynamo, 17 for torchscript].")
@click.option("--verify-sizes", type=SIZE_LIST, help="Sizes to check against PyTorch, e.g. 37x211,640x480.")
@click.option("--tolerance", type=float, default=1e-3, show_default=True, help="Largest relative error accepted.")
@click.option("--simplify", is_flag=True, help="Run onnxslim, then verify again.")
def export_onnx_command(source, out, exporter, opset, verify_sizes, tolerance, simplify) -> None:
    """Export a run directory or gsam checkpoint to ONNX with dynamic batch, height and width.

    The file is written only after onnxruntime matches PyTorch at sizes the trace never
    saw (non-square, odd, larger, batch 2); otherwise the command fails and writes nothing.

    Example: gsam export onnx runs/demo --out model.onnx --verify-sizes 37x211,640x480
    """
    from .export.onnx import export_onnx
    from .model.checkpoint import load_gsam_checkpoint
    from .train.run_dir import resolve_checkpoint

    model, payload = load_gsam_checkpoint(resolve_checkpoint(source))
    palette = payload.get("classes", {}).get("palette", ())
    report = export_onnx(model, out, exporter=exporter, opset=opset, verify_sizes=verify_sizes,
                         tolerance=tolerance, simplify=simplify, palette=palette, log=click.echo)
    click.echo(report.table())
    click.echo(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB, {report.nodes} nodes, opset {report.opset}, "
               f"exported in {report.seconds:.1f} s); input image [batch, 3, height, width], "
               f"height and width >= {model.config.min_size}")
