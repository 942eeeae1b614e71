import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { eq } from "drizzle-orm";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../core/auth/keys";
import { generateEncryptionKey } from "../../core/secret-box";
import { verifySecret } from "../../core/secret-hash";
import { apiClients } from "../../db/schema";
import { startWsProxy } from "../../infra/wsproxy/wsproxy";
import { type BuildResult, buildBundles } from "../../scripts/build";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { bundleEdge } from "../support/edge";
import { startNatsForTest, waitFor } from "../support/stack";
import { args, readStages, stageNamed } from "./dockerfile";

// `npm run build` de verdad y los bundles corriendo con `node` (sin tsx), como en las imágenes,
// contra el Postgres de las pruebas y un nats-server propio.
// El directorio de salida queda dentro del repo para que `node` resuelva node_modules.
const outdir = resolve(".data", `build-test-${process.pid}`);
const WRANGLER_BIN = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");

interface Run {
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

function runBundle(file: string, env: Record<string, string>, args: string[] = []): Run {
  const { DATABASE_URL: _d, NATS_URL: _n, NATS_WS_URL: _w, ...inherited } = process.env;
  const child = spawn(process.execPath, [join(outdir, file), ...args], {
    env: { ...inherited, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exit = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
  return { child, output: () => output, exit };
}

async function okAt(url: string): Promise<true | undefined> {
  const res = await fetch(url).catch(() => undefined);
  return res?.ok ? true : undefined;
}

describe("npm run build bundles", () => {
  let built: BuildResult;
  let db: TestDatabase;
  let nats: Awaited<ReturnType<typeof startNatsForTest>>;
  const running: Run[] = [];

  beforeAll(async () => {
    built = await buildBundles(outdir);
    db = await createPostgresTestDatabase();
    nats = await startNatsForTest();
  });

  afterAll(async () => {
    for (const r of running) r.child.kill("SIGKILL");
    await nats?.dispose();
    await db?.drop();
    rmSync(outdir, { recursive: true, force: true });
  });

  it("produces one bundle per entry point plus the migrations, from directories the Dockerfile copies", () => {
    for (const file of built.files) expect(existsSync(file)).toBe(true);
    expect(existsSync(join(outdir, "migrations", "meta", "_journal.json"))).toBe(true);
    // La etapa build del Dockerfile copia cada carpeta del repo que entra en un bundle.
    const copied = stageNamed(readStages(), "build")
      .instructions.filter((i) => i.getKeyword() === "COPY")
      .flatMap((i) => args(i).slice(0, -1));
    const sources = built.inputs.filter((i) => !i.startsWith("node_modules/"));
    expect(new Set(sources.map((i) => i.split("/")[0])).size).toBeGreaterThan(2);
    // La carpeta entera o el archivo por su nombre (de scripts/ solo van los que se empaquetan).
    for (const source of sources)
      expect(
        copied.includes(source.split("/")[0] ?? "") || copied.includes(source),
        `Dockerfile build stage misses ${source}`,
      ).toBe(true);
  });

  it("the edge image's entry point imports no npm package (that image has only wrangler)", () => {
    const code = readFileSync(join(outdir, "edge-container.js"), "utf8");
    const specifiers = [...code.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    expect(specifiers.length).toBeGreaterThan(0);
    expect(specifiers.filter((s) => !s?.startsWith("node:"))).toEqual([]);
  });

  it("the edge image's entry point runs wrangler dev with the edge's settings in a private file, none on a command line", {
    timeout: 90_000,
  }, async () => {
    const bundle = bundleEdge();
    const proxy = await startWsProxy();
    try {
      const key = await generateSigningKey("edge-container-1");
      const port = await getPort();
      const edgeUrl = db.edgeUrl ?? "";
      const secrets = [key.d, new URL(edgeUrl).password];
      // Falta una obligatoria: una línea que la nombra, código 2, sin lanzar wrangler.
      const missing = runBundle("edge-container.js", { DATABASE_URL: edgeUrl });
      expect(await missing.exit).toBe(2);
      expect(missing.output()).toContain("AUTH_ISSUER");
      expect(missing.output()).not.toMatch(/\n\s+at /);

      const run = spawn(
        process.execPath,
        [join(outdir, "edge-container.js"), process.execPath, WRANGLER_BIN],
        {
          cwd: bundle.dir,
          env: {
            ...process.env,
            DATABASE_URL: edgeUrl,
            NEON_WSPROXY: proxy.url,
            AUTH_SIGNING_KEYS: JSON.stringify([key]),
            AUTH_ISSUER: "http://edge.container",
            EDGE_PORT: String(port),
            LOG_LEVEL: "warn",
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      // Lo que dijeron edge-container y wrangler: si no arranca, la falla lo muestra.
      let output = "";
      for (const stream of [run.stdout, run.stderr]) {
        stream?.on("data", (chunk: Buffer) => {
          output = (output + chunk.toString()).slice(-4_000);
        });
      }
      const exit = new Promise<number | null>((res) => run.on("exit", (code) => res(code)));
      try {
        const jwks = await waitFor(
          async () => {
            // Si terminó antes de responder, no hay nada que esperar.
            if (run.exitCode !== null || run.signalCode !== null) {
              throw new Error(
                `edge-container exited (${run.exitCode ?? run.signalCode}):\n${output}`,
              );
            }
            const res = await fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`).catch(
              () => undefined,
            );
            return res?.ok ? ((await res.json()) as { keys: { kid: string }[] }) : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 200 },
        ).catch((err: unknown) => {
          throw new Error(`${String(err)}; output:\n${output}`);
        });
        expect(jwks.keys.map((k) => k.kid)).toContain("edge-container-1");
        // Y llega a la base con el usuario del edge (la migración 0028 le da lo que usa).
        const token = await fetch(`http://127.0.0.1:${port}/oauth/token`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "grant_type=client_credentials&client_id=nobody&client_secret=nothing",
        });
        expect(token.status).toBe(401);
        // Ninguna línea de órdenes de la máquina lleva la clave privada ni la contraseña.
        const cmdlines = readdirSync("/proc")
          .filter((d) => /^\d+$/.test(d))
          .map((pid) => {
            try {
              return readFileSync(`/proc/${pid}/cmdline`, "utf8");
            } catch {
              return "";
            }
          });
        const envFile = cmdlines
          .map((c) => c.split("\0"))
          .find((argv) => argv.includes("--env-file") && argv.includes(String(port)));
        expect(envFile, "wrangler dev runs with --env-file").toBeDefined();
        for (const secret of secrets) {
          expect(secret?.length).toBeGreaterThan(10);
          expect(cmdlines.some((c) => c.includes(secret ?? ""))).toBe(false);
        }
        const file = envFile?.[envFile.indexOf("--env-file") + 1] ?? "";
        expect(statSync(file).mode & 0o777).toBe(0o600);
        run.kill("SIGTERM");
        await exit;
        expect(existsSync(file)).toBe(false);
      } finally {
        // SIGTERM primero: edge-container lo pasa a wrangler; un SIGKILL directo dejaba wrangler y
        // workerd huérfanos (girando) si una aserción fallaba antes de pararlo.
        if (run.exitCode === null && run.signalCode === null) {
          run.kill("SIGTERM");
          await Promise.race([exit, new Promise((r) => setTimeout(r, 10_000))]);
        }
        run.kill("SIGKILL");
      }
    } finally {
      await proxy.close();
      bundle.remove();
    }
  });

  it("imports at run time only production dependencies (the images install no others)", () => {
    const { dependencies } = JSON.parse(readFileSync("package.json", "utf8")) as {
      dependencies: Record<string, string>;
    };
    expect(built.packages).toContain("hono");
    expect(built.packages.filter((p) => !(p in dependencies))).toEqual([]);
  });

  it("db-cli migrates a Postgres database from the bundled migrations", async () => {
    const run = runBundle("db-cli.js", { DATABASE_URL: db.url ?? "" }, ["migrate"]);
    expect(await run.exit, run.output()).toBe(0);
    expect(run.output()).toContain("migrations applied");
    // Como la corre `sst dev` (DevCommand Migrate): la base llega como link.
    const linked = runBundle(
      "db-cli.js",
      { SST_RESOURCE_DatabaseUrl: JSON.stringify({ value: db.url }) },
      ["migrate"],
    );
    expect(await linked.exit, linked.output()).toBe(0);
    expect(linked.output()).toContain('"driver":"node-postgres"');
  });

  // Rotar la clave de cifrado desde la imagen (ECS, Kubernetes) o con los links de SST: antes el
  // reseal solo existía con el repo y tsx, y leía ENCRYPTION_KEYS y DATABASE_URL a mano.
  it("reseal-secrets counts sealed secrets from the image, with settings given as SST links", async () => {
    const keys = JSON.stringify([generateEncryptionKey("build-test")]);
    const run = runBundle(
      "reseal-secrets.js",
      {
        SST_RESOURCE_DatabaseUrl: JSON.stringify({ value: db.url }),
        SST_RESOURCE_EncryptionKeys: JSON.stringify({ value: keys }),
      },
      ["--check"],
    );
    expect(await run.exit, run.output()).toBe(0);
    expect(run.output()).toContain("would reseal 0 secret(s) with key build-test");
  });

  it("functions-cli creates the first admin client of a new deployment and prints its secret once", async () => {
    const run = runBundle("functions-cli.js", { DATABASE_URL: db.url ?? "" }, ["ops bootstrap"]);
    expect(await run.exit, run.output()).toBe(0);
    const created = JSON.parse(run.output()) as {
      clientId: string;
      clientSecret: string;
      roles: string[];
    };
    expect(created.roles).toEqual(["platform_admin"]);
    const [row] = await db.handle.db
      .select()
      .from(apiClients)
      .where(eq(apiClients.clientId, created.clientId));
    expect(row && (await verifySecret(created.clientSecret, row.secretHash))).toBe(true);
    const bad = runBundle("functions-cli.js", { DATABASE_URL: db.url ?? "" }, ["x", "root"]);
    expect(await bad.exit).toBe(2);
  });

  it("the admin functions fail fast and name the missing setting", async () => {
    const run = runBundle("functions-server.js", { DATABASE_URL: db.url ?? "" });
    expect(await run.exit).not.toBe(0);
    expect(run.output()).toContain("NATS_WS_URL");
  });

  it("the admin functions serve /healthz and /readyz, and stop on SIGTERM", {
    timeout: 60_000,
  }, async () => {
    const port = await getPort();
    const run = runBundle("functions-server.js", {
      DATABASE_URL: db.url ?? "",
      NATS_WS_URL: nats.wsUrl,
      AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("build-test")]),
      PORT: String(port),
    });
    running.push(run);
    await waitFor(() => okAt(`http://127.0.0.1:${port}/healthz`), { timeoutMs: 30_000 });
    await waitFor(() => okAt(`http://127.0.0.1:${port}/readyz`), { timeoutMs: 30_000 });
    run.child.kill("SIGTERM");
    expect(await run.exit, run.output()).toBe(0);
  });

  it("the workers take their secrets from SST links, serve health and metrics, and drain on SIGTERM", {
    timeout: 60_000,
  }, async () => {
    const port = await getPort();
    // Como los pasa SST a un Service de ECS: SST_RESOURCE_<link> con JSON `{"value": …}`.
    const run = runBundle("workers.js", {
      SST_RESOURCE_DatabaseUrl: JSON.stringify({ type: "sst.sst.Secret", value: db.url }),
      SST_RESOURCE_NatsUrl: JSON.stringify({ type: "sst.sst.Secret", value: nats.url }),
      METRICS_PORT: String(port),
    });
    running.push(run);
    await waitFor(() => okAt(`http://127.0.0.1:${port}/healthz`), { timeoutMs: 30_000 });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain("farutech_worker_messages_processed_total");
    // Lo que espera en la base, leído por el proceso desplegado (outbox y DLQ).
    expect(metrics).toContain('farutech_outbox_events{state="unpublished"}');
    expect(metrics).toContain('farutech_dlq_entries_unreplayed{domain="provisioning"} 0');
    run.child.kill("SIGTERM");
    expect(await run.exit, run.output()).toBe(0);
    expect(run.output()).toContain("workers draining");
  });
});
