# The one test command is `make test`: CI runs exactly that (.ci/run).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test lint fmt-check clippy deps-check control-plane chromium kubectl crds bench-sync demo bench-controller bench-review

## make test: formatting, lints, dependency rules, then every test (unit, fake-server,
## integration tests against the real local control plane, and the report rendered in
## headless Chromium).
test: lint control-plane chromium
	tests/control-plane/run.sh -- $(CARGO) test --workspace

lint: fmt-check clippy deps-check

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## One rustls crypto provider (ring) for kube and reqwest: aws-lc-rs must not be linked.
deps-check:
	@if $(CARGO) tree --workspace -e normal -i aws-lc-rs >/dev/null 2>&1; then \
	  echo "aws-lc-rs is in the dependency tree: use ring only" >&2; exit 1; fi

## Build the local kube-apiserver + etcd used by the integration tests.
control-plane:
	tests/control-plane/run.sh build

## Headless Chromium (Debian's `chromium` package) for the report test; installed with
## apt-get when missing.
chromium:
	tests/tools/chromium.sh

## A kubectl matching the control plane, in target/go-bin/kubectl (skipped when up to date).
kubectl:
	tests/tools/kubectl.sh

## Regenerate the committed CRD YAML from the Rust types.
crds:
	$(CARGO) run -q -- crd --output-dir crds

## Sync benchmark against the fake's large preset (release build); prints figures.
bench-sync:
	$(CARGO) build --release -p fake-confluence
	$(CARGO) bench --bench sync

## The operator end to end on this machine until Ctrl-C: local control plane, fake
## Confluence (medium preset), CRD, Secret, connector, operator. CLUSTER=existing uses
## the cluster of the current KUBECONFIG instead of the local control plane.
CLUSTER ?= local
demo:
	CLUSTER=$(CLUSTER) tests/demo/demo.sh

## Controller benchmark: 500 connectors against one operator (release build) on the
## local control plane; prints time to Connected, peak RSS, API requests per sync and
## Secret-rotation latency.
bench-controller:
	$(CARGO) build --release -p confluence-operator --bin confluence-operator -p fake-confluence --bin fake-confluence
	tests/control-plane/run.sh -- $(CARGO) bench --bench controller

## Access-review benchmark on the fake's large preset (release build): report size and
## time, CSV, a full diff pass, Chromium's load time; prints figures.
bench-review:
	$(CARGO) build --release -p fake-confluence
	$(CARGO) bench --bench review
