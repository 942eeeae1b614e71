import { spawn } from "node:child_process";
import { pathToFileURL } from "node:url";
import { ConfigError, invalidConfiguration } from "../core/config-error";
import { dotenvFile, writePrivateEnvFile } from "./env-file";

// Entrada de la imagen del edge (docker-compose): `wrangler dev` sobre el bundle, con las
// variables del edge en un `--env-file` 0600 y no con `--var` en la línea de órdenes, que se ve con
// `ps` dentro del contenedor y desde el host. Sin dependencias de npm: la imagen solo trae wrangler.
// Uso: node dist/edge-container.js [orden de wrangler…]   (por defecto `wrangler`, el global).

const EDGE_CONTAINER_VARS = ["DATABASE_URL", "NEON_WSPROXY", "LOG_LEVEL"] as const;

/**
 * ¿La lee el edge? Las de arriba y todas las AUTH_* y ENTITLEMENTS_* (edge/config.ts): una que se
 * ponga en el servicio (p. ej. AUTH_ACCESS_TOKEN_TTL) no debe perderse por el camino sin avisar.
 */
export function isEdgeVar(name: string): boolean {
  return (
    (EDGE_CONTAINER_VARS as readonly string[]).includes(name) ||
    /^(?:AUTH|ENTITLEMENTS)_[A-Z0-9_]+$/.test(name)
  );
}
const REQUIRED = ["DATABASE_URL", "AUTH_SIGNING_KEYS", "AUTH_ISSUER"] as const;

/** La fecha de compatibilidad de edge/wrangler.toml (la imagen no lleva el toml). */
export const EDGE_COMPATIBILITY_DATE = "2025-09-01";

export function edgeContainerArgs(envFile: string, port: string): string[] {
  return [
    "dev",
    "worker.js",
    "--no-bundle",
    "--name",
    "farutech-edge",
    "--compatibility-date",
    EDGE_COMPATIBILITY_DATE,
    "--ip",
    "0.0.0.0",
    "--port",
    port,
    "--env-file",
    envFile,
  ];
}

/** Las variables del edge presentes en `env`; falta una obligatoria → ConfigError que la nombra. */
export function edgeVars(env: NodeJS.ProcessEnv): Record<string, string> {
  const missing = REQUIRED.filter((name) => !env[name]);
  if (missing.length > 0) {
    throw invalidConfiguration(missing.map((name) => [name, "is required by the edge"]));
  }
  return Object.fromEntries(
    Object.entries(env).flatMap(([name, value]) =>
      value && isEdgeVar(name) ? [[name, value]] : [],
    ),
  );
}

function log(level: "info" | "error", msg: string, extra: Record<string, unknown> = {}) {
  process.stderr.write(
    `${JSON.stringify({ level, time: new Date().toISOString(), service: "edge-container", msg, ...extra })}\n`,
  );
}

function main() {
  const [command = "wrangler", ...prefix] = process.argv.slice(2);
  const envFile = writePrivateEnvFile(dotenvFile(edgeVars(process.env)));
  process.once("exit", () => envFile.remove());
  // Solo el archivo define las variables del edge; el entorno de wrangler no las lleva.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
  };
  for (const name of Object.keys(env)) if (isEdgeVar(name)) delete env[name];
  const port = process.env.EDGE_PORT || "8787";
  const child = spawn(command, [...prefix, ...edgeContainerArgs(envFile.path, port)], {
    stdio: "inherit",
    env,
  });
  log("info", "starting wrangler dev", { port });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  child.on("error", (err) => {
    log("error", "wrangler could not start", { error: err.message });
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    envFile.remove();
    process.exit(code ?? (signal ? 0 : 1));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (err) {
    // Un error de configuración se explica en una línea, sin traza.
    log("error", err instanceof ConfigError ? err.message : String(err));
    process.exit(2);
  }
}
