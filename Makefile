# keywatch: `make demo` shows it working against emulated AWS; `make test` runs every check CI runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TOOLS_STAMP := $(VENV)/.installed-$(shell cat tools/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: test demo tools lint unit clean bench soak checkov sam-validate fuzz-smoke prowler

## test: format check, clippy, unit and integration tests (moto), template lint. What CI runs.
test: tools prowler
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy --locked --test scale -- -D warnings   # the benchmark: --all-targets skips a target with test = false
	cargo build --locked --profile shipped --bin keywatch   # what tests/runtime_api.rs runs: panic = "abort", no LTO
	cargo test --locked
	$(VENV)/bin/cfn-lint template.yaml member-role.yaml events-forwarder.yaml
	$(MAKE) --no-print-directory checkov sam-validate fuzz-smoke

## demo: the real binary under cargo-lambda's Runtime API emulator, on a seeded moto account. Never real AWS.
demo: tools
	$(PY) tools/demo.py

## bench: cold start (init of the release binary, median of 20 process starts per settings profile, on an idle
## machine), then the account-scale benchmark (100, 1,000 and 5,000 users, 3 runs of each configuration), then an organization of
## 50 accounts x 100 users through the work queue and 1 or 4 workers. Writes docs/benchmarks.md and draws
## docs/benchmarks.svg. Smaller runs: BENCH_SIZES=100 BENCH_RUNS=1 BENCH_ORG_ACCOUNTS=5 BENCH_ORG_USERS=10 make bench
## (also BENCH_LATENCY_MS; BENCH_ORG_ACCOUNTS=0 skips the organization).
## The arm64 Lambda artifact is built first so the document reports its size (rustup fetches the arm64 standard
## library once; cargo-lambda links with the zig in .venv).
bench: tools
	cargo build --release --locked --bin keywatch
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --locked --bin keywatch
	TEST_TIME_LIMIT_SECS=0 cargo test --locked --test scale

## soak: the fault soak at length: 200 runs of seeded random faults on seeded random accounts, 8 side by side
## (make test runs 40 of them). SOAK_RUNS sets the number.
SOAK_RUNS ?= 200
soak: tools
	set -o pipefail; SOAK_RUNS=$(SOAK_RUNS) cargo test --locked --test faults soak_random_faults -- --nocapture \
		| grep -v '^{"_aws"'   # the tally and any failure, without each run's metrics line

# $(call make-venv,DIR,REQUIREMENTS): a venv at DIR holding exactly REQUIREMENTS (installed with uv, which takes
# seconds where pip takes tens), stamped so a change to the requirements file reinstalls it.
define make-venv
python3 -m venv $(1)
	$(1)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(1)/bin/uv pip install --quiet --python $(1)/bin/python -r $(2)
	rm -f $(1)/.installed-*
	touch $@
endef

## tools: the pinned emulators and linters, in the project's own venv (never system-wide).
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools/requirements.txt
	$(call make-venv,$(VENV),tools/requirements.txt)

## checkov: policy scan of template.yaml, member-role.yaml and events-forwarder.yaml. A skipped check carries its reason in the template
## (Metadata: checkov). Its own venv: checkov pins boto3 and friends, which would clash with moto's. No calls to
## Prisma Cloud or PyPI. checkov drops what a Condition or !If leaves out for the parameter defaults, so both
## templates are also scanned (and cfn-linted) as copies with every option on: Accounts=organization (the work
## queues), EnableSecurityHub=true and Remediation=deactivate (their grants), ChatNotifications=custom with both
## a Slack and a Teams channel, GracePeriodHours=24 (the re-check schedules' grants and role).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat tools/requirements-checkov.txt | cksum | cut -d' ' -f1)
ALL_OPTIONS_TEMPLATE := target/lint/template-all-options.yaml
ALL_OPTIONS_MEMBER_ROLE := target/lint/member-role-all-options.yaml
# Each range ends at the parameter's own Default line.
ALL_OPTIONS := -e 's/^    Default: self$$/    Default: organization/' \
	-e '/^  EnableSecurityHub:$$/,/^    Default:/s/^    Default: "false"$$/    Default: "true"/' \
	-e '/^  Remediation:$$/,/^    Default:/s/^    Default: "off"$$/    Default: deactivate/' \
	-e '/^  ChatNotifications:$$/,/^    Default:/s/^    Default: "off"$$/    Default: custom/' \
	-e '/^  GracePeriodHours:$$/,/^    Default:/s/^    Default: 0$$/    Default: 24/' \
	-e '/^  SlackWorkspaceId:$$/,/^    Default:/s/^    Default: ""$$/    Default: T0123ABCD/' \
	-e '/^  SlackChannelId:$$/,/^    Default:/s/^    Default: ""$$/    Default: C0123ABCD/' \
	-e '/^  TeamsTenantId:$$/,/^    Default:/s/^    Default: ""$$/    Default: 11111111-2222-3333-4444-555555555555/' \
	-e '/^  TeamsTeamId:$$/,/^    Default:/s/^    Default: ""$$/    Default: 66666666-7777-8888-9999-000000000000/' \
	-e '/^  TeamsChannelId:$$/,/^    Default:/s/^    Default: ""$$/    Default: 19%3ab6ef35dc342d56ba5654e6fc6d25a071%40thread.tacv2/'

checkov: $(CHECKOV_STAMP)
	mkdir -p $(dir $(ALL_OPTIONS_TEMPLATE))
	sed $(ALL_OPTIONS) template.yaml > $(ALL_OPTIONS_TEMPLATE)
	sed $(ALL_OPTIONS) member-role.yaml > $(ALL_OPTIONS_MEMBER_ROLE)
	grep -q '^    Default: organization$$' $(ALL_OPTIONS_TEMPLATE) || { echo "no Accounts default to replace"; exit 1; }
	for copy in $(ALL_OPTIONS_TEMPLATE) $(ALL_OPTIONS_MEMBER_ROLE); do \
		grep -A3 '^  EnableSecurityHub:$$' $$copy | grep -q '^    Default: "true"$$' && \
		grep -A3 '^  Remediation:$$' $$copy | grep -q '^    Default: deactivate$$' || \
		{ echo "$$copy: EnableSecurityHub or Remediation default not replaced"; exit 1; }; \
	done
	for id in SlackWorkspaceId SlackChannelId TeamsTenantId TeamsTeamId TeamsChannelId ChatNotifications; do \
		grep -A3 "^  $$id:$$" $(ALL_OPTIONS_TEMPLATE) | grep -q '^    Default: [^"]' || \
		{ echo "$(ALL_OPTIONS_TEMPLATE): $$id default not replaced"; exit 1; }; \
	done
	$(VENV)/bin/cfn-lint $(ALL_OPTIONS_TEMPLATE)
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --file template.yaml --file member-role.yaml --file events-forwarder.yaml \
		--file $(ALL_OPTIONS_TEMPLATE) --file $(ALL_OPTIONS_MEMBER_ROLE) \
		--framework cloudformation --skip-download --compact --quiet

$(CHECKOV_STAMP): tools/requirements-checkov.txt
	$(call make-venv,$(CHECKOV_VENV),tools/requirements-checkov.txt)

## prowler: Prowler in its own venv, for the test that runs its four access-key checks beside keywatch's rules.
PROWLER_VENV := .venv-prowler
PROWLER_STAMP := $(PROWLER_VENV)/.installed-$(shell cat tools/requirements-prowler.txt | cksum | cut -d' ' -f1)

prowler: $(PROWLER_STAMP)

$(PROWLER_STAMP): tools/requirements-prowler.txt
	$(call make-venv,$(PROWLER_VENV),tools/requirements-prowler.txt)

## sam-validate: what `sam validate --lint` says of template.yaml, offline: dummy region and credentials, no telemetry.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-$(shell cat tools/requirements-sam.txt | cksum | cut -d' ' -f1)

sam-validate: $(SAM_STAMP)
	env -u AWS_PROFILE -u AWS_SESSION_TOKEN SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
		AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
		$(SAM_VENV)/bin/sam validate --lint --template-file template.yaml

$(SAM_STAMP): tools/requirements-sam.txt
	$(call make-venv,$(SAM_VENV),tools/requirements-sam.txt)

## fuzz-smoke: libFuzzer on the credential report parser for FUZZ_SECONDS, seeded from the test fixture.
## Stable Rust is enough: cargo-fuzz needs nightly only for sanitizers, and the parser is safe Rust (-s none).
## The first run installs cargo-fuzz into .tools/ (~3 min) and builds an instrumented copy in fuzz/target. A dev
## build (--dev): it compiles in minutes where an optimized one takes ~20 on 2 cores, and a smoke needs no speed.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := .tools/cargo-fuzz-$(CARGO_FUZZ_VERSION)/bin/cargo-fuzz
FUZZ_CORPUS := fuzz/corpus/credential_report
FUZZ_FIXTURE := tests/fixtures/credential-report-aws-shapes.csv
FUZZ_SECONDS ?= 20

fuzz-smoke: $(CARGO_FUZZ)
	mkdir -p $(FUZZ_CORPUS)
	cp $(FUZZ_FIXTURE) $(FUZZ_CORPUS)/aws-shapes.csv
	awk 'NR == 1 { header = $$0; next } { f = dir "/row-" NR ".csv"; print header > f; print > f; close(f) }' \
		dir=$(FUZZ_CORPUS) $(FUZZ_FIXTURE)
	$(CARGO_FUZZ) run --dev --sanitizer none credential_report $(FUZZ_CORPUS) -- \
		-max_total_time=$(FUZZ_SECONDS) -dict=fuzz/credential_report.dict -print_final_stats=1

$(CARGO_FUZZ):
	cargo install --locked --root .tools/cargo-fuzz-$(CARGO_FUZZ_VERSION) --version $(CARGO_FUZZ_VERSION) cargo-fuzz

clean:
	cargo clean
	rm -rf $(VENV)
