# Dumont: `make run` starts everything locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test clean bench-snapshot

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@scripts/venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: install
	@scripts/run.sh

test: install
	@scripts/test.sh

bench-snapshot: install
	@scripts/bench_snapshot.sh $(ARGS)

clean:
	rm -rf $(VENV) var staticfiles
