.PHONY: run test lint
run:  ## Start the broker (SQLite in ./.pair-broker) on http://127.0.0.1:8000
	scripts/serve.sh
test:  ## Install what the tests need and run ruff, mypy and the whole pytest suite
	scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/mypy
