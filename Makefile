# Two commands on a fresh machine: `make demo` and `make test`. Each creates or reuses .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.mmr1-installed
# The vision-stack tests (open_clip rewards, torchvision processors) run in a second environment:
# torchvision needs the torch release it was built against (a CUDA build on x86_64, a CPU one on aarch64).
VISION_VENV ?= .venv-vision
VPY := $(VISION_VENV)/bin/python
ifeq ($(shell uname -m),aarch64)
VISION_TORCH ?= 2.9.1
VISION_TORCHVISION ?= 0.24.1
else
VISION_TORCH ?= 2.14.1
VISION_TORCHVISION ?= 0.29.1
endif
VISION_STAMP := $(VISION_VENV)/.mmr1-installed
# Tested versions: every install of .venv / .venv-vision goes through these constraints, so a new
# upstream release cannot change the demo or turn CI red. `make test-latest` runs without them.
CONSTRAINTS := constraints/core.txt
VISION_CONSTRAINTS := $(wildcard constraints/vision-$(shell uname -m).txt)
PIP_VERSION ?= 26.3
LATEST_VENV ?= .venv-latest
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: install demo test test-core test-vision test-latest constraints bench clean

install: $(STAMP)

# torch first, pinned, so that no later requirement can pull a CUDA build.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "pip==$(PIP_VERSION)"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]" "torch==$(TORCH_VERSION)"
	touch $(STAMP)

$(VISION_STAMP): pyproject.toml $(VISION_CONSTRAINTS)
	test -x $(VPY) || python3 -m venv $(VISION_VENV)
	$(VPY) -m pip install --quiet "pip==$(PIP_VERSION)"
	$(VPY) -m pip install --quiet $(if $(VISION_CONSTRAINTS),-c $(VISION_CONSTRAINTS)) "torch==$(VISION_TORCH)" "torchvision==$(VISION_TORCHVISION)"
	$(VPY) -m pip install --quiet $(if $(VISION_CONSTRAINTS),-c $(VISION_CONSTRAINTS)) -e ".[dev,imagegen]" "torch==$(VISION_TORCH)" "torchvision==$(VISION_TORCHVISION)"
	touch $(VISION_STAMP)

demo: $(STAMP)
	$(VENV)/bin/mmr1 demo

# Everything: the vision-stack tests in .venv-vision, then the rest in .venv.
test: test-vision test-core

test-core: $(STAMP)
	$(PY) -m pytest -q -m "not vision_stack" tests

test-vision: $(VISION_STAMP)
	$(VPY) -m pytest -q -m vision_stack tests

# The core suite against the newest releases of every dependency (torch stays at the CPU build, so
# that pip does not fetch a CUDA one). Not part of `make test`: it tells early what an upgrade breaks.
test-latest:
	rm -rf $(LATEST_VENV) && python3 -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]" "torch==$(TORCH_VERSION)"
	$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE "^(transformers|accelerate|trl|peft|datasets|math-verify|pluggy)=="
	$(LATEST_VENV)/bin/python -m pytest -q -m "not vision_stack" tests

# Rewrite the constraints from the two tested environments (after upgrading them on purpose).
constraints: $(STAMP) $(VISION_STAMP)
	{ echo "# Tested versions for .venv (make demo / make test-core / .ci/run). Written by 'make constraints'; pyproject.toml keeps ranges."; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' | grep -v "^mmr1"; } > constraints/core.txt
	{ echo "# Tested versions for .venv-vision on $(shell uname -m) (make test-vision). Written by 'make constraints'."; \
	  $(VPY) -m pip freeze --exclude-editable | grep -v "^mmr1"; } > constraints/vision-$(shell uname -m).txt

bench: $(STAMP)
	$(PY) bench/vs_trl.py

clean:
	rm -rf $(VENV) $(VISION_VENV) $(LATEST_VENV) outputs
