# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Tests and the demo see the working tree first; ROS traffic stays on shared memory and loopback.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export AMENT_PREFIX_PATH := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export FASTDDS_BUILTIN_TRANSPORTS := SHM
# Run a command in a private network namespace with only `lo` up (root), else as it is.
ISOLATE = $(if $(shell unshare -n true 2>/dev/null && echo yes),unshare -n bash -c 'ip link set lo up && exec "$$0" "$$@"',)
# Said once per command when the namespace is not available, so nobody believes the traffic was isolated.
ISOLATE_NOTE = $(if $(ISOLATE),,@echo "note: no private network namespace (unshare -n needs root): ROS traffic stays on shared memory and a random domain id, but is not fenced off from this host's other ROS processes" >&2)
# Options and test paths for pytest; without paths it runs the testpaths of pytest.ini (the whole suite).
PYTEST_ARGS ?=

.PHONY: setup test demo clean

setup:
	@bash scripts/setup.sh

test: setup
	$(ISOLATE_NOTE)
	ROS_DOMAIN_ID=$$(( RANDOM % 200 + 1 )) $(ISOLATE) $(PYTHON) -m pytest $(PYTEST_ARGS)

demo: setup
	$(ISOLATE_NOTE)
	ROS_DOMAIN_ID=$$(( RANDOM % 200 + 1 )) $(ISOLATE) $(VENV)/bin/gsdocc demo $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(BAG),--bag $(BAG)) --out out/demo

clean:
	rm -rf build out
