# Every target sets up its own environment in $(VENV) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch: the CPU build where the machine has no CUDA GPU, the default (CUDA) build where it has one; macOS
# wheels on PyPI are CPU/MPS builds already. Override TORCH_CPU to test another version (TORCH_CPU_INDEX= takes it
# from PyPI alone). NUMPY_SPEC, if set, is installed first (e.g. "numpy<2").
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_GPU ?= torch
NUMPY_SPEC ?=
REPORT_DIR ?= reports
PROFILE ?= full
PYTEST_ARGS ?=

MAX_EXAMPLES ?= 10000
DEVICE ?= cuda
.PHONY: test parity device lint bench fuzz lessons examples leg install-check clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if [ -n '$(NUMPY_SPEC)' ]; then $(PIP) install '$(NUMPY_SPEC)'; fi
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed in $(VENV)"; \
	elif [ "$$(uname -s)" = Darwin ] || nvidia-smi -L >/dev/null 2>&1; then \
	  $(PIP) install "$(TORCH_GPU)"; \
	else \
	  $(PIP) install $(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX)) "$(TORCH_CPU)"; \
	fi
	$(PIP) install -e ".[test]"
	touch $@

$(VENV)/.lint: $(VENV)/.ready
	$(PIP) install -e ".[lint]"
	touch $@

$(VENV)/.examples: $(VENV)/.ready
	$(PIP) install -e ".[examples]"
	touch $@

# The pull-request gate: the oracle's own checks, error parity, the harness's meta-tests, the quick grid.
test: $(VENV)/.ready
	$(PY) -m pytest -n auto --profile quick --report-dir=$(REPORT_DIR) $(PYTEST_ARGS)

# The parity suite on every available device; the report lands in $(REPORT_DIR)/runs/<run-id>/ ($(REPORT_DIR)/latest).
parity: $(VENV)/.ready
	$(PY) -m pytest parity_tests/test_parity.py -n auto --profile $(PROFILE) --report-dir=$(REPORT_DIR) $(PYTEST_ARGS)

# The whole check of one device (scripts/device_run.sh): the full profile there (parity, the cross-device stages
# against cpu, determinism, invalid inputs), the gpu profile, torch's throughput; under $(REPORT_DIR)/device-$(DEVICE).
device: $(VENV)/.ready
	PYTHON=$(PY) scripts/device_run.sh $(DEVICE) $(REPORT_DIR)/device-$(DEVICE)

# One leg of CI's torch matrix (.github/workflows/ci.yml), the gate in a venv of its own, e.g.
#   make leg LEG_TORCH=2.4.1 LEG_PYTHON=python3.10 NUMPY_SPEC="numpy<2"
# with ATEN_CPU_CAPABILITY=avx2 in the environment for the CPU kernels of GitHub's runners. torch comes as the CPU
# build (torch==<version>+cpu); where download.pytorch.org is out of reach, LEG_TORCH_SPEC=torch==<version>
# TORCH_CPU_INDEX= takes PyPI's (and a pip config that caps torch needs PIP_CONFIG_FILE=/dev/null).
LEG_TORCH ?= 2.4.1
LEG_PYTHON ?= python3.10
LEG_TORCH_SPEC ?= torch==$(LEG_TORCH)+cpu
leg:
	$(MAKE) test VENV=.venv-torch$(LEG_TORCH) PYTHON=$(LEG_PYTHON) TORCH_CPU="$(LEG_TORCH_SPEC)" \
	  TORCH_GPU="torch==$(LEG_TORCH)" REPORT_DIR=$(REPORT_DIR)/torch-$(LEG_TORCH)

# The suite as a user gets it: the wheel built from this checkout, in a fresh venv (a temporary folder), run from a
# project of the user's own that has its own module named reference (scripts/install_check.sh).
install-check:
	PYTHON=$(PYTHON) TORCH_SPEC="$(TORCH_CPU)" TORCH_INDEX="$(TORCH_CPU_INDEX)" scripts/install_check.sh

lint: $(VENV)/.lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --min-severity medium .github/workflows

# Property-based search of the whole option space (Hypothesis); failures are shrunk, recorded and replayable.
fuzz: $(VENV)/.ready
	$(PY) -m pytest parity_tests/test_fuzz.py -n auto --profile fuzz --max-examples $(MAX_EXAMPLES) --report-dir=$(REPORT_DIR) $(PYTEST_ARGS)

# Speed and memory of the reference against torch (pytest-benchmark); not part of make test. The table lands in
# $(REPORT_DIR)/bench/bench.md (its own report dir, so that the parity report is left alone), the JSON for
# --benchmark-compare in .benchmarks/.
bench: $(VENV)/.ready
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-autosave --report-dir=$(REPORT_DIR)/bench $(PYTEST_ARGS)

# The suite against real third-party libraries through the adapters in examples/ (docs/third-party.md), each
# report under $(REPORT_DIR)/examples-<name>. Heavy optional dependencies, so not part of make test; tinygrad's
# CPU device compiles its kernels with clang, which must be on PATH. The run fails while the differences that
# docs/third-party.md lists stand.
EXAMPLES ?= optax tinygrad
examples: $(VENV)/.examples
	@status=0; for name in $(EXAMPLES); do \
	  $(PY) -m pytest parity_tests -n auto \
	    --impl examples.$${name}_losses --report-dir=$(REPORT_DIR)/examples-$$name $(PYTEST_ARGS) || status=1; \
	done; exit $$status

# The course material as runnable lessons: CSVs, plots and a summary under $(REPORT_DIR)/lessons.
lessons: $(VENV)/.ready
	$(PIP) install -q -e ".[lessons]"
	$(PY) -m lessons --out $(REPORT_DIR)/lessons

clean:
	rm -rf $(REPORT_DIR) .pytest_cache .hypothesis .benchmarks dist build .venv-torch*
