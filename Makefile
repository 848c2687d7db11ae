# cftunnel-operator — every routine task has a target here; CI calls the same ones.
SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-k tunnel -x"
PYTEST_ARGS ?=

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create the virtual environment and install the project with its dev dependencies

.PHONY: lint
lint: install ## Lint (ruff check, ruff format --check, import-linter layering contracts)
	$(BIN)/ruff check operator tests hack
	$(BIN)/ruff format --check operator tests hack
	$(BIN)/lint-imports

.PHONY: format
format: install ## Format and auto-fix the code
	$(BIN)/ruff format operator tests hack
	$(BIN)/ruff check --fix operator tests hack

.PHONY: typecheck
typecheck: install ## Type-check with mypy in strict mode
	$(BIN)/mypy
	$(BIN)/mypy --strict hack/chart-readme.py

##@ Running

.PHONY: demo
demo: install controlplane ## Show the operator at work: local control plane + Cloudflare emulator + examples/demo (DEMO_ARGS=--keep keeps it running)
	$(PY) -m cftunnel_devtools.demo $(DEMO_ARGS)

.PHONY: run
run: install ## Run the operator against the current kubeconfig (configure it with CFTUNNEL_* variables)
	$(PY) -m cftunnel_operator

##@ Testing

.PHONY: controlplane
controlplane: ## Provide the control-plane binaries (etcd, kube-apiserver, ..., kwok, helm) and print their folder
	@bash hack/provision-controlplane.sh

.PHONY: test
test: install controlplane ## Run the whole test suite (unit + integration on a local control plane)
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Run only the tests that need no control plane
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

##@ Chart and image

.PHONY: chart-crds
chart-crds: ## Copy crds/ into the Helm chart (templates/crds/), wrapped for crds.enabled and crds.keep
	bash hack/sync-chart-crds.sh

.PHONY: chart-readme
chart-readme: install ## Regenerate the values table of the chart's README from values.yaml
	$(PY) hack/chart-readme.py

.PHONY: chart-lint
chart-lint: install ## Check the chart's CRDs and README are current and lint it (helm lint --strict)
	bash hack/sync-chart-crds.sh --check
	$(PY) hack/chart-readme.py --check
	"$$(bash hack/provision-controlplane.sh | tail -n1)/helm" lint --strict charts/cftunnel-operator

.PHONY: image
image: ## Build the operator image (needs a Docker engine)
	docker build -t cftunnel-operator:dev .

##@ End to end

.PHONY: e2e
e2e: ## Kind cluster + operator image + chart + emulator + examples until Ready (needs a Docker engine; E2E_KEEP=1 keeps the cluster)
	bash hack/e2e-kind.sh

##@ Benchmark

# Extra benchmark arguments, e.g. make bench BENCH_ARGS="--tunnels 100 --services 100"
BENCH_ARGS ?=

.PHONY: bench
bench: install controlplane ## Measure convergence, API calls per object, latency and footprint (results in bench-results/)
	$(PY) -m cftunnel_devtools.bench $(BENCH_ARGS)
