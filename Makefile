# Two commands do everything: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FP     := $(VENV)/bin/fieldproof

.PHONY: run test fuzz bench bench-readme wrk pgbouncer venv web browser up down clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Browser libraries for the web pages (Leaflet), from the npm registry into gitignored node_modules.
# Without npm the pages still load, with lists instead of maps.
WEB := api/web
$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the web pages will load without maps (install Node.js 20 and rerun make)"; fi

web: $(WEB)/node_modules/.installed

# Debian's Chromium for the browser tests, and CJK fonts so the Chinese pages' screenshots show characters, not
# boxes (apt-get update only if the first install fails); without Chromium the browser tests skip.
browser:
	@{ command -v chromium >/dev/null && [ -d /usr/share/fonts/opentype/noto ]; } || [ "$$(id -u)" != 0 ] || \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq chromium fonts-noto-cjk || \
	  { apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk; }; } \
	  || echo "chromium could not be installed: the browser tests will skip"

# PgBouncer >= 1.21 for the connection-pooling tests (they start it, and a streaming standby, through session
# fixtures under .data/), so prepared statements work through it: the system's if new enough, else Debian trixie's
# source built once into .data/pgbouncer-<version>/ (SHA-256 checked, ~20 s; core/pgbouncer_build.py); if that
# fails, Debian 12's package (1.18, prepared statements off). Without any pgbouncer those tests skip.
pgbouncer: venv
	@$(PY) -m core.pgbouncer_build || echo "pgbouncer could not be installed: the PgBouncer tests will skip"

up: venv
	$(FP) db up

# Starts PostgreSQL and Redis, migrates, loads the demo, runs API + worker + beat; Ctrl-C stops all it started.
run: venv web
	$(PY) -m api.supervise

test: up web browser pgbouncer
	$(PY) -m pytest

# A larger, random schema-fuzzing run than the bounded one in `make test` (examples per operation and mode).
FUZZ_EXAMPLES ?= 60
fuzz: up
	FIELDPROOF_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FIELDPROOF_FUZZ_RANDOM=1 $(PY) -m pytest tests/test_fuzz_api.py -q

# Debian's wrk drives the HTTP benchmarks (apt-get update only if the first install fails); without it they fail.
wrk:
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; } \
	  || echo "wrk could not be installed: the HTTP benchmarks will fail"

# All benchmarks (or BENCH="bench.bench_checkin ..."); writes bench/results.json and results.md and copies the table
# into README.md (bench-readme); exits 1 when a benchmark failed (an exception, or any request error).
BENCH ?=
bench: up wrk
	$(PY) -m bench.run $(BENCH); status=$$?; $(PY) -m bench.readme; exit $$status

bench-readme: venv
	$(PY) -m bench.readme

down: venv
	$(FP) db down

clean: down
	rm -rf .data
