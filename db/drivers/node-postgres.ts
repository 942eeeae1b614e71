import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import * as schema from "../schema";
import {
  CONNECT_TIMEOUT_MS,
  type DbHandle,
  migrateUnderLock,
  type QueryObserver,
  queryLogger,
} from "../types";
import { survivePoolConnectionErrors } from "./pool-errors";

export interface NodePostgresOptions {
  url: string;
  migrationsFolder: string;
  max?: number;
  connectTimeoutMs?: number | undefined;
  statementTimeoutMs?: number | undefined;
  onQuery?: QueryObserver;
}

export function createNodePostgresDb(options: NodePostgresOptions): DbHandle {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    // Sin tope, una base que acepta la conexión y no responde colgaría cada petición.
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    // Va en el arranque de cada conexión: sin un viaje más.
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    // Una base que desaparece sin cerrar (host caído, NAT que olvida) se detecta en la conexión
    // ociosa o en transacción, no tras los ~15 min de retransmisiones del kernel.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  survivePoolConnectionErrors(pool);
  const db = drizzle({ client: pool, schema, logger: queryLogger(options.onQuery) });
  return {
    db,
    driver: "node-postgres",
    databaseName: new URL(options.url).pathname.replace(/^\//, ""),
    async migrate(migrateOptions) {
      const client = await pool.connect();
      try {
        await migrateUnderLock(
          client,
          () =>
            migrate(drizzle({ client, schema }), { migrationsFolder: options.migrationsFolder }),
          migrateOptions,
        );
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
