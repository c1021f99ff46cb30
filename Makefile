# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: install run test llama-cpp bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: install
	$(BIN)/snakemake --cores $(CORES) results/report.html  # profiles/default/ (the workflow profile) is read by itself

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests

# llama-cpp-python, built from its source distribution (llama.cpp's C++; about 6 minutes on 2 cores):
# with it installed, tests/test_gguf.py also runs llama.cpp on the GGUF files. Not needed by `make test`.
llama-cpp: install
	CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
	-DGGML_OPENMP=OFF" $(BIN)/python -m pip install --quiet --no-binary llama-cpp-python llama-cpp-python -c constraints.txt

# Figures, not tests: each script prints a table (about 90 minutes on 2 cores, a third of it
# quality_per_minute.py's equal-time training).
bench: install
	$(BIN)/python bench/dag.py
	$(BIN)/python bench/data_stages.py
	$(BIN)/python bench/document_memory.py
	$(BIN)/python bench/ingest_memory.py
	$(BIN)/python bench/dedup_scale.py
	$(BIN)/python bench/shards.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/default_model_speed.py
	$(BIN)/python bench/peak.py
	$(BIN)/python bench/nanogpt_parity.py
	$(BIN)/python bench/quality_per_minute.py
	$(BIN)/python bench/quality_filter.py
	$(BIN)/python bench/web_stages.py
	$(BIN)/python bench/language_id.py
	$(BIN)/python bench/gpu_scale.py
	bash bench/gpu_check.sh results/gpu_check.json
	$(BIN)/python bench/cluster_plan.py

clean:
	rm -rf results logs benchmarks .snakemake
