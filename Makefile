# Fresh machine: `make demo` runs the whole chain on generated data; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision first: pip takes these exact builds from local disk on the dev/CI machines.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test test-fast clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[serve,dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/gsam demo --out demo_out

# Every tier: an empty marker expression overrides the fast-tier default in pyproject.toml.
test: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m ""

# The fast tier (a bare pytest): unit and CLI tests on tiny models, no server, crash or full-size tests.
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -q

clean:
	rm -rf demo_out .pytest_cache
