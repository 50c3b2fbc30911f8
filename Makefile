# make setup | test | demo | bench   (see README.md). DDS discovery stays on this machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 61
STAMP := $(VENV)/.setup-done

.PHONY: setup test demo bench clean

$(STAMP): requirements.txt requirements.lock CMakeLists.txt package.xml setup.cfg scripts/setup_venv.sh $(wildcard msg/*.msg) $(wildcard interfaces/*/msg/*.msg) sam_ovseg_ros/kernels.c
	mkdir -p build
	./scripts/setup_venv.sh $(VENV)
	touch $@

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider test

demo: $(STAMP)
	$(PY) -m sam_ovseg_ros.demo --out out

bench: $(STAMP)
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_overhead.py
	$(PY) bench/bench_map.py

clean:
	rm -rf build out
