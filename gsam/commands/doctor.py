"""`gsam doctor`: this machine's capabilities and what gsam chooses on it, with the reasons."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for bug reports and scripts).")
def doctor(as_json: bool) -> None:
    """What this machine can run fast, and what gsam will choose on it (amp, int8 scheme, threads, backend).

    Reads the CPU's flags (AVX2, AVX-512, avx512_bf16, VNNI, AMX), torch's CPU capability,
    onnxruntime's providers, GPUs, TensorRT and tritonserver; choices that depend on speed are
    measured once per machine (a second or two) and cached. Run it first when something is slow,
    and paste its --json into bug reports.

    \b
    Example: gsam doctor
             gsam doctor --json > doctor.json
    """
    from ..doctor import format_report, machine_report

    report = machine_report()
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
