import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join, parse, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildOptions, build } from "esbuild";
import { type Unstable_DevWorker, unstable_dev } from "wrangler";
import { generateSigningKey } from "../../core/auth/keys";
import { type AccessClaims, createTokenSigner } from "../../core/auth/tokens";
import type { Database } from "../../db/types";
import { createNodeEdgeApp } from "../../edge/node";
import { captureLogs } from "./logs";

export type EdgeFetch = (path: string, init?: RequestInit) => Promise<Response>;

export interface EdgeTarget {
  fetch: EdgeFetch;
  stop(): Promise<void>;
}

/** El edge en Node, en proceso, sobre la base dada (modo embebido). */
export async function startNodeEdge(
  env: Record<string, string>,
  db: Database,
): Promise<EdgeTarget> {
  // Logs revisados (claves repetidas hacen fallar la prueba), no mostrados.
  const app = await createNodeEdgeApp(env, db, captureLogs("edge-test").logger);
  return { fetch: async (path, init) => app.request(path, init), stop: async () => {} };
}

/**
 * El edge dentro de workerd (wrangler unstable_dev). `env` necesita DATABASE_URL y NEON_WSPROXY:
 * llega a Postgres por WebSocket a través del proxy wsproxy, como llegaría a Neon.
 */
export async function startWorkerdEdge(env: Record<string, string>): Promise<EdgeTarget> {
  const worker: Unstable_DevWorker = await unstable_dev(
    fileURLToPath(new URL("../../edge/worker.ts", import.meta.url)),
    {
      config: fileURLToPath(new URL("../../edge/wrangler.toml", import.meta.url)),
      vars: env,
      ip: "127.0.0.1",
      persist: false,
      logLevel: "error",
      experimental: { disableExperimentalWarning: true, testMode: true },
    },
  );
  return {
    fetch: (path, init) =>
      worker.fetch(
        path,
        init as Parameters<Unstable_DevWorker["fetch"]>[1],
      ) as unknown as Promise<Response>,
    stop: () => worker.stop(),
  };
}

export interface EdgeTestSigning {
  /** Variables del edge que fijan la clave y el emisor. */
  env: { AUTH_SIGNING_KEYS: string; AUTH_ISSUER: string };
  /** Firma un access token; por defecto platform_admin sin tenant. */
  sign(claims?: Partial<AccessClaims>): Promise<string>;
}

/** Una clave de firma nueva y un firmador de tokens para el edge de una prueba. */
export async function edgeTestSigning(kid: string, issuer: string): Promise<EdgeTestSigning> {
  const key = await generateSigningKey(kid);
  const signer = await createTokenSigner([key], {
    issuer,
    audience: "farutech-orchestrator",
    accessTokenTtlSeconds: 600,
  });
  return {
    env: { AUTH_SIGNING_KEYS: JSON.stringify([key]), AUTH_ISSUER: issuer },
    sign: async (claims = {}) =>
      (
        await signer.sign({
          sub: kid,
          tenant_id: null,
          instance_ids: [],
          roles: ["platform_admin"],
          ...claims,
        })
      ).token,
  };
}

/** Compatibilidad con la que corren los bundles fuera de wrangler (la de edge/wrangler.toml). */
export { EDGE_COMPATIBILITY_DATE } from "../../scripts/edge-container";

export interface WorkerBundle {
  dir: string;
  /** El módulo de entrada que `wrangler deploy` subiría. */
  script: string;
  remove(): void;
}

/**
 * Empaqueta un worker exactamente como lo sube `wrangler deploy` (`--dry-run --outdir`), para
 * correrlo en workerd con Miniflare sin el proxy Node de `wrangler dev` delante. Sin `entry`
 * usa el `main` del `--config` dado en `args`.
 */
export function bundleWorker(entry: string, args: string[]): WorkerBundle {
  const dir = mkdtempSync(join(tmpdir(), "farutech-edge-bundle-"));
  const wrangler = fileURLToPath(
    new URL("../../node_modules/wrangler/bin/wrangler.js", import.meta.url),
  );
  execFileSync(
    process.execPath,
    [wrangler, "deploy", "--dry-run", "--outdir", dir, ...args, entry].filter(Boolean),
    { stdio: "ignore", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  const script = readdirSync(dir).find((f) => f.endsWith(".js"));
  if (!script) throw new Error(`wrangler produced no bundle for ${entry || args.join(" ")}`);
  return {
    dir,
    script: join(dir, script),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** El bundle del edge tal como se despliega. */
export function bundleEdge(): WorkerBundle {
  const config = fileURLToPath(new URL("../../edge/wrangler.toml", import.meta.url));
  return bundleWorker("", ["--config", config]);
}

/**
 * Cómo empaqueta SST un `sst.cloudflare.Worker` (platform/src/runtime/cloudflare.ts de sst/sst):
 * esbuild para Node con estas opciones, luego `build.esbuild` del componente encima, los módulos
 * de Node como externos `node:*` y el handler envuelto con `wrapCloudflareHandler` del SDK.
 * Dos versiones de SST difieren en `conditions`; `sstConditions` elige cuál.
 */
export const SST_WORKER_CONDITIONS = {
  v3: ["workerd", "worker", "browser"],
  later: ["worker"],
} as const;

/**
 * Doble del `wrapCloudflareHandler` del SDK `sst` (no se instala: arrastra aws-sdk y el binario
 * de SST). Hace lo mismo: pasa los bindings a `Resource` y llama al handler. Como el del SDK,
 * importa node:process y node:crypto: por eso el worker desplegado necesita nodejs_compat.
 */
const SST_WRAPPER_STAND_IN = `
import { env } from "node:process";
import { createDecipheriv } from "node:crypto";
export const Resource = { ...env };
void createDecipheriv;
function fromCloudflareEnv(input) {
  for (let [key, value] of Object.entries(input)) {
    if (typeof value === "string") {
      try { value = JSON.parse(value); } catch {}
    }
    Resource[key] = value;
  }
}
export function wrapCloudflareHandler(handler) {
  const result = {};
  for (const [key, fn] of Object.entries(handler)) {
    result[key] = (req, env, ...rest) => {
      fromCloudflareEnv(env);
      return fn(req, env, ...rest);
    };
  }
  return result;
}
`;

/** Empaqueta `handler` como lo haría SST con el `build.esbuild` dado (el de sst.config.ts). */
export async function bundleWorkerAsSst(
  handler: string,
  esbuildOverrides: BuildOptions = {},
  sstConditions: keyof typeof SST_WORKER_CONDITIONS = "v3",
): Promise<WorkerBundle> {
  const dir = mkdtempSync(join(tmpdir(), "farutech-sst-bundle-"));
  const wrapper = join(dir, "sst-wrapper.mjs");
  writeFileSync(wrapper, SST_WRAPPER_STAND_IN);
  const entry = parse(resolve(handler));
  const builtins = new Set(builtinModules);
  const script = join(dir, "out", "index.mjs");
  await build({
    stdin: {
      contents: [
        `import handler from ${JSON.stringify(join(entry.dir, entry.name))};`,
        `import { wrapCloudflareHandler } from ${JSON.stringify(wrapper)};`,
        "export default wrapCloudflareHandler(handler);",
      ].join("\n"),
      loader: "ts",
      resolveDir: entry.dir,
    },
    platform: "node",
    keepNames: true,
    bundle: true,
    logLevel: "silent",
    format: "esm",
    target: "esnext",
    mainFields: ["module", "main"],
    outfile: script,
    sourcemap: false,
    conditions: [...SST_WORKER_CONDITIONS[sstConditions]],
    ...esbuildOverrides,
    plugins: [
      {
        name: "node-prefix",
        setup(b) {
          b.onResolve({ filter: /.*/ }, (args) =>
            builtins.has(args.path) ? { path: `node:${args.path}`, external: true } : undefined,
          );
        },
      },
      ...(esbuildOverrides.plugins ?? []),
    ],
    external: [...(esbuildOverrides.external ?? []), "cloudflare:workers"],
  });
  return {
    dir: join(dir, "out"),
    script,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** POST form-encoded, como piden /oauth/token y /oauth/revoke. */
export function formPost(values: Record<string, string>, headers: Record<string, string> = {}) {
  return {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(values).toString(),
  };
}
