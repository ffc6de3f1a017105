"""`gsam tune`: the workload, the space, candidates written as `gsam triton build` writes them, the search
strategies, the journal, bad input; and with a real `gsam serve` (server tier) whole tunes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli
from gsam.errors import GSAMError
from gsam.tune.journal import Journal
from gsam.tune.search import Objective, Score, brute, quick
from gsam.tune.space import DEFAULT_GRID, Candidate, grid, parse_axis, read_default
from gsam.tune.workload import bucket_names, load_workload, read_size_list

SIZES = "64x64,3\n96x128,2\n128x96,1\n"


@pytest.fixture(scope="module")
def repo(tiny_onnx):
    """A repository `gsam triton build` wrote, where tritonserver's user may read it."""
    from support.serving import readable_dir

    from gsam.deploy.triton.repository import build_repository

    folder = readable_dir("gsam-tune-")
    build_repository(tiny_onnx, folder / "triton_models", max_pixels=512 * 512, log=lambda s: None)
    return folder / "triton_models"


def test_a_size_list_gives_each_size_its_count_and_skips_a_header(tmp_path):
    path = tmp_path / "sizes.csv"
    path.write_text("height,width,count\n480,640,2\n# a comment\n1200x1000\n")
    assert read_size_list(path) == [(480, 640), (480, 640), (1200, 1000)]
    requests = load_workload(path)
    assert sorted((r.height, r.width) for r in requests) == [(480, 640), (480, 640), (1200, 1000)]
    with Image.open(__import__("io").BytesIO(requests[0].data)) as image:  # a real PNG of exactly that size
        assert (image.height, image.width) == (requests[0].height, requests[0].width)


def test_a_dataset_folder_sends_its_files_as_they_are_on_disk(tmp_path):
    images = tmp_path / "data" / "val" / "images"
    images.mkdir(parents=True)
    (tmp_path / "data" / "val" / "masks").mkdir()
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "data" / "val" / "masks" / "a.png")
    Image.fromarray(np.full((60, 70, 3), 90, np.uint8)).save(images / "a.jpg")
    requests = load_workload(tmp_path / "data")
    assert len(requests) == 1 and requests[0].data == (images / "a.jpg").read_bytes()
    assert (requests[0].height, requests[0].width, requests[0].bucket) == (60, 70, "60x70")


def test_many_distinct_sizes_are_bucketed_by_megapixels():
    names = bucket_names([(100 + i, 100) for i in range(10)] + [(1200, 1000)])
    assert names[(1200, 1000)] == "1-2 MP" and names[(100, 100)] == "0-0.1 MP"


@pytest.mark.parametrize("content, message", [
    ("", "no sizes in it"),
    ("480xabc\n", "is not HEIGHTxWIDTH"),
    ("0x10\n", "must be positive"),
])
def test_a_bad_size_list_is_one_line(tmp_path, repo, content, message):
    path = tmp_path / "sizes.txt"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["tune", str(repo), "--sizes-from", str(path), "--out", str(tmp_path / "t")])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_an_empty_folder_a_missing_source_and_a_foreign_repository_are_one_line(tmp_path, repo):
    (tmp_path / "empty").mkdir()
    sizes = tmp_path / "sizes.txt"
    sizes.write_text(SIZES)
    (tmp_path / "foreign" / "gsam_python").mkdir(parents=True)
    (tmp_path / "foreign" / "gsam_python" / "config.pbtxt").write_text('name: "gsam_python"\nbackend: "python"\n')
    (tmp_path / "foreign" / "gsam_image").mkdir()
    (tmp_path / "foreign" / "gsam_image" / "config.pbtxt").write_text('name: "gsam_image"\nbackend: "python"\n')
    cases = [([str(repo), "--sizes-from", str(tmp_path / "empty")], "no images"),
             ([str(repo), "--sizes-from", str(tmp_path / "none")], "no such file or folder"),
             ([str(tmp_path / "foreign"), "--sizes-from", str(sizes)], "not built by `gsam triton build`"),
             ([str(tmp_path / "nothing"), "--sizes-from", str(sizes)], "no such repository folder")]
    for args, message in cases:
        result = CliRunner().invoke(cli, ["tune", *args, "--out", str(tmp_path / "t")])
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_busy_port_and_sizes_below_the_models_minimum_are_one_line(tmp_path, repo):
    import socket

    sizes = tmp_path / "sizes.txt"
    sizes.write_text(SIZES)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["tune", str(repo), "--sizes-from", str(sizes), "--out", str(tmp_path / "t"),
                                          "--port", str(port)])
    assert result.exit_code == 1 and f"--port {port} is busy" in result.output
    assert len(result.output.strip().splitlines()) == 1
    sizes.write_text("16x64\n")
    result = CliRunner().invoke(cli, ["tune", str(repo), "--sizes-from", str(sizes), "--out", str(tmp_path / "t")])
    assert result.exit_code == 1 and "below the model's minimum side of 32" in result.output


def test_a_bad_axis_is_refused():
    with pytest.raises(GSAMError, match="NAME one of"):
        parse_axis("cores=1,2")
    with pytest.raises(GSAMError, match="int values"):
        parse_axis("instances=one")
    assert parse_axis("compute-model=in-process,gsam_python") == ("compute_model", ("in-process", "gsam_python"))
    result = CliRunner().invoke(cli, ["tune", "r", "--sizes-from", "s", "--out", "o", "--axis", "cores=1"])
    assert result.exit_code == 2 and "cores=1" in result.output


def test_the_grid_drops_what_cannot_matter_and_what_build_would_refuse():
    base = Candidate()
    cells = grid(DEFAULT_GRID, base, "gsam_image", 32)
    assert cells[0] == base and len(cells) == len(set(cells))
    in_process = [c for c in cells if c.compute_model == "in-process"]
    assert in_process and all(c.max_batch == 1 and c.queue_delay_us == 0 for c in in_process)
    assert len(in_process) == 2 * 2  # instances x threads: batching means nothing there
    tiles = grid({"oversize_tile": (0, 512, 4096)}, base, "gsam_image", 32)
    assert [c.oversize_tile for c in tiles] == [0, 512]  # 4096^2 is above max_pixels


def _scores(candidate: Candidate) -> Score:
    """A known landscape: more instances and threads=1 help, batching a little."""
    value = 10 * candidate.instances + (5 if candidate.threads == 1 else 0) + candidate.max_batch / 10
    return Score(value, 1, 100.0, value)


def _walk(strategy) -> list[Candidate]:
    seen, candidate = [], next(strategy)
    while True:
        seen.append(candidate)
        try:
            candidate = strategy.send(_scores(candidate))
        except StopIteration:
            return seen


def test_quick_finds_brutes_best_measuring_a_third_or_less_on_a_separable_landscape():
    axes = {"instances": (1, 2, 3), "threads": (0, 1, 2), "max_batch": (1, 4, 8)}
    all_cells = _walk(brute(axes, Candidate(), "gsam_python", 32))
    walked = _walk(quick(axes, Candidate(), "gsam_python", 32))
    best = max(all_cells, key=lambda c: _scores(c).value)
    assert walked[0] == Candidate() and best in walked
    assert len(walked) <= len(all_cells) / 3


def test_quick_decides_where_gsam_image_computes_before_the_axes_that_depend_on_it():
    """Given threads first, quick still walks compute_model first: threads and batching mean other things
    in-process than behind BLS, so tuning them for the wrong placement wastes the single pass."""
    axes = {"threads": (0, 1, 2), "compute_model": ("gsam_python", "in-process")}
    walked = _walk(quick(axes, Candidate(), "gsam_image", 32))
    assert [c.compute_model for c in walked[:2]] == ["gsam_python", "in-process"]
    assert all(c.threads == 0 for c in walked[:2]) and {c.threads for c in walked[2:]} == {1, 2}


def test_quick_gives_more_instances_their_share_of_the_cores(monkeypatch):
    """Two instances of one thread each on 2 cores, not two of onnxruntime's all-cores default: the
    oversubscribed cell is not what quick should judge the instances axis by (CPU A's tune benchmark)."""
    from gsam import machine

    monkeypatch.setattr(machine, "cpu_facts", lambda: type("Facts", (), {"cores": 2})())
    axes = {"instances": (1, 2, 3), "threads": (0, 1, 2)}
    walked = _walk(quick(axes, Candidate(), "gsam_python", 32))
    assert [(c.instances, c.threads) for c in walked[:3]] == [(1, 0), (2, 1), (3, 1)]


def test_the_objective_takes_the_most_throughput_within_the_slo():
    m = {"discarded": None, "levels": [
        {"concurrency": 1, "errors": 0, "p99_ms": 100.0, "throughput": 10.0},
        {"concurrency": 2, "errors": 0, "p99_ms": 200.0, "throughput": 15.0},
        {"concurrency": 4, "errors": 0, "p99_ms": 400.0, "throughput": 16.0}]}
    assert Objective("throughput", 250).score(m).concurrency == 2
    assert Objective("latency", 250, min_rps=12).score(m).p99_ms == 200.0
    assert Objective("throughput", 50).score(m) is None
    assert Objective("throughput", 250).score({**m, "discarded": "errors"}) is None


def test_the_journal_reuses_only_the_same_settings_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "measurements.jsonl"
    Journal(path, {"p99_ms": 250}).append({"key": "a", "levels": []})
    with path.open("a") as f:
        f.write('{"settings_key": "tor')  # killed while writing
    Journal(path, {"p99_ms": 250}).append({"key": "b", "levels": []})
    assert set(Journal(path, {"p99_ms": 250}).load()) == {"a", "b"}
    assert Journal(path, {"p99_ms": 100}).load() == {}


def test_a_candidate_is_written_by_triton_builds_own_function_and_reads_back(repo, tmp_path):
    from gsam.runtime.serving.model_config import read_model_config
    from gsam.tune.candidate import write_candidate

    default = read_default(repo)
    assert default == Candidate(max_pixels=512 * 512)
    wanted = Candidate(instances=2, max_batch=4, preferred_batch=2, queue_delay_us=500, max_pixels=512 * 512,
                       oversize_tile=256, overlap=64, compute_model="in-process", threads=1)
    written = write_candidate(repo, wanted, tmp_path / "cand")
    assert read_default(written) == wanted
    python = read_model_config(written / "gsam_python")
    assert python.instance_group[0].count == 2 and python.dynamic_batching.max_queue_delay_microseconds == 500
    assert python.parameters["intra_op_threads"].string_value == "1"
    original = read_model_config(repo / "gsam_python").parameters
    assert python.parameters["onnx_sha256"] == original["onnx_sha256"]
    assert python.parameters["onnx_file"] == original["onnx_file"]
    assert read_model_config(repo / "gsam_python").instance_group[0].count == 1  # the original is untouched


# --- with a real gsam serve: the tuner starts and stops it ---------------------------------------------------------

def _tune_command(repo: Path, sizes: Path, out: Path, *args: str) -> list[str]:
    from support.serving import serve_prefix

    prefix = serve_prefix()
    if prefix is None:
        pytest.skip("tritonserver's user cannot run this Python here")
    return [*prefix, sys.executable, "-m", "gsam", "tune", str(repo), "--sizes-from", str(sizes), "--out", str(out),
            "--concurrency", "1,2", *args]


@pytest.fixture
def sizes(tmp_path) -> Path:
    path = tmp_path / "sizes.txt"
    path.write_text(SIZES)
    return path


@pytest.mark.server
def test_a_tune_writes_a_repository_gsam_serve_loads_with_the_winners_configs(repo, sizes):
    from support.serving import readable_dir, serve

    from gsam.tune.client import Client
    from gsam.tune.workload import load_workload

    import shutil

    folder = readable_dir("gsam-tune-out-")
    out, own = folder / "tune", folder / "own"
    shutil.copytree(repo, own)
    command = _tune_command(own, sizes, out, "--search", "brute", "--axis", "instances=1,2",
                            "--p99-ms", "5000", "--budget-min", "4", "--in-place", "--confirm", "1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line)["measurement"] for line in (out / "measurements.jsonl").read_text().splitlines()]
    searched = [m for m in lines if "#confirm" not in m["key"]]
    assert len(searched) == 2 and all(not m["discarded"] and m["levels"] for m in lines)
    best = Candidate(**max(searched, key=lambda m: Objective("throughput", 5000).score(m).value)["candidate"])
    report = (out / "report.md").read_text()
    if best != read_default(repo):  # measured again once each, interleaved; the default kept unless beaten
        assert len(lines) == 4 and "## Measured again, interleaved" in report
        kept = best if "**The winner is kept**" in report else read_default(repo)
        assert f"kept: the {'winner' if kept == best else 'default'}" in done.stdout
    else:
        kept = best
    assert read_default(out / "repository") == kept == read_default(own)  # --in-place
    assert "winner:" in done.stdout and (out / "throughput_vs_p99.png").is_file()
    assert "64x64" in report and "128x96" in report and "## Every candidate" in report
    with serve(out / "repository", ["gsam_python", "gsam_image"]) as server:
        client = Client(server.http_port, "gsam_image", load_workload(sizes))
        connection = client.connect()
        assert client.send(connection, 0) is None
        connection.close()


@pytest.mark.server
def test_an_impossible_slo_exits_1_naming_the_best_p99_and_its_load(repo, sizes, tmp_path):
    command = _tune_command(repo, sizes, tmp_path / "tune", "--axis", "instances=1", "--p99-ms", "0.5",
                            "--confirm", "0")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: no configuration meets p99 <= 0.5 ms: the best p99 seen was ")
    assert "at concurrency 1" in error and "Traceback" not in done.stderr
    assert (tmp_path / "tune" / "report.md").is_file() and not (tmp_path / "tune" / "repository").exists()


@pytest.mark.server
def test_an_interrupted_tune_resumes_without_measuring_again(repo, sizes, tmp_path):
    out = tmp_path / "tune"
    command = _tune_command(repo, sizes, out, "--search", "brute", "--axis", "queue_delay_us=0,2000",
                            "--p99-ms", "5000", "--confirm", "0")
    journal = out / "measurements.jsonl"
    before = {p: p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}
    # SIGINT back to its default in the child: a pytest-xdist worker ignores it, a child inherits that, and
    # Python installs no KeyboardInterrupt handler for a signal it was started ignoring (a shell's Ctrl-C has it)
    tune = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while not (journal.is_file() and journal.read_text().count("\n") >= 1):
        assert tune.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(tune.pid, signal.SIGINT)  # Ctrl-C while the second candidate starts or runs
    tune.communicate(timeout=60)
    assert tune.returncode != 0 and journal.read_text().count("\n") == 1
    first = json.loads(journal.read_text())["measurement"]["key"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming: 1 candidate(s) already measured" in done.stdout
    keys = [json.loads(line)["measurement"]["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == 2 and keys[0] == first and keys[1] != first  # the first was not measured again
    assert "2 (1 measured in this invocation" in (out / "report.md").read_text()
    assert {p: p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()} == before  # no --in-place


class _SlowEndpoint:
    """A loopback HTTP endpoint answering every POST after `delay_s`: what the load generator measures
    against when no Triton is needed (the server tier runs it against gsam serve)."""

    def __init__(self, delay_s: float) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_closed_and_open_loops_measure_the_served_time_and_the_queue(tmp_path):
    from gsam.tune.client import Client
    from gsam.tune.load import StoppingRule, closed_loop, open_loop

    sizes = tmp_path / "sizes.txt"
    sizes.write_text(SIZES)
    endpoint = _SlowEndpoint(0.05)
    try:
        client = Client(endpoint.port, "gsam_image", load_workload(sizes))
        rule = StoppingRule(min_requests=20, window=5, max_seconds=10)
        closed = closed_loop(client, 2, rule, slo_ms=1000)
        assert closed.errors == 0 and closed.requests >= 20 and closed.p50_ms >= 50
        assert closed.requests % 6 == 0  # whole passes through the mix of six
        assert closed.throughput <= 2 / 0.05 * 1.05  # two in flight, 50 ms each
        assert set(closed.buckets) == {"64x64", "96x128", "128x96"}
        # offered 60/s to 2 connections that answer 40/s: the queue grows, and the latency counts from arrival
        opened = open_loop(client, 60.0, rule, slo_ms=150, connections=2)
        assert opened.rate == 60.0 and opened.concurrency == 0
        assert opened.p99_ms > 150 and opened.stop in ("over-slo", "stable", "time")
    finally:
        endpoint.close()


def test_request_bodies_use_the_binary_extension_for_both_models(tmp_path):
    from gsam.tune.client import _body

    sizes = tmp_path / "sizes.txt"
    sizes.write_text("40x60\n")
    request = load_workload(sizes)[0]
    body, length = _body(request, "gsam_image")
    header = json.loads(body[:length])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(request.data) + 4 == len(body) - length
    assert int.from_bytes(body[length:length + 4], "little") == len(request.data)
    body, length = _body(request, "gsam_python")
    header = json.loads(body[:length])
    assert header["inputs"][0]["shape"] == [1, 3, 40, 60] and header["inputs"][0]["datatype"] == "UINT8"
    assert len(body) - length == 3 * 40 * 60
