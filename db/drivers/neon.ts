import { neonConfig, Pool } from "@neondatabase/serverless";
import { drizzle, type NeonDatabase } from "drizzle-orm/neon-serverless";
import * as schema from "../schema";
import {
  CONNECT_TIMEOUT_MS,
  type DbHandle,
  migrateUnderLock,
  type QueryObserver,
  queryLogger,
} from "../types";
import { survivePoolConnectionErrors } from "./pool-errors";

export interface NeonOptions {
  url: string;
  /** Proxy WebSocket→TCP con protocolo wsproxy (`host:port/v1`) para un Postgres local. */
  wsProxy?: string;
  /** Node 20 no trae WebSocket global: se inyecta `ws`. */
  webSocketConstructor?: typeof WebSocket;
  /** Solo en Node: el migrador de drizzle usa node:fs y no entra en el bundle del edge. */
  migrator?: (db: NeonDatabase<typeof schema>) => Promise<void>;
  max?: number;
  connectTimeoutMs?: number | undefined;
  onQuery?: QueryObserver;
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
  const pool = new Pool({
    connectionString: options.url,
    max: options.max ?? 5,
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
  });
  survivePoolConnectionErrors(pool);
  const db = drizzle({ client: pool, schema, logger: queryLogger(options.onQuery) });
  return {
    db,
    driver: "neon",
    databaseName: new URL(options.url).pathname.replace(/^\//, ""),
    async migrate(migrateOptions) {
      const migrator = options.migrator;
      if (!migrator)
        throw new Error("migrations run from Node (npm run db:migrate), not from the edge");
      const client = await pool.connect();
      try {
        await migrateUnderLock(client, () => migrator(drizzle({ client, schema })), migrateOptions);
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
