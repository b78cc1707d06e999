# Courier: `make run` starts Orthanc with the Courier plugin; `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= orthanc.json
DEB_PACKAGES := orthanc orthanc-python orthanc-dicomweb dcmtk dcm2niix python3-venv
# libatomic1: the Node.js that Playwright bundles needs it, and a minimal Debian lacks it.
# postgresql, orthanc-postgresql, haproxy: the tests of several routers on one PostgreSQL.
TEST_DEB_PACKAGES := chromium libatomic1 postgresql orthanc-postgresql haproxy
CLUSTER_DEB_PACKAGES := postgresql orthanc-postgresql haproxy
APT_STAMP := $(VENV)/.apt-done
TEST_APT_STAMP := $(VENV)/.apt-test-done
PIP_STAMP := $(VENV)/.pip-done

.PHONY: install run cluster test lint unit integration bench clean import

# Never trust a $(VENV) this Makefile did not make: orthanc-python embeds /usr/bin/python3, so the
# venv must be made from it. A link (it may point anywhere, or nowhere on another machine) is
# removed, a venv of another interpreter rebuilt; anything else stops make with what to delete.
define CHECK_VENV
if [ -L "$(VENV)" ]; then \
  echo "note: $(VENV) is a link to $$(readlink "$(VENV)"), not a venv made here: removing the link" >&2; rm -f "$(VENV)"; \
elif [ -e "$(VENV)" ] && [ ! -d "$(VENV)" ]; then \
  echo "$(VENV) is a file, not a virtual environment: delete it (rm $(VENV)) and run make again"; \
elif [ -d "$(VENV)" ] && [ "$$(readlink -f "$(VENV)/bin/python")" != "$$(readlink -f /usr/bin/python3)" ]; then \
  if [ -f "$(VENV)/pyvenv.cfg" ]; then \
    echo "note: $(VENV) was made from $$(readlink -f "$(VENV)/bin/python" || echo '?'), not /usr/bin/python3: rebuilding it" >&2; \
    rm -rf "$(VENV)"; \
  else echo "$(VENV) is not a virtual environment made from /usr/bin/python3: delete it (rm -r $(VENV)) and run make again"; fi; \
fi
endef
ifneq ($(MAKECMDGOALS),clean)
VENV_PROBLEM := $(shell $(CHECK_VENV))
ifneq ($(VENV_PROBLEM),)
$(error $(VENV_PROBLEM))
endif
endif

install: $(PIP_STAMP)

# Debian packages: installed once, when one of them is missing.
$(APT_STAMP):
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

# What only the tests need: Debian's Chromium for the web UI tests (Playwright drives it; a
# browser download would not work here).
$(TEST_APT_STAMP): $(APT_STAMP)
	@missing=""; for p in $(TEST_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@touch $@

# The venv must be made with Debian's /usr/bin/python3: orthanc-python embeds that interpreter.
$(PIP_STAMP): requirements.txt requirements-test.txt $(APT_STAMP)
	@[ -x $(PY) ] || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	@touch $@

# Orthanc runs in a session of its own and gets exactly one SIGTERM however make is stopped (a
# signal to make, to its process group, Ctrl-C): a second one makes Orthanc 1.10.1 exit at once,
# skipping its graceful stop and Courier's (tasks put back, nothing left RUNNING). The trap can run
# twice (a signal to the group reaches this shell, and make forwards its own SIGTERM to it, both
# before the first trap has run), hence the flag rather than resetting the trap. A trap interrupts
# `wait` (status 128+signal): `wait -p` tells that apart from Orthanc's own end, and make exits with
# Orthanc's status, saying so when a signal ended it.
run: install
	@mkdir -p data
	@TCP_NODELAY=1 setsid Orthanc $(CONFIG) & orthanc=$$!; \
	 trap '[ -n "$$stopping" ] || { stopping=1; kill -TERM $$orthanc 2>/dev/null; }' TERM INT HUP; \
	 while unset waited; wait -p waited $$orthanc; status=$$?; [ -z "$$waited" ] && [ $$status -gt 128 ]; do :; done; \
	 [ $$status -le 128 ] || echo "Orthanc was ended by signal $$((status - 128))" >&2; exit $$status

# Two routers on one PostgreSQL behind HAProxy, on loopback (see cluster/ and the README's
# "Scaling out"): HTTP 8042 and DICOM 4242 on the balancer, the routers on 8142/4342 and 8242/4442.
# make import PATH=/media/disk ROUTE=research [RECURSIVE=1] [DRY_RUN=1] [MOVE=/done | DELETE=1]
#   (or DESTINATION=id [PSEUDONYMIZE=profile], or AS_RECEIVED=1; URL=, USER=, PASSWORD_FILE=)
# PATH here is the folder to import (IMPORT_PATH works too): the recipe runs with the system's
# PATH of its own, since make hands a PATH given on its command line to every command.
IMPORT_DIR = $(if $(filter command line,$(origin PATH)),$(PATH),$(IMPORT_PATH))
SYSTEM_PATH := /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
import:
	@[ -x $(PY) ] || { echo "run make install first (with the system's PATH)"; exit 2; }
	@[ -n "$(IMPORT_DIR)" ] || { echo "usage: make import PATH=<folder> ROUTE=<route> (see the Makefile)"; exit 2; }
	@/usr/bin/env PATH=$(SYSTEM_PATH) PYTHONPATH=plugin $(PY) -m courier.cli import "$(IMPORT_DIR)" \
	  $(if $(ROUTE),--route "$(ROUTE)") $(if $(DESTINATION),--destination "$(DESTINATION)") \
	  $(if $(PSEUDONYMIZE),--pseudonymize "$(PSEUDONYMIZE)") $(if $(AS_RECEIVED),--as-received) \
	  $(if $(RECURSIVE),--recursive) $(if $(DRY_RUN),--dry-run) $(if $(MOVE),--move "$(MOVE)") $(if $(DELETE),--delete) \
	  $(if $(URL),--url "$(URL)") $(if $(USER_NAME),--user "$(USER_NAME)") $(if $(PASSWORD_FILE),--password-file "$(PASSWORD_FILE)")

cluster: install
	@missing=""; for p in $(CLUSTER_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the cluster:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@exec $(PY) cluster/run.py

# The suite on TEST_WORKERS pytest-xdist workers (worksteal: a worker that is done takes tests
# queued for another): an integration test mostly waits for its Orthancs and peers, so one worker
# used under half of this 2-core machine (17 minutes; 6.5 on three). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal)
test: lint $(TEST_APT_STAMP)
	TCP_NODELAY=1 $(PY) -m pytest -q $(XDIST) tests

# ruff (rules in pyproject.toml) and the import-linter contracts: layers from web down to config,
# only host touches Orthanc, pure cores import no I/O.
lint: install
	$(PY) -m ruff check plugin tests bench
	PYTHONPATH=plugin $(VENV)/bin/lint-imports --no-cache

unit: install
	$(PY) -m pytest -q tests/unit

integration: install $(TEST_APT_STAMP)
	TCP_NODELAY=1 $(PY) -m pytest -q $(XDIST) tests/integration

# Benchmarks (not part of `make test`); dicognito is installed only here, for the comparison.
# The peers Courier is measured against run in a venv of their own (.venv-bench), so that their
# dependencies never reach Courier's.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: bench/requirements-peers.txt
	@[ -x $(BENCH_VENV)/bin/python ] || /usr/bin/python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements-peers.txt
	@touch $@

bench: install $(BENCH_VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	@$(PY) bench/measure.py
	TCP_NODELAY=1 $(PY) bench/bench_routing.py
	TCP_NODELAY=1 $(PY) bench/bench_pseudonymize.py
	TCP_NODELAY=1 $(PY) bench/bench_pull.py
	TCP_NODELAY=1 $(PY) bench/bench_cluster.py
	TCP_NODELAY=1 $(PY) bench/bench_memory.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) data test-output .pytest_cache
