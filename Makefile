# riskhub: `make run` serves on embedded defaults, `make test` runs everything, `make bench` measures,
# `make soak` runs the production topology for 10 minutes under load and faults and prints a ledger.
export UV_PYTHON_DOWNLOADS := never
UV := python3 -m uv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench profile fuzz soak lint format sync ensure-uv system-deps

ensure-uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv>=0.4,<1"

sync: ensure-uv
	@$(UV) sync --frozen --quiet

run: sync
	$(UV) run --frozen riskhub serve --host $(HOST) --port $(PORT)

system-deps:
	@bash scripts/install_system_deps.sh

lint: sync
	$(UV) run --frozen ruff check src tests bench scripts
	$(UV) run --frozen ruff format --check src tests bench scripts
	$(UV) run --frozen mypy

format: sync
	$(UV) run --frozen ruff format src tests bench scripts
	$(UV) run --frozen ruff check --fix src tests bench scripts

test: system-deps sync lint
	$(UV) run --frozen pytest -q -ra $(PYTEST_ARGS)

bench: system-deps sync
	$(UV) run --frozen python bench/run.py $(BENCH_ARGS)

# Where a write's CPU goes under load (py-spy on the server); PROFILE_ARGS e.g. "--config embedded-api".
profile: system-deps sync
	$(UV) run --frozen python bench/hotspots.py $(PROFILE_ARGS)

fuzz: system-deps sync
	RISKHUB_FUZZ_EXAMPLES=$${RISKHUB_FUZZ_EXAMPLES:-500} $(UV) run --frozen pytest -q tests/e2e/test_fuzz_api.py

# SOAK_ARGS e.g. "--duration 120 --rate 10" (python -m soak --help); exits 1 on any loss.
soak: system-deps sync
	PYTHONPATH=tests $(UV) run --frozen python -m soak $(SOAK_ARGS)
