import pg from "pg";
import type { TestProject } from "vitest/node";
import { randomToken } from "../core/ids";
import { createDb } from "../db/client";
import { ensureEdgeLogin } from "../db/edge-role";
import { findNatsServer } from "../infra/nats/local-server";

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
    pgEdgeUser: { name: string; password: string };
    runId: string;
  }
}

// Postgres real: una base plantilla migrada por ejecución; cada archivo de pruebas clona la suya.
export default async function setup(project: TestProject) {
  findNatsServer();
  const adminUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const runId = `${process.pid}_${Date.now().toString(36)}`;
  const template = `farutech_test_tpl_${runId}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(
      `Tests need a real Postgres at ${adminUrl} (set TEST_DATABASE_URL to override): ${String(err)}`,
    );
  }
  await admin.query(`create database "${template}" template template0`);
  const url = new URL(adminUrl);
  url.pathname = `/${template}`;
  const handle = await createDb({ url: url.toString() });
  await handle.migrate();
  // Usuario del edge (rol farutech_edge): las pruebas del edge en workerd entran con él, así
  // prueban que la migración le da todo lo que usa y nada más. Se borra con los demás roles.
  const edgeUser = { name: `farutech_test_edge_${runId}`, password: randomToken(32) };
  await ensureEdgeLogin(handle.db, edgeUser.name, edgeUser.password);
  await handle.close();
  project.provide("pgAdminUrl", adminUrl);
  project.provide("pgTemplate", template);
  project.provide("runId", runId);
  project.provide("pgEdgeUser", edgeUser);

  return async () => {
    const { rows } = await admin.query<{ datname: string }>(
      "select datname from pg_database where datname like $1",
      [`farutech_test_%${runId}%`],
    );
    for (const { datname } of rows) {
      await admin.query(`drop database if exists "${datname}" with (force)`).catch(() => {});
    }
    // Roles de aplicación de las bases compartidas que un archivo caído no alcanzó a borrar.
    const roles = await admin.query<{ rolname: string }>(
      "select rolname from pg_roles where rolname like $1",
      [`farutech_test_%${runId}%`],
    );
    for (const { rolname } of roles.rows) {
      await admin.query(`drop role if exists "${rolname}"`).catch(() => {});
    }
    await admin.end();
  };
}
