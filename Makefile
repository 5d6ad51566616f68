# The two commands of a new user:
#   make run    build, then NGINX with the module in front of the development CQL server
#   make test   formatting, lints, unit and integration tests (real NGINX, real clients)

CARGO ?= cargo

.PHONY: run test setup build venv lint test-debian-nginx bench fuzz-smoke

run: setup
	$(CARGO) build --release --workspace
	scripts/run-demo

test: setup lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace
	$(MAKE) test-debian-nginx

setup:
	scripts/setup

venv: setup

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

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
