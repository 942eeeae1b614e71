import { neonConfig, Pool } from "@neondatabase/serverless";
import { drizzle } from "drizzle-orm/neon-serverless";
import { migrate } from "drizzle-orm/neon-serverless/migrator";
import * as schema from "../schema";
import { type DbHandle, MIGRATION_LOCK_ID } from "../types";

export interface NeonOptions {
  url: string;
  /** Proxy WebSocket→TCP con protocolo wsproxy (`host:port/v1`) para un Postgres local. */
  wsProxy?: string;
  /** Node 20 no trae WebSocket global: se inyecta `ws`. */
  webSocketConstructor?: typeof WebSocket;
  migrationsFolder?: string;
  max?: number;
}

export function createNeonDb(options: NeonOptions): DbHandle {
  if (options.wsProxy) {
    const proxy = options.wsProxy.replace(/\/+$/, "");
    neonConfig.wsProxy = (host, port) => `${proxy}/v1?address=${host}:${port}`;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineConnect = false;
    neonConfig.pipelineTLS = false;
  }
  if (options.webSocketConstructor) neonConfig.webSocketConstructor = options.webSocketConstructor;
  const pool = new Pool({ connectionString: options.url, max: options.max ?? 5 });
  const db = drizzle({ client: pool, schema });
  return {
    db,
    driver: "neon",
    databaseName: new URL(options.url).pathname.replace(/^\//, ""),
    async migrate() {
      const folder = options.migrationsFolder;
      if (!folder)
        throw new Error("migrationsFolder is required to migrate through the Neon driver");
      const client = await pool.connect();
      try {
        await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
        await migrate(drizzle({ client, schema }), { migrationsFolder: folder });
      } finally {
        await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]).catch(() => {});
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
