import pg from "pg";
import { inject } from "vitest";
import { createDb } from "../../db/client";
import type { DbHandle, QueryObserver } from "../../db/types";

export interface TestDatabase {
  url: string | undefined;
  /** La misma base con el usuario del edge (rol farutech_edge, mínimo privilegio); solo Postgres. */
  edgeUrl: string | undefined;
  handle: DbHandle;
  drop(): Promise<void>;
}

let counter = 0;

/** Base Postgres nueva (clon de la plantilla migrada) para un archivo o prueba. */
export async function createPostgresTestDatabase(onQuery?: QueryObserver): Promise<TestDatabase> {
  const adminUrl = inject("pgAdminUrl");
  const name = `farutech_test_${inject("runId")}_${process.pid}_${counter++}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database "${name}" template "${inject("pgTemplate")}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = await createDb({ url: url.toString(), onQuery });
  const edgeUser = inject("pgEdgeUser");
  const edgeUrl = new URL(url);
  edgeUrl.username = edgeUser.name;
  edgeUrl.password = edgeUser.password;
  return {
    url: url.toString(),
    edgeUrl: edgeUrl.toString(),
    handle,
    async drop() {
      await handle.close();
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        const { rows } = await c.query<{ datname: string }>(
          "select datname from pg_database where datname = $1 or datname like $2",
          [name, `${name}_app_%`],
        );
        for (const { datname } of rows)
          await c.query(`drop database if exists "${datname}" with (force)`);
        // Roles de aplicación de las bases compartidas (son del servidor, no de la base).
        const roles = await c.query<{ rolname: string }>(
          "select rolname from pg_roles where rolname like $1",
          [`${name}_app_%`],
        );
        for (const { rolname } of roles.rows) await c.query(`drop role if exists "${rolname}"`);
      } finally {
        await c.end();
      }
    },
  };
}

/** PGlite en memoria, migrado: la ruta embebida de `npm start`. */
export async function createPgliteTestDatabase(onQuery?: QueryObserver): Promise<TestDatabase> {
  const handle = await createDb({ pgliteDataDir: "memory://", onQuery });
  await handle.migrate();
  return { url: undefined, edgeUrl: undefined, handle, drop: () => handle.close() };
}

export type DatabaseKind = "postgres" | "pglite";

export function createTestDatabase(
  kind: DatabaseKind,
  onQuery?: QueryObserver,
): Promise<TestDatabase> {
  return kind === "postgres"
    ? createPostgresTestDatabase(onQuery)
    : createPgliteTestDatabase(onQuery);
}
