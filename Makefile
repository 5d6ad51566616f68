# The two commands of a new user:
#   make run    build, then NGINX with the module in front of the development CQL server
#   make test   formatting, lints, unit and integration tests (real NGINX, real clients)

CARGO ?= cargo

.PHONY: run test check setup build venv lint test-debian-nginx bench bench-e2e fuzz-smoke

run: setup
	$(CARGO) build --release --workspace
	scripts/run-demo

# `cargo build` makes the module (.so) and the development server the integration tests
# run; `cargo test` alone does not build the .so. Not `--all-targets`: with a cdylib+rlib
# crate Cargo names the library without a hash, and building it for panic=abort and for
# the unwinding test harness in one invocation makes the two outputs collide. clippy
# checks every target.
test: setup lint
	scripts/check-dashboard
	$(CARGO) build --workspace
	$(CARGO) test --workspace
	$(MAKE) test-debian-nginx
	$(MAKE) fuzz-smoke

# The quick loop of a change (a couple of minutes warm): formatting, lints, every unit test
# and the codec and classifier over the recorded traffic and the statement corpus, without
# NGINX. `make test` runs all of it and the integration tests.
check: lint
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test --test codec_captures --test classify_corpus

setup:
	scripts/setup

# The module under its NGINX name, and the NGINX it was built against.
build: setup
	$(CARGO) build --release
	cp target/release/libngx_stream_cql_module.so target/release/ngx_stream_cql_module.so
	@echo "module: target/release/ngx_stream_cql_module.so"

venv: setup

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every fuzz target for a few seconds: they build and do not crash at once. Long runs:
#   cd fuzz && cargo +nightly fuzz run TARGET -- -max_total_time=600
FUZZ_TARGETS = envelope segment bodies classify session token topology
FUZZ_SECONDS ?= 10
fuzz-smoke:
	mkdir -p target
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		log=../target/fuzz-smoke-$$t.log; \
		cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) >$$log 2>&1 \
			|| { tail -n 40 $$log; exit 1; }; \
		echo "fuzz $$t: $$(grep -E '^Done [0-9]+ runs' $$log)"; \
	done

# Criterion benchmarks of the pure code (codec, classifier, identity, policy, audit, session),
# then the end-to-end run, which reports the criterion medians that matter beside its own: the
# development server direct, through a plain proxy_pass, through the gate without and with a
# buffered audit log, in one run, and callgrind's instructions per request (BENCHMARKS.md,
# docs/bench/*.png; BENCH_QUICK=1 for a short run, BENCH_PROFILE=0 without callgrind).
bench:
	$(CARGO) bench --bench codec --bench classify --bench identity --bench policy --bench audit \
		--bench session
	$(MAKE) bench-e2e

bench-e2e:
	CARGO="$(CARGO)" scripts/bench

# Builds the module against Debian's packaged nginx (as the Dockerfile does), checks the
# container's configuration, and runs the configuration and pass-through tests with
# Debian's own nginx binary loading the module.
test-debian-nginx:
	scripts/build-for-debian-nginx target/debian-nginx
	scripts/check-docker-config target/debian-nginx
	CQL_NGINX_BIN=$(CURDIR)/target/debian-nginx/root/usr/sbin/nginx \
	CQL_MODULE=$(CURDIR)/target/debian-nginx/ngx_stream_cql_module.so \
	CQL_PRELOAD_MODULES=$(CURDIR)/target/debian-nginx/root/usr/lib/nginx/modules/ngx_stream_module.so \
	$(CARGO) test --test config --test passthrough
