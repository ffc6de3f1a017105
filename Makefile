# Fresh machine: `make demo` runs the whole chain on generated data; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision first: pip takes these exact builds from local disk on the dev/CI machines.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test test-fast gpu-check clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[serve,dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/gsam demo --out demo_out

# Every tier: an empty marker expression overrides the fast-tier default in pyproject.toml; the 15 slowest
# tests are printed at the end so every run shows where the time goes.
test: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m "" --durations=15

# The fast tier (a bare pytest): unit and CLI tests on tiny models, no server, crash or full-size tests.
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -q --durations=15

# On a machine with an NVIDIA GPU: the GPU-stack report, `pytest -m gpu`, TensorRT engines and onnxruntime's CUDA
# provider where present, training step and inference latency/memory, one markdown report ($OUT/gpu_check.md
# when OUT is set, else benchmarks/results/gpu_check.md) with a summary of what ran and what was skipped and why,
# under 8 minutes. Needs python3 with torch (CUDA), segment-anything and pytest (no git, no network); uses .venv
# when there is one. docs/gpu.md has the recipe.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py --out $${OUT:-benchmarks/results}/gpu_check.md

clean:
	rm -rf demo_out .pytest_cache
