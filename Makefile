# devicehooks - `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip warns about this machine's optional local indexes; the filter keeps real output readable
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
SAM := $(TOOLS)/sam/bin/sam
# checkov in a venv of its own: its dependencies conflict with the project's pins
CHECKOV := $(TOOLS)/checkov/bin/checkov
STAMP := $(VENV)/.installed
# SAM needs python3.12 on PATH to build for the python3.12 runtime; pyenv keeps it out of PATH.
PY312_DIR := $(shell command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys;print(sys.prefix + "/bin")' 2>/dev/null || ls -d $$HOME/.pyenv/versions/3.12*/bin 2>/dev/null | tail -n 1)
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(QUIET_PIP)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' $(QUIET_PIP)
	@touch $@

$(SAM):
	@test -x $(TOOLS)/sam/bin/python || $(PYTHON) -m venv $(TOOLS)/sam || python3 -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/pip install -q -c constraints-tools.txt aws-sam-cli $(QUIET_PIP)

$(CHECKOV):
	@test -x $(TOOLS)/checkov/bin/python || $(PYTHON) -m venv $(TOOLS)/checkov || python3 -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q -c constraints-checkov.txt checkov $(QUIET_PIP)

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

.PHONY: template-check
template-check: $(STAMP) $(SAM) $(CHECKOV) ## sam validate --lint, cfn-lint, checkov, sam build (when python3.12 exists)
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV) --quiet --compact --skip-download --framework cloudformation -f template.yaml
	@mkdir -p .aws-sam; if [ -n "$(PY312_DIR)" ]; then \
	  PATH="$(PY312_DIR):$$PATH" AWS_DEFAULT_REGION=us-east-1 $(SAM) build --build-dir .aws-sam/check >.aws-sam/check.log 2>&1 \
	    && echo "sam build: ok" || { cat .aws-sam/check.log; exit 1; }; \
	else echo "sam build: skipped (no python3.12 on this machine)"; fi

.PHONY: unit
unit: $(STAMP) ## unit and integration tests (fast)
	$(BIN)/pytest tests/unit tests/integration -q

.PHONY: test
test: lint template-check ## every test: lint, template checks, unit, integration, end-to-end, browser
	$(BIN)/pytest -q

.PHONY: bench
bench: $(STAMP) ## run the benchmarks (prints NAME value lines)
	@for name in delivery fanout isolation cold_import bulk load; do \
	  echo "# bench/$$name.py"; $(BIN)/python bench/$$name.py || exit 1; \
	done

.PHONY: build
build: $(SAM) ## sam build (needs python3.12)
	PATH="$(PY312_DIR):$$PATH" $(SAM) build

.PHONY: deploy
deploy: build ## sam deploy (guided the first time: make deploy ARGS=--guided)
	$(SAM) deploy $(ARGS)

.PHONY: clean
clean: ## remove build output and caches (keeps .venv)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

.PHONY: constraints
constraints: ## refresh the pinned versions (constraints*.txt) from fresh installs
	rm -rf /tmp/devicehooks-pins && $(PYTHON) -m venv /tmp/devicehooks-pins
	/tmp/devicehooks-pins/bin/pip install -q -e '.[dev]'
	(echo "# pins for .venv (pip install -c constraints.txt -e .[dev]); refresh: make constraints"; \
	  /tmp/devicehooks-pins/bin/pip freeze --exclude-editable | grep -v '^devicehooks') > constraints.txt
	rm -rf /tmp/devicehooks-pins && $(PYTHON) -m venv /tmp/devicehooks-pins
	/tmp/devicehooks-pins/bin/pip install -q aws-sam-cli
	(echo "# pins for the tool venvs (.tools/): aws-sam-cli"; /tmp/devicehooks-pins/bin/pip freeze) > constraints-tools.txt
	rm -rf /tmp/devicehooks-pins && $(PYTHON) -m venv /tmp/devicehooks-pins
	/tmp/devicehooks-pins/bin/pip install -q checkov
	(echo "# pins for .tools/checkov"; /tmp/devicehooks-pins/bin/pip freeze) > constraints-checkov.txt
	rm -rf /tmp/devicehooks-pins
