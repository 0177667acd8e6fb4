.PHONY: run test lint bench
run:  ## Start the broker (SQLite in ./.pair-broker) on http://127.0.0.1:8000
	scripts/serve.sh
test:  ## Install what the tests need and run ruff, mypy and the whole pytest suite
	scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/mypy
bench:  ## Run the benchmark suite (~15 min, as root): one table, bench/results.json, docs/performance.md
	bench/run.sh
