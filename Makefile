# Objetivos del seed 001 adaptados a este stack (Node/TypeScript, Docker, SST).
# Los que llevan «Docker» necesitan un motor Docker; el resto corre en cualquier máquina con Node.
# Los comprueba test/infra/makefile.test.ts con `make -n`.

IMAGE_PREFIX ?= farutech
TAG ?= latest
# Compose v2 (`docker compose`) por defecto; con el paquete de Debian: make docker-up COMPOSE=docker-compose
COMPOSE ?= docker compose
EDGE_OUT ?= dist/edge
DOCKERFILE := infra/docker/Dockerfile
# Todos los benchmarks: cada script `bench:*` de package.json (se lee al usarlo).
BENCH_SCRIPTS = $(shell node -p "Object.keys(require('./package.json').scripts).filter((s) => s.startsWith('bench:')).join(' ')")

.PHONY: build build-functions build-edge build-worker docker-up docker-down migrate-db seed-demo dev test bench check

## Bundles de Node en dist/ (esbuild), lo mismo que hace la etapa build de las imágenes.
build:
	npm run build

## Docker: imagen de las funciones admin (seed: build-core).
build-functions:
	docker build -f $(DOCKERFILE) --target functions -t $(IMAGE_PREFIX)/functions:$(TAG) .

## Bundle del Worker de Cloudflare (lo que sube `sst deploy`/`wrangler deploy`), sin desplegar.
## Ruta absoluta: wrangler resuelve un --outdir relativo contra la carpeta de --config (edge/).
build-edge:
	npx wrangler deploy --dry-run --config edge/wrangler.toml --outdir $(abspath $(EDGE_OUT))

## Docker: imagen de los workers.
build-worker:
	docker build -f $(DOCKERFILE) --target worker -t $(IMAGE_PREFIX)/worker:$(TAG) .

## Docker: todo el sistema local (genera .env con claves nuevas la primera vez).
docker-up:
	test -f .env || npm run -s keys:generate -- all > .env
	$(COMPOSE) up -d --build

## Docker: detiene el stack (los volúmenes quedan; `$(COMPOSE) down -v` los borra).
docker-down:
	$(COMPOSE) down

## Migraciones contra DATABASE_URL (sin ella, PGlite en .data/pglite).
migrate-db:
	npm run db:migrate

## Datos de demo idempotentes (3 productos, 5 clientes, 10 instancias).
seed-demo:
	npm run db:seed

## Todo el sistema en esta máquina, modo embebido.
dev:
	npm start

test:
	npm test

bench:
	$(foreach script,$(BENCH_SCRIPTS),npm run $(script) &&) true

check:
	npm run check
