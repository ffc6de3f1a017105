"""`gsam tune`: the serving configuration that meets a p99 target on the user's mix of image sizes."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL

from .options import int_list, out_option, triton_model_option


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _rates(ctx, param, value):
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of requests/s") from None
    if any(r <= 0 for r in rates):
        raise click.BadParameter(f"{value!r}: rates must be > 0")
    return rates


def _axes(ctx, param, values):
    from gsam.tune.space import DEFAULT_GRID, parse_axis

    from ..errors import GSAMError

    try:
        given = dict(parse_axis(v) for v in values)
    except GSAMError as exc:
        raise click.BadParameter(str(exc).removeprefix("--axis ")) from None
    return given or dict(DEFAULT_GRID)


@click.command()
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--sizes-from", required=True, type=click.Path(), metavar="DATA_OR_FILE",
              help="The workload: a dataset or image folder (its files are sent as they are on disk), or a text/CSV "
                   "list of sizes, one HEIGHTxWIDTH[,COUNT] per line.")
@click.option("--p99-ms", type=click.FloatRange(min=0, min_open=True), default=250.0, show_default=True,
              help="The latency target: p99 of a request, in milliseconds, at the load measured.")
@out_option("TUNE_DIR: repository/ (the winner), report.md with its plots, measurements.jsonl (resume).",
            type=click.Path(file_okay=False))
@click.option("--objective", type=click.Choice(["throughput", "latency"]), default="throughput", show_default=True,
              help="throughput: the most requests/s within --p99-ms; latency: the lowest p99 at >= --min-rps.")
@click.option("--min-rps", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --objective latency: the throughput a configuration must reach.")
@click.option("--search", type=click.Choice(["quick", "brute"]), default="quick", show_default=True,
              help="quick: coordinate descent from the repository's own configuration; brute: the whole grid.")
@click.option("--budget-min", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Minutes the whole tune may take; no candidate is started that would not fit, and the report "
                   "lists them.")
@triton_model_option(IMAGE_MODEL)
@click.option("--concurrency", default="1,2,4,8", show_default=True, callback=int_list,
              help="Requests in flight at once (closed loop), one measurement per value.")
@click.option("--rate", "rates", default="", callback=_rates, metavar="R1,R2",
              help="Also open-loop loads: requests/s offered (Poisson arrivals), comma-separated [default: none].")
@click.option("--axis", "axes", multiple=True, callback=_axes, metavar="NAME=V1,V2",
              help="An axis of the grid, repeatable, replacing the default grid (instances=1,2 compute_model="
                   "gsam_python,in-process max_batch=1,4 queue_delay_us=0,2000,10000 threads=0,1). NAME: instances, "
                   "max_batch, preferred_batch, queue_delay_us, max_pixels, oversize_tile, overlap, max_tiled_pixels, "
                   "compute_model, threads.")
@click.option("--confirm", type=click.IntRange(0), default=2, show_default=True, metavar="ROUNDS",
              help="Measure the default and the winner again in this many interleaved rounds; the winner is kept "
                   "only if its median beats the default's (0: keep the search's winner).")
@click.option("--max-memory-mib", type=click.FloatRange(min=1), default=None,
              help="Discard a candidate whose server (all its processes) held more than this.")
@click.option("--port", type=click.IntRange(1, 65533), default=None,
              help="The loopback ports each candidate's gsam serve uses: PORT (HTTP), PORT+1 (gRPC), PORT+2 (metrics) "
                   "[default: free ones].")
@click.option("--sample", type=click.IntRange(1), default=64, show_default=True,
              help="Requests drawn from --sizes-from (all of a smaller source), replayed in a cycle.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which requests are drawn, in which order.")
@click.option("--in-place", is_flag=True, help="Also write the winner into REPO (otherwise REPO is never changed).")
def tune(repo, sizes_from, p99_ms, out, objective, min_rps, search, budget_min, triton_model, concurrency, rates, axes,
         confirm, max_memory_mib, port, sample, seed, in_place) -> None:
    """Find the serving configuration of REPO that meets --p99-ms on your own mix of image sizes.

    Each candidate (instances, batching, queue delay, request bound and oversize tiling, gsam_image's
    compute model, onnxruntime threads) is written into a copy of REPO as `gsam triton build` writes it,
    served by the real `gsam serve` on loopback, warmed up, and replayed closed-loop at each --concurrency
    until its p99 is stable. An interrupted tune resumes from TUNE_DIR/measurements.jsonl. Exit 1 when no
    candidate meets the target, naming the best p99 seen and its load.

    Example: gsam tune triton_models --sizes-from data/val --p99-ms 250 --out tune --budget-min 20

    \b
    Example (a declared grid, every cell measured):
      gsam tune triton_models --sizes-from sizes.csv --search brute --axis instances=1,2 --axis max_batch=1,4
      --out tune
    """
    from gsam.tune.measure import ServeSettings
    from gsam.tune.run import TuneRequest, run_tune
    from gsam.tune.search import Objective

    if triton_model not in (IMAGE_MODEL, TENSOR_MODEL):
        from ..errors import GSAMError

        raise GSAMError(f"--triton-model {triton_model}: gsam tune measures gsam_image or gsam_python")
    request = TuneRequest(Path(repo), Path(sizes_from), Path(out), Objective(objective, p99_ms, min_rps), search,
                          budget_min, tuple(concurrency), rates, axes, ServeSettings(triton_model, port=port),
                          max_memory_mib=max_memory_mib, in_place=in_place, confirm=confirm, sample=sample, seed=seed)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the candidate's server, keep what was measured
    result = run_tune(request, echo=click.echo)
    winner = result.scores.get(result.winner.key())
    figures = f": {winner.throughput:.2f} requests/s, p99 {winner.p99_ms:.0f} ms at {winner.load}" if winner else ""
    click.echo(f"winner: {result.winner.short(result.default)}{figures}")
    default = result.scores.get(result.default.key())
    if default is not None:
        click.echo(f"default: {default.throughput:.2f} requests/s, p99 {default.p99_ms:.0f} ms at {default.load}")
    if result.confirmed:
        medians = result.confirmed["median"]
        click.echo(f"measured again ({confirm} interleaved round(s)): winner {medians['winner']:.2f}, default "
                   f"{medians['default']:.2f} (median objective); kept: the {result.confirmed['kept']}")
    click.echo(f"wrote {Path(out) / 'repository'}, {Path(out) / 'report.md'}, {Path(out) / 'measurements.jsonl'}"
               + (f"; and the winner into {repo}" if in_place else ""))
