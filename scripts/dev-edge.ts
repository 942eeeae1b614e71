import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { z } from "zod";
import { spawnTiedToParent } from "../core/child";
import { cliLogger, failCli } from "../core/cli";
import { envNumber, parseEnv } from "../core/config";
import { startWsProxy } from "../infra/wsproxy/wsproxy";
import { ensureLocalSigningKeys } from "./dev-credentials";
import { isEdgeVar } from "./edge-container";
import { dotenvFile, writePrivateEnvFile } from "./env-file";

export { dotenvFile, writePrivateEnvFile };

// `npm run dev:edge`: el edge dentro de workerd (wrangler dev) contra un Postgres real,
// alcanzado como se alcanza Neon: WebSocket a través de un proxy wsproxy local.

const devEdgeEnv = z.object({
  EDGE_PORT: envNumber(z.number().int().min(1).max(65_535).default(8787)),
  // 0: un puerto libre cualquiera.
  WSPROXY_PORT: envNumber(z.number().int().min(0).max(65_535).default(0)),
});

/** Las variables del edge que dev-edge calcula (secretas o no, van por el mismo archivo). */
const EDGE_VARS = ["DATABASE_URL", "NEON_WSPROXY", "AUTH_SIGNING_KEYS", "AUTH_ISSUER"] as const;
type EdgeVars = Record<(typeof EDGE_VARS)[number], string>;

/**
 * Todo lo que el edge lee del entorno de la shell (LOG_LEVEL, AUTH_*, ENTITLEMENTS_*), y encima
 * lo calculado: en workerd el edge solo ve el archivo, y una variable puesta en la shell (p. ej.
 * ENTITLEMENTS_MAX_AGE_MS) se perdía sin aviso.
 */
export function edgeVarsFrom(env: NodeJS.ProcessEnv, computed: EdgeVars): Record<string, string> {
  const fromShell = Object.entries(env).filter(
    (entry): entry is [string, string] => entry[1] !== undefined && isEdgeVar(entry[0]),
  );
  return { ...Object.fromEntries(fromShell), ...computed };
}

// node con el bin de wrangler, sin npx: un proceso intermedio menos entre las señales y wrangler.
const WRANGLER_BIN = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const WRANGLER_CONFIG = fileURLToPath(new URL("../edge/wrangler.toml", import.meta.url));

/**
 * Argumentos de `wrangler dev`. Las variables van en archivos `--env-file` (el último manda), nunca
 * aquí: la línea de órdenes la ve cualquier usuario de la máquina con `ps`.
 */
export function wranglerDevArgs(port: number, envFiles: string[]): string[] {
  return [
    WRANGLER_BIN,
    "dev",
    "--config",
    WRANGLER_CONFIG,
    ...envFiles.flatMap((file) => ["--env-file", file]),
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
  ];
}

async function main() {
  const logger = cliLogger("dev-edge", "info");
  const { EDGE_PORT: port, WSPROXY_PORT: proxyPort } = parseEnv(devEdgeEnv, process.env);
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl?.startsWith("postgres")) {
    logger.fatal(
      "DATABASE_URL must point to a Postgres server (npm start covers the embedded mode)",
    );
    process.exit(2);
  }
  const dataDir = resolve(process.env.FARUTECH_DATA_DIR ?? ".data");
  const keys =
    process.env.AUTH_SIGNING_KEYS ??
    (await ensureLocalSigningKeys(join(dataDir, "signing-keys.json")));
  const proxy = await startWsProxy({ port: proxyPort });
  logger.info({ proxy: proxy.url }, "wsproxy listening");

  const vars: EdgeVars = {
    DATABASE_URL: databaseUrl,
    NEON_WSPROXY: proxy.url,
    AUTH_SIGNING_KEYS: keys,
    AUTH_ISSUER: process.env.AUTH_ISSUER ?? `http://127.0.0.1:${port}`,
  };
  let envFile: ReturnType<typeof writePrivateEnvFile>;
  try {
    envFile = writePrivateEnvFile(dotenvFile(edgeVarsFrom(process.env, vars)));
  } catch (err) {
    await proxy.close();
    throw err;
  }
  // Pase lo que pase (también un fallo inesperado), el archivo con las claves no se queda en /tmp.
  process.once("exit", () => envFile.remove());

  // Sin las variables del edge en el entorno de wrangler: solo el archivo las define.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
  };
  for (const name of Object.keys(env)) if (isEdgeVar(name)) delete env[name];
  for (const name of EDGE_VARS) delete env[name];
  // Con --env-file wrangler ya no lee edge/.dev.vars por su cuenta: va delante, y lo de dev-edge pisa.
  const devVars = join(dirname(WRANGLER_CONFIG), ".dev.vars");
  const envFiles = existsSync(devVars) ? [devVars, envFile.path] : [envFile.path];
  // Atado a este proceso: si muere sin limpiar (SIGKILL), wrangler recibe SIGTERM y para workerd
  // (sin esto seguían sirviendo el puerto con las claves cargadas).
  const child = spawnTiedToParent(
    process.execPath,
    wranglerDevArgs(port, envFiles),
    { stdio: "inherit", env },
    "SIGTERM",
  );
  // `on`: otra señal (un segundo Ctrl-C) también se reenvía, y dev-edge no muere sin limpiar.
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  child.on("exit", async (code) => {
    await proxy.close();
    envFile.remove();
    process.exit(code ?? 0);
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => failCli(err));
}
