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
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: install demo test test-core test-vision bench clean

install: $(STAMP)

# torch first, pinned, so that no later requirement can pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]" "torch==$(TORCH_VERSION)"
	touch $(STAMP)

$(VISION_STAMP): pyproject.toml
	test -x $(VPY) || python3 -m venv $(VISION_VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "torch==$(VISION_TORCH)" "torchvision==$(VISION_TORCHVISION)"
	$(VPY) -m pip install --quiet -e ".[dev,imagegen]" "torch==$(VISION_TORCH)" "torchvision==$(VISION_TORCHVISION)"
	touch $(VISION_STAMP)

demo: $(STAMP)
	$(VENV)/bin/mmr1 demo

# Everything: the vision-stack tests in .venv-vision, then the rest in .venv.
test: test-vision test-core

test-core: $(STAMP)
	$(PY) -m pytest -q -m "not vision_stack" tests

test-vision: $(VISION_STAMP)
	$(VPY) -m pytest -q -m vision_stack tests

bench: $(STAMP)
	$(PY) bench/vs_trl.py

clean:
	rm -rf $(VENV) $(VISION_VENV) outputs
