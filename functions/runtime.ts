import { WebSocket } from "ws";
import { z } from "zod";
import { createTokenVerifier } from "../core/auth/tokens";
import { type BusProvider, createBusProvider } from "../core/bus-provider";
import {
  authEnv,
  ConfigError,
  commonEnv,
  databaseEnv,
  encryptionEnv,
  envNumber,
  natsAuthEnv,
  natsAuthFrom,
  parseEnv,
  verificationSource,
} from "../core/config";
import { createLogger, type Logger } from "../core/logger";
import { secretBoxFromEnv } from "../core/secret-box";
import { createDb, withEmbeddedDataDir } from "../db/client";
import type { DbHandle } from "../db/types";
import type { AdminDeps } from "./env";

export const functionsEnv = encryptionEnv
  .extend(databaseEnv.shape)
  .extend(authEnv.shape)
  .extend(commonEnv.shape)
  .extend(natsAuthEnv.shape)
  .extend({
    PORT: envNumber(z.number().int().min(1).max(65535).default(3000)),
    // Las funciones usan el transporte WebSocket de NATS (portable); NATS_URL queda como respaldo.
    NATS_WS_URL: z.string().optional(),
    NATS_URL: z.string().optional(),
    // Tope de cada sentencia de la API (0: sin tope). Una espera de bloqueo es un 503 con
    // Retry-After, no una petición colgada que retiene una conexión del pool.
    DB_STATEMENT_TIMEOUT_MS: envNumber(z.number().int().min(0).default(30_000)),
  });

export type FunctionsEnv = z.infer<typeof functionsEnv>;

export interface AdminRuntime {
  deps: AdminDeps;
  env: FunctionsEnv;
  db: DbHandle;
  bus: BusProvider;
  close(): Promise<void>;
}

export async function createAdminRuntime(
  rawEnv: Record<string, unknown>,
  overrides: { db?: DbHandle; logger?: Logger } = {},
): Promise<AdminRuntime> {
  const env = parseEnv(functionsEnv, withEmbeddedDataDir(rawEnv));
  const logger = overrides.logger ?? createLogger({ service: "admin-api", level: env.LOG_LEVEL });
  const db =
    overrides.db ??
    (await createDb({
      url: env.DATABASE_URL,
      driver: env.DATABASE_DRIVER,
      neonWsProxy: env.NEON_WSPROXY,
      pgliteDataDir: env.PGLITE_DATA_DIR,
      statementTimeoutMs: env.DB_STATEMENT_TIMEOUT_MS,
    }));
  const servers = env.NATS_WS_URL ?? env.NATS_URL;
  if (!servers)
    throw new ConfigError("NATS_WS_URL (or NATS_URL) is required by the admin functions");
  const bus = createBusProvider(
    {
      servers,
      name: "admin-api",
      webSocket: WebSocket,
      ensureStreams: true,
      ...natsAuthFrom(env),
    },
    logger,
  );
  const verifier = createTokenVerifier(verificationSource(env), {
    issuer: env.AUTH_ISSUER,
    audience: env.AUTH_AUDIENCE,
  });
  return {
    env,
    db,
    bus,
    deps: {
      db: db.db,
      bus,
      verifier,
      logger,
      baseDomain: env.BASE_DOMAIN,
      ...(env.ENCRYPTION_KEYS ? { secretBox: await secretBoxFromEnv(env) } : {}),
    },
    async close() {
      await bus.close();
      if (!overrides.db) await db.close();
    },
  };
}
