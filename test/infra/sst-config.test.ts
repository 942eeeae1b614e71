import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../core/auth/keys";
import { parseEnv } from "../../core/config";
import { generateEncryptionKey } from "../../core/secret-box";
import { SST_LINKS } from "../../core/sst-links";
import { edgeEnv } from "../../edge/config";
import { functionsEnv } from "../../functions/runtime";
import { findNatsServer } from "../../infra/nats/local-server";
import { workersEnv } from "../../workers/runtime";
import { SHUTDOWN_DEADLINE_MS } from "../../workers/runtime/consumer";
import { readStages } from "./dockerfile";
import { envVarsReadByCode } from "./env-vars";
import {
  FakeOutput,
  installSstStandIns,
  type LoadedConfig,
  type Recorded,
  type SstRun,
  unwrap,
} from "./sst-standins";

// sst.config.ts sin SST: `sst` descarga Pulumi y necesita cuentas de AWS y Cloudflare, imposible
// aquí. SST es una herramienta de nube de terceros, así que esta prueba la SIMULA: instala dobles
// de sus globales (test/infra/sst-standins.ts) que solo anotan qué se construye y con qué
// argumentos, evalúa run() y comprueba el cableado contra el repo (handlers, Dockerfile,
// scripts, variables que lee el código). Los tipos del config los revisa tsc con infra/sst.
// test/infra/sst-edge.test.ts corre en workerd el edge empaquetado como lo empaqueta SST.

let calls: Recorded[] = [];
let routes: SstRun["routes"] = [];
let config: LoadedConfig;
let outputs: Record<string, unknown>;
let standIns: Awaited<ReturnType<typeof installSstStandIns>>;

function one(type: string, name?: string): Recorded {
  const found = calls.filter((c) => c.type === type && (name === undefined || c.name === name));
  expect(found, `${type} ${name ?? ""}`).toHaveLength(1);
  return found[0] as Recorded;
}

/** Nombres de los secretos enlazados a un componente. */
function linkedSecrets(args: Record<string, unknown>): string[] {
  const links = (args.link ?? []) as object[];
  return links.map((link) => {
    const secret = calls.find((c) => c.instance === link && c.type === "sst:sst:Secret");
    expect(secret, "link to something that is not a declared sst.Secret").toBeDefined();
    return secret?.name ?? "";
  });
}

/** Variables que recibe un componente: las de sus links (vía core/sst-links) y `environment`. */
function envOf(args: Record<string, unknown>): Set<string> {
  const fromLinks = linkedSecrets(args).map((n) => SST_LINKS[n as keyof typeof SST_LINKS]);
  return new Set([...fromLinks, ...Object.keys((args.environment ?? {}) as object)]);
}

async function runFor(stage: string): Promise<Record<string, unknown>> {
  ({ calls, routes, outputs } = await standIns.run(stage));
  return outputs;
}

describe("sst.config.ts (evaluated with stand-ins for SST)", () => {
  const known = envVarsReadByCode();

  beforeAll(async () => {
    standIns = await installSstStandIns();
    config = standIns.config;
    outputs = await runFor("production");
  });

  afterAll(() => standIns?.restore());

  it("names the app, keeps production resources, and enables AWS and Cloudflare", () => {
    const prod = config.app({ stage: "production" });
    expect(prod).toEqual(
      expect.objectContaining({
        name: "farutech-orchestrator",
        home: "aws",
        removal: "retain",
        protect: true,
      }),
    );
    expect(prod.providers).toHaveProperty("cloudflare");
    expect(config.app({ stage: "pr-12" })).toEqual(
      expect.objectContaining({ removal: "remove", protect: false }),
    );
  });

  it("declares secrets for the database, NATS credentials, signing keys and encryption keys", () => {
    const secrets = calls.filter((c) => c.type === "sst:sst:Secret").map((c) => c.name);
    expect(secrets).toEqual(
      expect.arrayContaining([
        "DatabaseUrl",
        "EdgeDatabaseUrl",
        "NatsUrl",
        "NatsWsUrl",
        "NatsToken",
        "AuthSigningKeys",
        "EncryptionKeys",
      ]),
    );
    // Cada secreto tiene su variable en core/sst-links.ts, y esa variable la lee el código.
    for (const name of secrets) {
      const variable = SST_LINKS[name as keyof typeof SST_LINKS];
      expect(variable, `${name} is not in SST_LINKS`).toBeDefined();
      expect(known.has(variable), variable).toBe(true);
    }
  });

  it("runs the admin functions as a Lambda behind an HTTP API, with its secrets by link", () => {
    one("sst:aws:ApiGatewayV2");
    expect(routes).toHaveLength(1);
    const route = routes[0];
    expect(route?.route).toBe("$default");
    const handler = String(route?.handler.handler);
    const [file, exported] = handler.split(".");
    const source = readFileSync(`${file}.ts`, "utf8");
    expect(source).toMatch(new RegExp(`export const ${exported}\\b`));
    const env = envOf(route?.handler ?? {});
    for (const v of ["DATABASE_URL", "NATS_WS_URL", "ENCRYPTION_KEYS", "AUTH_ISSUER"])
      expect(env, v).toContain(v);
    expect(env.has("AUTH_JWKS_URL") || env.has("AUTH_PUBLIC_JWKS")).toBe(true);
    expect(linkedSecrets(route?.handler ?? {})).not.toContain("AuthSigningKeys");
    for (const v of env) expect(known.has(v), v).toBe(true);
  });

  it("runs the edge as a Cloudflare Worker that issues tokens the functions verify", () => {
    const edge = one("sst:cloudflare:Worker", "Edge");
    const handler = String(edge.args.handler);
    expect(existsSync(handler)).toBe(true);
    expect(readFileSync(handler, "utf8")).toMatch(/export default \{[\s\S]*fetch\(/);
    // Su propia base: el usuario del edge (rol farutech_edge), no el dueño de las tablas.
    expect(linkedSecrets(edge.args).sort()).toEqual(["AuthSigningKeys", "EdgeDatabaseUrl"]);
    const env = envOf(edge.args);
    for (const v of env) expect(known.has(v), v).toBe(true);
    // El issuer del edge es su dominio; las funciones verifican contra el JWKS de ese dominio.
    const issuer = (edge.args.environment as Record<string, string>).AUTH_ISSUER;
    expect(issuer).toBe(`https://${String(edge.args.domain)}`);
    const lambdaEnv = routes[0]?.handler.environment as Record<string, string>;
    expect(lambdaEnv.AUTH_ISSUER).toBe(issuer);
    expect(lambdaEnv.AUTH_JWKS_URL).toBe(`${issuer}/.well-known/jwks.json`);
    expect(readFileSync("edge/routes/well-known.ts", "utf8")).toContain("/.well-known/jwks.json");
  });

  it("publishes the edge with the compatibility date of edge/wrangler.toml, plus nodejs_compat for SST's wrapper", async () => {
    const edge = one("sst:cloudflare:Worker", "Edge");
    const transform = (edge.args.transform as { worker?: (args: object) => void } | undefined)
      ?.worker;
    expect(transform, "transform.worker").toBeTypeOf("function");
    // Otros valores (SST trae 2024-04-04), que el transform debe reemplazar.
    const script: Record<string, unknown> = {
      compatibilityDate: "2024-04-04",
      compatibilityFlags: ["nodejs_als"],
    };
    transform?.(script);
    const { unstable_readConfig } = await import("wrangler");
    const wrangler = unstable_readConfig({ config: "edge/wrangler.toml" });
    expect(script.compatibilityDate).toBe(wrangler.compatibility_date);
    // Más nodejs_compat: el envoltorio de SST importa node:process y node:crypto.
    expect(script.compatibilityFlags).toEqual([...wrangler.compatibility_flags, "nodejs_compat"]);
  });

  it("runs the workers as a container Service on a Cluster, built from the Dockerfile's worker target", () => {
    const vpc = one("sst:aws:Vpc");
    const cluster = one("sst:aws:Cluster");
    expect(cluster.args.vpc).toBe(vpc.instance);
    const service = one("sst:aws:Service", "Workers");
    expect(service.args.cluster).toBe(cluster.instance);
    const image = service.args.image as { context: string; dockerfile: string; target: string };
    expect(existsSync(image.dockerfile)).toBe(true);
    expect(readStages(image.dockerfile).map((s) => s.name)).toContain(image.target);
    expect(image.target).toBe("worker");
    const env = envOf(service.args);
    for (const v of ["DATABASE_URL", "NATS_URL", "ENCRYPTION_KEYS", "METRICS_PORT"])
      expect(env, v).toContain(v);
    for (const v of env) expect(known.has(v), v).toBe(true);
    expect(linkedSecrets(service.args)).not.toContain("AuthSigningKeys");
    // Los correos (bienvenida, fallos, alertas de la DLQ) necesitan su SMTP.
    expect(linkedSecrets(service.args)).toContain("SmtpUrl");
    const health = (service.args.health as { command: string[] }).command.join(" ");
    const port = (service.args.environment as Record<string, string>).METRICS_PORT;
    expect(health).toContain(`http://127.0.0.1:${port}/healthz`);
  });

  // Los nombres no bastan: un valor que el esquema del componente rechaza ("1e3", un tope
  // superado) lo deja sin arrancar (workers en bucle de reinicios, edge en 500). Con valores de
  // ejemplo válidos para cada link, el entorno entero de cada componente pasa por su esquema.
  it("gives each component an environment its own schema accepts, NATS token included", async () => {
    const linkValues: Record<string, string> = {
      DATABASE_URL: "postgres://farutech@db.example.com/farutech?sslmode=require",
      NATS_URL: "nats://nats.example.com:4222",
      NATS_WS_URL: "wss://nats.example.com",
      NATS_TOKEN: "nats_example",
      AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("sst-test")]),
      ENCRYPTION_KEYS: JSON.stringify([generateEncryptionKey("sst-test")]),
      SMTP_URL: "smtp://user:pass@smtp.example.com:587",
    };
    const envFor = (args: Record<string, unknown>) => {
      const env: Record<string, string> = {};
      for (const name of linkedSecrets(args)) {
        const variable = SST_LINKS[name as keyof typeof SST_LINKS];
        env[variable] = linkValues[variable] ?? "";
      }
      for (const [k, v] of Object.entries((args.environment ?? {}) as object))
        env[k] = String(unwrap(v));
      return env;
    };
    const lambda = routes[0]?.handler ?? {};
    const workers = one("sst:aws:Service", "Workers").args;
    const edge = one("sst:cloudflare:Worker", "Edge").args;
    expect(() => parseEnv(functionsEnv, envFor(lambda))).not.toThrow();
    expect(() => parseEnv(workersEnv, envFor(workers))).not.toThrow();
    expect(() => parseEnv(edgeEnv, envFor(edge))).not.toThrow();
    // NATS exige token (infra/nats): quien publica o consume lo necesita.
    expect(linkedSecrets(lambda)).toContain("NatsToken");
    expect(linkedSecrets(workers)).toContain("NatsToken");
  });

  it("`sst dev` runs the workers locally with an npm script that exists", () => {
    const service = one("sst:aws:Service", "Workers");
    const command = (service.args.dev as { command: string }).command;
    const scripts = (JSON.parse(readFileSync("package.json", "utf8")) as { scripts: object })
      .scripts;
    const script = /^npm run (\S+)$/.exec(command)?.[1] ?? "";
    expect(scripts).toHaveProperty(script);
  });

  it("gives ECS more time to stop a worker than its 30 s drain", () => {
    const service = one("sst:aws:Service", "Workers");
    const transform = (
      service.args.transform as {
        taskDefinition: (args: { containerDefinitions: unknown }) => void;
      }
    ).taskDefinition;
    const args = {
      containerDefinitions: new FakeOutput(JSON.stringify([{ name: "Workers", image: "x" }])),
    };
    transform(args);
    const defs = JSON.parse(String(unwrap(args.containerDefinitions))) as {
      stopTimeout: number;
    }[];
    expect(defs[0]?.stopTimeout).toBeGreaterThan(30);
    // El plazo que cumple workers/main.ts (sale pase lo que pase): el orquestador espera más.
    expect(SHUTDOWN_DEADLINE_MS).toBe(30_000);
  });

  it("`sst dev` starts a local nats-server with JetStream and WebSocket, and the migrations", () => {
    const nats = one("sst:x:DevCommand", "Nats");
    const natsCommand = (nats.args.dev as { command: string }).command.split(" ");
    expect(natsCommand[0]).toBe("nats-server");
    const conf = natsCommand[natsCommand.indexOf("-c") + 1] ?? "";
    expect(readFileSync(conf, "utf8")).toMatch(/jetstream[\s\S]*websocket/);
    // La línea de órdenes entera es una configuración válida (-t solo la comprueba, no escucha).
    const check = spawnSync(findNatsServer(), [...natsCommand.slice(1), "-t"], {
      encoding: "utf8",
    });
    expect(check.stderr + check.stdout).not.toMatch(/error|duplicate/i);
    expect(check.status).toBe(0);
    const migrate = one("sst:x:DevCommand", "Migrate");
    expect((migrate.args.dev as { command: string }).command).toBe("npm run db:migrate");
    expect(linkedSecrets(migrate.args)).toEqual(["DatabaseUrl"]);
  });

  it("returns the API and edge URLs, and names a stage's edge after the stage", async () => {
    expect(Object.keys(outputs).sort()).toEqual(["adminApi", "edge"]);
    await runFor("pr-12");
    const edge = one("sst:cloudflare:Worker", "Edge");
    expect(String(edge.args.domain)).toContain("pr-12");
    outputs = await runFor("production");
  });

  it("type-checks against the declared SST globals (tsc -p infra/sst)", () => {
    expect(() =>
      execFileSync("node_modules/.bin/tsc", ["-p", "infra/sst/tsconfig.json", "--noEmit"], {
        encoding: "utf8",
      }),
    ).not.toThrow();
  });
});
