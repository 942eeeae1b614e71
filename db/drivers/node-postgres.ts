import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import * as schema from "../schema";
import {
  CONNECT_TIMEOUT_MS,
  type DbHandle,
  MIGRATION_LOCK_ID,
  type QueryObserver,
  queryLogger,
} from "../types";
import { survivePoolConnectionErrors } from "./pool-errors";

export interface NodePostgresOptions {
  url: string;
  migrationsFolder: string;
  max?: number;
  connectTimeoutMs?: number | undefined;
  onQuery?: QueryObserver;
}

export function createNodePostgresDb(options: NodePostgresOptions): DbHandle {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    // Sin tope, una base que acepta la conexión y no responde colgaría cada petición.
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
  });
  survivePoolConnectionErrors(pool);
  const db = drizzle({ client: pool, schema, logger: queryLogger(options.onQuery) });
  return {
    db,
    driver: "node-postgres",
    databaseName: new URL(options.url).pathname.replace(/^\//, ""),
    async migrate() {
      const client = await pool.connect();
      try {
        // Varios procesos pueden arrancar a la vez: solo uno migra.
        await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
        await migrate(drizzle({ client, schema }), { migrationsFolder: options.migrationsFolder });
      } finally {
        await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]).catch(() => {});
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
