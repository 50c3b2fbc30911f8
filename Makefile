# make setup | test | test-fast | test-kernels | lint | demo | bench   (see README.md, CONTRIBUTING.md). DDS discovery stays on this machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 61
STAMP := $(VENV)/.setup-done

# Another CPU's kernels on this one (x86: ATen without vectorisation, MKL SSE4.2, oneDNN SSE4.1): the model
# tests compare with goldens made on one CPU and must hold wherever users run them.
OTHER_KERNELS := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: setup test test-fast test-kernels lint demo bench clean

$(STAMP): requirements.txt requirements-models.txt requirements.lock CMakeLists.txt package.xml setup.cfg scripts/setup_venv.sh $(wildcard msg/*.msg) $(wildcard srv/*.srv) $(wildcard interfaces/*/msg/*.msg) sam_ovseg_ros/core/kernels.c
	mkdir -p build
	./scripts/setup_venv.sh $(VENV)
	touch $@

setup: $(STAMP)

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(PYTEST) test
	$(MAKE) --no-print-directory test-kernels

test-kernels: $(STAMP)
	$(OTHER_KERNELS) $(PYTEST) -m "model and not dds and not selfcheck" test

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test-fast: $(STAMP)
	$(PYTEST) -m "not dds and not model and not workspace" test

demo: $(STAMP)
	$(PY) -m sam_ovseg_ros.tools.demo --out out

bench: $(STAMP)
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_overhead.py
	$(PY) bench/bench_map.py
	$(PY) bench/bench_map_save.py

clean:
	rm -rf build out
