# rackflow: the commands a newcomer needs. See README.md.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: venv system-deps test lint demo demo-stop bench deploy lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests and benchmarks need: PostgreSQL for the inventory
# tests and the tests' Prefect server, Go + govmomi sources to build the lab's vCenter simulator (vcsim),
# iproute2/iptables for the benchmark's network namespace, OpenIPMI's
# ipmi_sim, net-snmp's snmpd and OpenSSH's sshd for the reboot lab.
system-deps:
	bash scripts/system-deps.sh

# Tests marked own_process point Prefect's process-wide services at a real
# server: they get a pytest process of their own.
test: venv system-deps
	$(PY) -m pytest -q -m "not own_process"
	$(PY) -m pytest -q -m own_process

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy clients blocks

demo: venv system-deps
	$(PY) -m deployments.demo

demo-stop: venv
	$(PY) -m deployments.demo --stop

bench: venv system-deps
	$(PY) benchmarks/discovery.py
	$(PY) benchmarks/rollout.py

deploy: venv
	$(PY) -m deployments.bootstrap

lab: venv
	$(VENV)/bin/rackflow lab up

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
