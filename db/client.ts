import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
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
  /**
   * Las herramientas de operaciones leen una base que ya existe: sin esto, una carpeta mal puesta
   * creaba una base vacía y el error llegaba después como "relation … does not exist".
   */
  pgliteMustExist?: boolean | undefined;
  max?: number | undefined;
  /** Espera máxima para abrir una conexión (10 s): una base que no responde falla, no cuelga. */
  connectTimeoutMs?: number | undefined;
  /**
   * Tope de cada sentencia en el servidor (statement_timeout; 0 o sin valor, sin tope). La API
   * admin lo usa: una espera de bloqueo sin fin es un 503, no una petición colgada. Solo con
   * node-postgres (con Neon, el tope es el de la Lambda).
   */
  statementTimeoutMs?: number | undefined;
  onQuery?: QueryObserver | undefined;
}

// La única fábrica de clientes de base de datos del proyecto (en Node).
// El edge en workerd usa directamente createNeonDb, que esta fábrica también usa.
export async function createDb(config: DbConfig = {}): Promise<DbHandle> {
  if (!config.url) {
    const dataDir = config.pgliteDataDir ?? DEFAULT_PGLITE_DIR;
    if (config.pgliteMustExist && !existsSync(join(dataDir, "PG_VERSION"))) {
      throw invalidConfiguration([
        [
          "PGLITE_DATA_DIR",
          `has no database at ${resolve(dataDir)}: run npm start (or npm run db:migrate) there ` +
            "first, point PGLITE_DATA_DIR or FARUTECH_DATA_DIR at the right folder, or set DATABASE_URL",
        ],
      ]);
    }
    const { createPgliteDb } = await import("./drivers/pglite");
    return createPgliteDb({
      dataDir,
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
    statementTimeoutMs: config.statementTimeoutMs,
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
    pgliteDataDir: (withEmbeddedDataDir(env).PGLITE_DATA_DIR as string | undefined) || undefined,
  };
}

/**
 * Como npm start: sin PGLITE_DATA_DIR, la base embebida vive en <FARUTECH_DATA_DIR>/pglite. Lo usan
 * los CLI, las funciones y los workers, para que todos abran la misma carpeta.
 */
export function withEmbeddedDataDir<E extends Record<string, unknown>>(
  env: E,
): E & { PGLITE_DATA_DIR?: unknown } {
  const dataDir = env.FARUTECH_DATA_DIR;
  if (env.PGLITE_DATA_DIR || typeof dataDir !== "string" || !dataDir) return env;
  return { ...env, PGLITE_DATA_DIR: join(dataDir, "pglite") };
}
