# The one test command is `make test`: CI runs exactly that (.ci/run).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test lint fmt-check clippy deps-check control-plane chromium kubectl helm gitops-tools test-tools crds chart-crds bench-sync demo bench-controller bench-review helm-lint

## make test: formatting, lints, dependency rules, then every test (unit, fake-server,
## integration tests against the real local control plane, Helm chart and GitOps
## health checks with the tools those need, and the review report rendered in headless
## Chromium).
test: lint control-plane test-tools chromium
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

## Helm 3 and Helm 4 in target/go-bin/helm3 and helm4 (skipped when up to date).
helm:
	tests/tools/helm.sh

## Flux's kstatus and Argo CD's Lua interpreter as small programs in target/go-bin.
gitops-tools:
	tests/tools/gitops.sh

## Every tool the chart and GitOps tests run.
test-tools: kubectl helm gitops-tools

## Lint the chart with both Helm majors (the full checks are in `make test`).
helm-lint: helm
	target/go-bin/helm3 lint --strict --kube-version v1.36.3 charts/confluence-operator
	target/go-bin/helm4 lint --strict --kube-version v1.36.3 charts/confluence-operator

## Copy crds/ into the Helm chart, whose crds/ must hold exactly the same files (a test
## checks); run it after `make crds`.
chart-crds:
	rm -f charts/confluence-operator/crds/*.yaml
	cp crds/*.yaml charts/confluence-operator/crds/

## Regenerate the committed CRD YAML from the Rust types.
crds:
	$(CARGO) run -q -- crd --output-dir crds
	$(MAKE) chart-crds

## Sync benchmark on the fake's large and medium presets, each beside the reference
## connector's request pattern (release build); prints figures.
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
