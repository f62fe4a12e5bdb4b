# salesml — two commands for a new user: `make demo` and `make test`.
# Everything is installed from the lock file into .venv; nothing needs to be installed by hand
# beyond Python >= 3.11 and make.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Cache bytecode: without it every command re-compiles pandas, scikit-learn and MLflow.
unexport PYTHONDONTWRITEBYTECODE
# LightGBM's OpenMP threads spin while waiting; on a busy 2-core machine that turns a
# one-second fit into a minute. Passive waiting costs nothing when the machine is idle.
export OMP_WAIT_POLICY ?= PASSIVE

DEMO_DEALS ?= 5000
DATA ?=
FORMAT ?= canonical
MAPPING ?=

.PHONY: setup browser demo test lint typecheck imports bench clean help

help:
	@echo "make demo   - set up, then run the main job end to end on synthetic history"
	@echo "make test   - set up, then run every check and test"
	@echo "make bench  - benchmarks against a peer measured in the same run"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: $(VENV)/.installed

# The report's browser test needs Chromium (Debian's package). Installed when missing and we
# can (root with apt); otherwise the test says how and is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing chromium (Debian package) for the report's browser test"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium is missing: sudo apt-get install chromium (the browser test is skipped)"; \
		fi; \
	}

# Each dataset gets its own workspace and MLflow store, so the synthetic demo and your own
# export never mix (and their models never compete for the same champion alias).
ifdef DATA
WORKSPACE := .salesml/$(notdir $(abspath $(DATA)))
else
WORKSPACE := .salesml/demo
endif

demo: export SALESML_HOME = $(WORKSPACE)
demo: export MLFLOW_TRACKING_URI = sqlite:///$(abspath $(WORKSPACE))/mlflow.db
demo: setup
	@if [ -n "$(DATA)" ]; then \
		$(BIN)/salesml import "$(DATA)" --format $(FORMAT) $(if $(MAPPING),--mapping "$(MAPPING)",); \
	else \
		$(BIN)/salesml synth --deals $(DEMO_DEALS) --seed 7 --out $(WORKSPACE)/synthetic && \
		$(BIN)/salesml import $(WORKSPACE)/synthetic --format canonical; \
	fi
	$(BIN)/salesml kpis --by team --period quarter
	$(BIN)/salesml train
	@# Every command works as of the data's latest event (its "today"), not the calendar's.
	$(BIN)/salesml score --all --out $(WORKSPACE)/scores.csv
	$(BIN)/salesml forecast --freq month --horizon 3 --by team
	$(BIN)/salesml report --out $(WORKSPACE)/report.html
	@key=$$($(BIN)/salesml keys add demo-$$(date +%s) --scopes admin | tail -n 1); \
		echo; \
		echo "Report:    $(abspath $(WORKSPACE))/report.html  (opens offline in any browser)"; \
		echo "MLflow UI: $(BIN)/mlflow ui --backend-store-uri $$MLFLOW_TRACKING_URI  (runs, model cards, registry)"; \
		echo "API:       SALESML_HOME=$(WORKSPACE) MLFLOW_TRACKING_URI=$$MLFLOW_TRACKING_URI $(BIN)/salesml serve --host 127.0.0.1 --port 8000"; \
		echo "           curl -H 'X-API-Key: $$key' http://127.0.0.1:8000/v1/forecast?by=team   (demo admin key; docs at /docs)"; \
		echo "Workspace: $(WORKSPACE) (warehouse, rejects, score runs, scores.csv); use it with SALESML_HOME=$(WORKSPACE)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

imports: setup
	$(BIN)/lint-imports

test: setup browser lint typecheck imports
	$(BIN)/pytest -n 2 --dist loadfile

SCALE ?= 1000000

bench: setup
	$(BIN)/python -m benchmarks.run --scale $(SCALE)

clean:
	rm -rf $(VENV) $(TOOLS) .salesml .mypy_cache .ruff_cache .pytest_cache
