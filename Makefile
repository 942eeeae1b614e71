# Objetivos del seed 001 adaptados a este stack.
.PHONY: build-functions build-edge build-worker docker-up docker-down migrate-db seed-demo dev test bench check

build-functions:
	docker build -f infra/docker/Dockerfile --target functions -t farutech/functions .

build-edge:
	npx wrangler deploy --dry-run --config edge/wrangler.toml --outdir dist/edge

build-worker:
	docker build -f infra/docker/Dockerfile --target worker -t farutech/worker .

docker-up:
	docker compose up -d --build

docker-down:
	docker compose down

migrate-db:
	npm run db:migrate

seed-demo:
	npm run db:seed

dev:
	npm start

test:
	npm test

check:
	npm run check

bench:
	@echo "Los benchmarks llegan con sus issues (npm run bench:admin, bench:pipeline, bench:edge)."
