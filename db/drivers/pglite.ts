import { mkdirSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import * as schema from "../schema";
import { type DbHandle, type QueryObserver, queryLogger } from "../types";

export interface PgliteOptions {
  /** Carpeta de datos, o `memory://` para una base efímera. */
  dataDir: string;
  migrationsFolder: string;
  onQuery?: QueryObserver;
}

export async function createPgliteDb(options: PgliteOptions): Promise<DbHandle> {
  if (!options.dataDir.startsWith("memory://")) mkdirSync(options.dataDir, { recursive: true });
  const client = await PGlite.create(options.dataDir);
  const db = drizzle({ client, schema, logger: queryLogger(options.onQuery) });
  return {
    db,
    driver: "pglite",
    databaseName: "postgres",
    migrate: async () => {
      await migrate(db, { migrationsFolder: options.migrationsFolder });
    },
    close: () => client.close(),
  };
}
