import { fileURLToPath } from "node:url";
import { invalidConfiguration } from "../core/config";
import type { DbHandle, QueryObserver } from "./types";

export type { Database, DbHandle, Executor, Tx } from "./types";

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("./migrations", import.meta.url));
export const DEFAULT_PGLITE_DIR = ".data/pglite";

export interface DbConfig {
  /** postgres:// URL; sin ella se usa PGlite embebido. */
  url?: string | undefined;
  /** "neon" fuerza el driver serverless de Neon (WebSocket Pool) para la URL. */
  driver?: "neon" | "node-postgres" | undefined;
  neonWsProxy?: string | undefined;
  pgliteDataDir?: string | undefined;
  max?: number | undefined;
  /** Espera máxima para abrir una conexión (10 s): una base que no responde falla, no cuelga. */
  connectTimeoutMs?: number | undefined;
  onQuery?: QueryObserver | undefined;
}

// La única fábrica de clientes de base de datos del proyecto (en Node).
// El edge en workerd usa directamente createNeonDb, que esta fábrica también usa.
export async function createDb(config: DbConfig = {}): Promise<DbHandle> {
  if (!config.url) {
    const { createPgliteDb } = await import("./drivers/pglite");
    return createPgliteDb({
      dataDir: config.pgliteDataDir ?? DEFAULT_PGLITE_DIR,
      migrationsFolder: MIGRATIONS_FOLDER,
      onQuery: config.onQuery,
    });
  }
  if (!URL.canParse(config.url)) {
    throw invalidConfiguration([["DATABASE_URL", "is not a valid URL"]]);
  }
  const url = new URL(config.url);
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw invalidConfiguration([
      ["DATABASE_URL", `must be a postgres:// URL, not ${url.protocol}`],
    ]);
  }
  const useNeon =
    config.driver === "neon" ||
    (config.driver === undefined && url.hostname.endsWith(".neon.tech"));
  if (useNeon) {
    const { createNeonDb } = await import("./drivers/neon");
    const { WebSocket } = await import("ws");
    return createNeonDb({
      url: config.url,
      wsProxy: config.neonWsProxy,
      webSocketConstructor:
        globalThis.WebSocket ?? (WebSocket as unknown as typeof globalThis.WebSocket),
      migrator: async (db) => {
        const { migrate } = await import("drizzle-orm/neon-serverless/migrator");
        await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
      },
      max: config.max,
      connectTimeoutMs: config.connectTimeoutMs,
      onQuery: config.onQuery,
    });
  }
  const { createNodePostgresDb } = await import("./drivers/node-postgres");
  return createNodePostgresDb({
    url: config.url,
    migrationsFolder: MIGRATIONS_FOLDER,
    max: config.max,
    connectTimeoutMs: config.connectTimeoutMs,
    onQuery: config.onQuery,
  });
}

export function dbConfigFromEnv(env: NodeJS.ProcessEnv = process.env): DbConfig {
  return {
    url: env.DATABASE_URL || undefined,
    driver:
      env.DATABASE_DRIVER === "neon" || env.DATABASE_DRIVER === "node-postgres"
        ? env.DATABASE_DRIVER
        : undefined,
    neonWsProxy: env.NEON_WSPROXY || undefined,
    pgliteDataDir: env.PGLITE_DATA_DIR || undefined,
  };
}
