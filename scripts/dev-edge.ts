import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { createLogger } from "../core/logger";
import { startWsProxy } from "../infra/wsproxy/wsproxy";
import { ensureLocalSigningKeys } from "./dev-credentials";

// `npm run dev:edge`: el edge dentro de workerd (wrangler dev) contra un Postgres real,
// alcanzado como se alcanza Neon: WebSocket a través de un proxy wsproxy local.
const logger = createLogger({ service: "dev-edge" });
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl?.startsWith("postgres")) {
  logger.fatal("DATABASE_URL must point to a Postgres server (npm start covers the embedded mode)");
  process.exit(2);
}
const dataDir = resolve(process.env.FARUTECH_DATA_DIR ?? ".data");
const keys =
  process.env.AUTH_SIGNING_KEYS ??
  (await ensureLocalSigningKeys(join(dataDir, "signing-keys.json")));
const port = process.env.EDGE_PORT ?? "8787";
const proxy = await startWsProxy({ port: Number(process.env.WSPROXY_PORT ?? 0) });
logger.info({ proxy: proxy.url }, "wsproxy listening");

const vars: Record<string, string> = {
  DATABASE_URL: databaseUrl,
  NEON_WSPROXY: proxy.url,
  AUTH_SIGNING_KEYS: keys,
  AUTH_ISSUER: process.env.AUTH_ISSUER ?? `http://127.0.0.1:${port}`,
};
const args = [
  "wrangler",
  "dev",
  "--config",
  "edge/wrangler.toml",
  "--ip",
  "127.0.0.1",
  "--port",
  port,
];
for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
const child = spawn("npx", args, {
  stdio: "inherit",
  env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
});
const stop = () => child.kill("SIGINT");
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
child.on("exit", async (code) => {
  await proxy.close();
  process.exit(code ?? 0);
});
