# devicehooks - `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip warns about this machine's optional local indexes; the filter keeps real output readable
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
.DEFAULT_GOAL := help

# Python 3.12, the Lambda runtime's version, for .venv, the tool venvs and the tests: python3.12
# on PATH (when it runs: a pyenv shim may not), else the newest 3.12 of pyenv or uv; else python3.
PY312 := $(shell for py in python3.12 $$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 \
  $$HOME/.local/share/uv/python/cpython-3.12*/bin/python3.12 2>/dev/null | sort -rV); do \
  "$$py" -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null && break; done)
PYTHON ?= $(or $(PY312),python3)
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# SAM needs python3.12 on PATH to build for the python3.12 runtime
PY312_DIR := $(patsubst %/,%,$(dir $(PY312)))
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
SAM := $(TOOLS)/sam/bin/sam
# checkov in a venv of its own: its dependencies conflict with the project's pins
CHECKOV := $(TOOLS)/checkov/bin/checkov
STAMP := $(VENV)/.installed
# the browser tests' Chromium (tests/browser/test_ui.py): DEVICEHOOKS_CHROMIUM, else Debian's package
CHROMIUM := $(or $(DEVICEHOOKS_CHROMIUM),/usr/bin/chromium)
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help
help: ## list the targets
	@# colours only on a terminal (and not with NO_COLOR set): a pipe or a file gets plain text
	@if [ -t 1 ] && [ -z "$$NO_COLOR" ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "}; {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}'

# A venv made with another Python than $(PYTHON) is made again: its stamp or tool is out of date
# (FORCE) and venv_fresh replaces it.
venv_version = $(shell $(1)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
venv_stale = $(if $(filter $(PY_VERSION),$(call venv_version,$(1))),,FORCE)
venv_fresh = have=$$($(1)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
  if [ "$$have" != "$(PY_VERSION)" ]; then \
    if [ -e $(1) ]; then echo "== $(1): Python $${have:-?} is not $(PY_VERSION): making it again"; rm -rf $(1); fi; \
    $(PYTHON) -m venv $(1); \
  fi

.PHONY: FORCE
FORCE:

# Runs (once per make) before anything that makes or uses a venv: the Python in use, warned about
# when it is not the Lambda runtime's 3.12.
.PHONY: python-check
python-check:
ifeq ($(PY_VERSION),)
	@echo "error: $(PYTHON) does not run: install Python 3.12 (pyenv install 3.12, or uv python install 3.12)" >&2; exit 1
else ifneq ($(PY_VERSION),3.12)
ifeq ($(PY312),)
	@echo "warning: no Python 3.12 found, using $(PYTHON) ($(PY_VERSION)): tests will not run on the Lambda runtime's version; install 3.12 (pyenv install 3.12, or uv python install 3.12) and run make again" >&2
else
	@echo "warning: PYTHON=$(PYTHON) is Python $(PY_VERSION): tests will not run on the Lambda runtime's version (unset PYTHON to use $(PY312))" >&2
endif
endif

$(STAMP): pyproject.toml constraints.txt $(call venv_stale,$(VENV)) | python-check
	@$(call venv_fresh,$(VENV))
	$(BIN)/pip install -q --upgrade pip $(QUIET_PIP)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' $(QUIET_PIP)
	@touch $@

$(SAM): constraints-tools.txt $(call venv_stale,$(TOOLS)/sam) | python-check
	@$(call venv_fresh,$(TOOLS)/sam)
	$(TOOLS)/sam/bin/pip install -q -c constraints-tools.txt aws-sam-cli $(QUIET_PIP)
	@touch $@

$(CHECKOV): constraints-checkov.txt $(call venv_stale,$(TOOLS)/checkov) | python-check
	@$(call venv_fresh,$(TOOLS)/checkov)
	$(TOOLS)/checkov/bin/pip install -q -c constraints-checkov.txt checkov $(QUIET_PIP)
	@touch $@

.PHONY: install
install: $(STAMP) ## create .venv and install the project with its dev tools

.PHONY: run
run: $(STAMP) ## run the whole service locally (moto-backed) on port DEVICEHOOKS_PORT (8080)
	exec $(BIN)/devicehooks local

.PHONY: lint
lint: $(STAMP) ## ruff check + format check, mypy on the package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: format
format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: requirements
requirements: | python-check ## write layers/common/requirements.txt from pyproject.toml (the layer's dependencies)
	@$(PYTHON) -m devicehooks_dev.layer

.PHONY: template-check
template-check: $(STAMP) $(SAM) $(CHECKOV) requirements ## sam validate --lint, cfn-lint, checkov (also per combination of the optional parameters), sam build into .aws-sam/check (tests/template read it)
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV) --quiet --compact --skip-download --framework cloudformation -f template.yaml
	@# every combination of the optional parameters (Tracing, StaticEgressIps, ApiDomainName, AlarmEmail):
	@# the SAM transform, cfn-lint and checkov on each (devicehooks_dev/templatelint.py)
	$(BIN)/python -m devicehooks_dev.templatelint --checkov $(CHECKOV)
	@mkdir -p .aws-sam; rm -rf .aws-sam/check; if [ -n "$(PY312_DIR)" ]; then \
	  PATH="$(PY312_DIR):$$PATH" DEVICEHOOKS_CONSTRAINTS=$(abspath constraints.txt) AWS_DEFAULT_REGION=us-east-1 $(SAM) build --build-dir .aws-sam/check >.aws-sam/check.log 2>&1 \
	    && echo "sam build: ok" || { cat .aws-sam/check.log; exit 1; }; \
	else echo "sam build: skipped (no python3.12 on this machine): the built layer's test will fail"; fi

.PHONY: unit
unit: $(STAMP) ## unit and integration tests (fast)
	$(BIN)/pytest tests/unit tests/integration -q

.PHONY: test
test: chromium lint template-check ## every test: lint, template checks, unit, integration, end-to-end, browser
	$(BIN)/pytest -q

# Before the long steps of make test: Chromium is there, or installed (Debian's package, apt-get as
# root or with passwordless sudo), or make stops with the command to run.
.PHONY: chromium
chromium: ## install Chromium for the browser tests when it is missing (or set DEVICEHOOKS_CHROMIUM)
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ -n "$$DEVICEHOOKS_CHROMIUM" ]; then \
	  echo "error: DEVICEHOOKS_CHROMIUM=$$DEVICEHOOKS_CHROMIUM is not an executable: point it at Chromium, or unset it for Debian's /usr/bin/chromium" >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "error: Chromium is missing (the browser tests drive it) and there is no apt-get: install Chromium, then run: DEVICEHOOKS_CHROMIUM=/path/to/chromium make test" >&2; exit 1; fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "error: Chromium is missing (the browser tests drive it); install it with: sudo apt-get install -y chromium" >&2; exit 1; fi; \
	echo "== installing chromium (apt-get)"; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	[ -x "$(CHROMIUM)" ] || { echo "error: apt-get installed no $(CHROMIUM)" >&2; exit 1; }

.PHONY: bench
bench: $(STAMP) ## run the benchmarks (prints NAME value lines)
	@for name in delivery fanout isolation cold_import bulk load noisy backlog scale dead_endpoint; do \
	  echo "# bench/$$name.py"; $(BIN)/python bench/$$name.py || exit 1; \
	done

.PHONY: build
build: py312 $(SAM) requirements ## sam build (needs python3.12; writes layers/common/requirements.txt first)
	PATH="$(PY312_DIR):$$PATH" DEVICEHOOKS_CONSTRAINTS=$(abspath constraints.txt) $(SAM) build

# sam build for the python3.12 runtime needs python3.12: stop before installing anything without it
.PHONY: py312
py312:
	@test -n "$(PY312_DIR)" || { echo "error: sam build needs Python 3.12 (the functions' runtime): install it (pyenv install 3.12, or uv python install 3.12) and run make again" >&2; exit 1; }

.PHONY: deploy
deploy: build ## sam deploy (guided the first time: make deploy ARGS=--guided)
	$(SAM) deploy $(ARGS)

.PHONY: clean
clean: ## remove build output and caches (keeps .venv)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

.PHONY: python
python: | python-check ## print the Python make uses for the venvs and the tests
	@echo "$(PYTHON) (Python $(PY_VERSION))"

.PHONY: constraints
constraints: | python-check ## refresh the pinned versions (constraints*.txt) from fresh installs (with make's Python)
	rm -rf /tmp/devicehooks-pins && $(PYTHON) -m venv /tmp/devicehooks-pins
	/tmp/devicehooks-pins/bin/pip install -q -e '.[dev]'
	(echo "# pins for .venv (pip install -c constraints.txt -e .[dev]); refresh: make constraints"; \
	  /tmp/devicehooks-pins/bin/pip freeze --exclude-editable | grep -v '^devicehooks') > constraints.txt
	rm -rf /tmp/devicehooks-pins && $(PYTHON) -m venv /tmp/devicehooks-pins
	/tmp/devicehooks-pins/bin/pip install -q aws-sam-cli
	(echo "# pins for the tool venvs (.tools/): aws-sam-cli"; /tmp/devicehooks-pins/bin/pip freeze) > constraints-tools.txt
	rm -rf /tmp/devicehooks-pins && $(PYTHON) -m venv /tmp/devicehooks-pins
	/tmp/devicehooks-pins/bin/pip install -q checkov
	(echo "# pins for .tools/checkov (pip install -c constraints-checkov.txt checkov): it conflicts with .venv's pins"; /tmp/devicehooks-pins/bin/pip freeze) > constraints-checkov.txt
	rm -rf /tmp/devicehooks-pins
