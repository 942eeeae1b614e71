import { resolve } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { ensurePrivateDir, lockDataDir } from "../../core/dir-lock";
import * as schema from "../schema";
import { type DbHandle, type QueryObserver, queryLogger } from "../types";
import { openPglite } from "./open-pglite";

export interface PgliteOptions {
  /** Carpeta de datos, o `memory://` para una base efímera. */
  dataDir: string;
  migrationsFolder: string;
  onQuery?: QueryObserver;
}

export async function createPgliteDb(options: PgliteOptions): Promise<DbHandle> {
  let unlock = () => {};
  if (!options.dataDir.startsWith("memory://")) {
    ensurePrivateDir(options.dataDir);
    // Normalizada: `/srv/db/` y `/srv/db` son la misma carpeta y el mismo candado.
    unlock = lockDataDir(
      `${resolve(options.dataDir)}.lock`,
      `The PGlite database ${options.dataDir}`,
    );
  }
  let client: PGlite;
  try {
    client = await openPglite(options.dataDir);
  } catch (err) {
    unlock();
    throw err;
  }
  const db = drizzle({ client, schema, logger: queryLogger(options.onQuery) });
  return {
    db,
    driver: "pglite",
    databaseName: "postgres",
    migrate: async () => {
      await migrate(db, { migrationsFolder: options.migrationsFolder });
    },
    close: async () => {
      try {
        await client.close();
      } finally {
        unlock();
      }
    },
  };
}
