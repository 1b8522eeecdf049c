# Deployment targets: a local kind cluster with NATS JetStream, PostgreSQL and Zhike, plus the
# static scan of the images and the chart. Included from the root Makefile:
#
#     include deploy/deploy.mk
#
# Typical use:  make kind-up images kind-load deploy deploy-test ... make kind-down
# Runbook: docs/operations.md ("Local cluster (kind)").

PYTHON ?= .venv/bin/python

KIND_CLUSTER       ?= zhike
ZHIKE_RELEASE      ?= zhike
ZHIKE_NAMESPACE    ?= zhike
NATS_NAMESPACE     ?= nats
PG_NAMESPACE       ?= postgres
CNPG_NAMESPACE     ?= cnpg-system
IMAGE_PREFIX       ?= zhike
IMAGE_TAG          ?= dev
ZHIKE_SERVICES     := identity profile offers notifications
# Pinned chart versions (override on the command line to move them deliberately).
NATS_CHART_VERSION ?= 1.2.4
CNPG_CHART_VERSION ?= 0.23.0
HELM_TIMEOUT       ?= 10m
# Lifetime of the notifications_dispatcher token `make deploy` mints for kind (30 days).
NOTIFICATIONS_TOKEN_TTL ?= 2592000

KIND_DIR  := deploy/kind
IMAGE_DOCKERFILE := deploy/image/Dockerfile
CHART_DIR := deploy/helm/zhike
# The NATS users' authorization block (public keys and the allow-list), made by `make deploy`
# from zhike_runtime/events/nats_permissions.py and layered over nats-values.yaml.
NATS_AUTH_VALUES := .tools/kind/nats-authorization.json
ZHIKE_CLI        := $(PYTHON) -m zhike_runtime.cli

# checkov pins ~45 dependencies (boto3, networkx<2.7, packaging<24, ...) that would fight the
# workspace lock, so it lives in its own tool venv, installed at a pinned version.
CHECKOV_VERSION ?= 3.3.30
CHECKOV_PYTHON  ?= python3
CHECKOV_VENV    := .tools/checkov
CHECKOV         := $(CHECKOV_VENV)/bin/checkov
RENDERED_DIR    := .tools/rendered

DEPLOY_TOOLS := docker kind helm kubectl

.PHONY: kind-up images kind-load deploy deploy-test kind-down scan deploy-tools-check

# Fails before doing anything when a tool is missing, naming every missing one, and when the
# docker CLI is there but no Docker engine answers (kind and image builds need the engine).
deploy-tools-check:
	@missing=""; \
	for tool in $(DEPLOY_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "error: required tool(s) not found on PATH:$$missing" >&2; \
	  echo "       the kind targets need: $(DEPLOY_TOOLS) (see docs/operations.md)" >&2; \
	  exit 1; \
	fi; \
	if ! docker info >/dev/null 2>&1; then \
	  echo "error: docker is installed but no Docker engine is reachable (is the daemon running?)" >&2; \
	  exit 1; \
	fi

kind-up: deploy-tools-check ## create the local kind cluster (1 control plane, 3 workers)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster '$(KIND_CLUSTER)' already exists"; \
	else \
	  kind create cluster --name '$(KIND_CLUSTER)' --config $(KIND_DIR)/kind-config.yaml --wait 180s; \
	fi

images: deploy-tools-check ## build the four service images (zhike/<svc>:dev by default)
	@test -f uv.lock || { echo "error: uv.lock is missing; run 'uv lock' first" >&2; exit 1; }
	@# One Dockerfile for all four (deploy/image/Dockerfile); the base and tool layers are shared.
	@set -e; for svc in $(ZHIKE_SERVICES); do \
	  echo "==> building $(IMAGE_PREFIX)/$$svc:$(IMAGE_TAG)"; \
	  docker build -f $(IMAGE_DOCKERFILE) --build-arg SERVICE=$$svc \
	    -t '$(IMAGE_PREFIX)/'$$svc':$(IMAGE_TAG)' . ; \
	done

kind-load: deploy-tools-check ## load the built images into the kind cluster
	@set -e; for svc in $(ZHIKE_SERVICES); do \
	  kind load docker-image '$(IMAGE_PREFIX)/'$$svc':$(IMAGE_TAG)' --name '$(KIND_CLUSTER)'; \
	done

deploy: deploy-tools-check ## install NATS, PostgreSQL (CloudNativePG), the database Secrets and Zhike into kind
	kubectl config use-context 'kind-$(KIND_CLUSTER)'
	helm repo add nats https://nats-io.github.io/k8s/helm/charts/ --force-update
	helm repo add cnpg https://cloudnative-pg.github.io/charts --force-update
	helm repo update nats cnpg
	kubectl create namespace '$(ZHIKE_NAMESPACE)' --dry-run=client -o yaml | kubectl apply -f -
	@# NATS users (docs/operations.md, "NATS permissions"): an NKey seed per user in its own
	@# Secret zhike-nats-<user>, made once and kept (a re-run never changes a running pod's
	@# identity). Seeds go through pipes only; the server is told the public keys alone.
	@set -e; mkdir -p '$(dir $(NATS_AUTH_VALUES))'; nkeys=""; \
	for user in $$($(ZHIKE_CLI) nats users); do \
	  secret=zhike-nats-$$user; \
	  if ! kubectl -n '$(ZHIKE_NAMESPACE)' get secret $$secret >/dev/null 2>&1; then \
	    $(ZHIKE_CLI) nats new-seed | kubectl -n '$(ZHIKE_NAMESPACE)' create secret generic \
	      $$secret --from-file=nkey.seed=/dev/stdin; \
	  fi; \
	  public=$$(kubectl -n '$(ZHIKE_NAMESPACE)' get secret $$secret -o 'jsonpath={.data.nkey\.seed}' \
	    | base64 -d | $(ZHIKE_CLI) nats public-key); \
	  nkeys="$$nkeys --nkey $$user=$$public"; \
	done; \
	$(ZHIKE_CLI) nats chart-values $$nkeys > '$(NATS_AUTH_VALUES)'
	helm upgrade --install nats nats/nats --version '$(NATS_CHART_VERSION)' \
	  --namespace '$(NATS_NAMESPACE)' --create-namespace \
	  --values $(KIND_DIR)/nats-values.yaml --values '$(NATS_AUTH_VALUES)' \
	  --wait --timeout '$(HELM_TIMEOUT)'
	@# Callers' tokens: kind has no identity provider, so the services trust the local stack's
	@# development issuer (.zhike/auth/, made on first use); `zhike token` mints for both.
	$(PYTHON) -c 'from pathlib import Path; from zhike_runtime.auth.development import DevelopmentIssuer; DevelopmentIssuer(Path(".zhike/auth"))'
	kubectl -n '$(ZHIKE_NAMESPACE)' create configmap zhike-jwks --from-file=jwks.json=.zhike/auth/jwks.json \
	  --dry-run=client -o yaml | kubectl apply -f -
	@# Field-encryption keys (identity's ID numbers, phones, e-mails): made once and kept, since
	@# new keys would make stored values unreadable. Through a pipe only, never an argument.
	@if ! kubectl -n '$(ZHIKE_NAMESPACE)' get secret zhike-field-keys >/dev/null 2>&1; then \
	  $(PYTHON) -c 'import json; from zhike_runtime.crypto import generate_key; print("data-keys=" + json.dumps({"k1": generate_key()}), "data-key-id=k1", "blind-index-key=" + generate_key(), sep="\n")' \
	  | kubectl -n '$(ZHIKE_NAMESPACE)' create secret generic zhike-field-keys --from-env-file=/dev/stdin; \
	fi
	@# The notifications service's token for identity and the profile (its party directory),
	@# minted by the same development issuer, through a pipe only. Minted on every deploy: the
	@# pod re-reads the mounted file when the Secret changes.
	$(ZHIKE_CLI) token --state-dir .zhike --role notifications_dispatcher --subject notifications \
	  --ttl $(NOTIFICATIONS_TOKEN_TTL) \
	  | kubectl -n '$(ZHIKE_NAMESPACE)' create secret generic zhike-notifications-token \
	    --from-file=token=/dev/stdin --dry-run=client -o yaml | kubectl apply -f -
	helm upgrade --install cnpg cnpg/cloudnative-pg --version '$(CNPG_CHART_VERSION)' \
	  --namespace '$(CNPG_NAMESPACE)' --create-namespace --wait --timeout '$(HELM_TIMEOUT)'
	@for ns in '$(PG_NAMESPACE)' '$(ZHIKE_NAMESPACE)'; do \
	  kubectl create namespace $$ns --dry-run=client -o yaml | kubectl apply -f - ; \
	done
	@# One role, database and password per service. A password is generated once: an existing
	@# Secret is kept, so re-running deploy never rotates it behind the running pods' back.
	@# Secrets go through stdin, never through command-line arguments.
	@set -e; for svc in $(ZHIKE_SERVICES); do \
	  if kubectl -n '$(ZHIKE_NAMESPACE)' get secret zhike-$$svc-db >/dev/null 2>&1; then \
	    echo "secret $(ZHIKE_NAMESPACE)/zhike-$$svc-db exists, kept"; continue; \
	  fi; \
	  role=zhike_$$svc; \
	  password=$$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'); \
	  printf '%s\n' 'apiVersion: v1' 'kind: Secret' 'type: kubernetes.io/basic-auth' \
	    'metadata:' "  name: pg-role-zhike-$$svc" '  namespace: $(PG_NAMESPACE)' \
	    '  labels: {cnpg.io/reload: "true"}' \
	    'stringData:' "  username: $$role" "  password: $$password" | kubectl apply -f - ; \
	  printf '%s\n' 'apiVersion: v1' 'kind: Secret' 'type: Opaque' \
	    'metadata:' "  name: zhike-$$svc-db" '  namespace: $(ZHIKE_NAMESPACE)' \
	    'stringData:' \
	    "  url: postgresql+asyncpg://$$role:$$password@zhike-pg-rw.$(PG_NAMESPACE).svc.cluster.local:5432/$$role" \
	    | kubectl apply -f - ; \
	done
	kubectl apply -f $(KIND_DIR)/postgres.yaml
	kubectl -n '$(PG_NAMESPACE)' wait --for=condition=Ready cluster/zhike-pg --timeout='$(HELM_TIMEOUT)'
	@# The migration hooks connect at once as each service's role to its database: wait until
	@# CloudNativePG reports every role (with its password) and every database reconciled, not
	@# merely submitted. The role filter needs kubectl >= 1.28.
	@set -e; for svc in $(ZHIKE_SERVICES); do \
	  kubectl -n '$(PG_NAMESPACE)' wait cluster/zhike-pg --timeout='$(HELM_TIMEOUT)' \
	    --for=jsonpath="{.status.managedRolesStatus.byStatus.reconciled[?(@==\"zhike_$$svc\")]}=zhike_$$svc"; \
	done
	kubectl -n '$(PG_NAMESPACE)' wait --for=jsonpath='{.status.applied}'=true --timeout='$(HELM_TIMEOUT)' \
	  $(foreach svc,$(ZHIKE_SERVICES),database/zhike-$(svc))
	helm upgrade --install '$(ZHIKE_RELEASE)' $(CHART_DIR) \
	  --namespace '$(ZHIKE_NAMESPACE)' --values $(KIND_DIR)/zhike-values.yaml \
	  --set image.tag='$(IMAGE_TAG)' --wait --timeout '$(HELM_TIMEOUT)'

deploy-test: deploy-tools-check ## run `helm test`: a gRPC health check of every service in kind
	helm test '$(ZHIKE_RELEASE)' --namespace '$(ZHIKE_NAMESPACE)' --logs

kind-down: deploy-tools-check ## delete the local kind cluster and everything in it
	kind delete cluster --name '$(KIND_CLUSTER)'

$(CHECKOV):
	$(CHECKOV_PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'

scan: $(CHECKOV) ## checkov over the Dockerfile and the chart rendered with default and kind values
	$(PYTHON) -m tests.deploy.chart --out $(RENDERED_DIR)/default
	$(PYTHON) -m tests.deploy.chart --out $(RENDERED_DIR)/kind --values $(KIND_DIR)/zhike-values.yaml
	$(CHECKOV) --skip-download --quiet --compact --framework dockerfile -f $(IMAGE_DOCKERFILE)
	$(CHECKOV) --skip-download --quiet --compact --framework kubernetes -d $(RENDERED_DIR)
