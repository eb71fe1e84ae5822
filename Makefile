# keywatch: `make demo` shows it working against emulated AWS; `make test` runs every check CI runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TOOLS_STAMP := $(VENV)/.installed-$(shell cat tools/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: test demo tools lint unit clean bench

## test: format check, clippy, unit and integration tests (moto), template lint. What CI runs.
test: tools
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings
	cargo test --locked
	$(VENV)/bin/cfn-lint template.yaml

## demo: the real binary under cargo-lambda's Runtime API emulator, on a seeded moto account. Never real AWS.
demo: tools
	$(PY) tools/demo.py

## bench: account-scale benchmark (100, 1,000 and 5,000 users; a few minutes). Writes docs/benchmarks.md.
bench: tools
	cargo build --release --locked --bin keywatch
	cargo test --locked --test scale

## tools: the pinned emulators and linters, in the project's own venv (never system-wide).
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r tools/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	cargo clean
	rm -rf $(VENV)
