# Audience: `make dev` runs the whole application locally, `make test` runs the whole suite.
# Both create the virtualenv (.venv) when it is missing or its requirements changed.

SHELL := /bin/bash
# Lambda runs python3.13: use it where it exists (pyenv installs included), else any 3.11+.
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 python3.12 python3.11 python3; do \
	  if "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then command -v "$$p" || echo "$$p"; break; fi; done)
PY313 := $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	  if "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then echo "$$p"; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
NAME ?= acme

.PHONY: dev test corpus lint build validate org bench openapi clean

$(BIN)/.installed: requirements-dev.txt layers/audience/requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (3.13 preferred)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	@touch $@

## dev: run the whole application locally (moto, in-process functions, uvicorn); Ctrl-C stops it
dev: $(BIN)/.installed
	$(BIN)/python -m devstack

## test: run the whole suite (unit, local-stack integration, contract)
test: $(BIN)/.installed
	$(BIN)/python -m pytest

## corpus: only the bad-input corpora (forged webhooks, hostile import files); `make test` runs them too
corpus: $(BIN)/.installed
	$(BIN)/python -m pytest -m corpus

## lint: ruff, cfn-lint and `sam validate --lint`; runs them all, fails if any failed
lint: $(BIN)/.installed $(SAM_VENV)/.installed
	@status=0; for linter in \
	  "$(BIN)/ruff check ." \
	  "$(BIN)/ruff format --check ." \
	  "$(BIN)/cfn-lint template.yaml" \
	  "SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1"; do \
	  echo "$$linter"; eval "$$linter" || status=1; \
	done; exit $$status

## build: `sam build` (python3.13, arm64); no AWS account or Docker, PyPI for the layer's arm64 wheels
build: $(SAM_VENV)/.installed
	@test -n "$(PY313)" || { echo "sam build needs python3.13 on PATH"; exit 1; }
	PATH="$(dir $(PY313)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build
	$(PY313) scripts/check_build.py

## org: create an org and print its id and API key (local stack, or STACK=<name> for a deployed one)
org: $(BIN)/.installed
	@PYTHONPATH=layers/audience $(BIN)/python -m audience.admin create-org --name "$(NAME)" $(if $(STACK),--stack-name $(STACK),--dev-file .local/dev.json)

## bench: run the benchmarks and print their figures (see BENCHMARKS.md)
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

## openapi: rewrite docs/openapi.json from the application
openapi: $(BIN)/.installed
	PYTHONPATH=layers/audience $(BIN)/python -m audience.api.openapi > docs/openapi.json

clean:
	rm -rf .aws-sam .local
