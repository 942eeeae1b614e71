import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { newId, randomToken } from "../../core/ids";
import { createPostgresDedicated, dedicatedName } from "./dedicated-databases";
import { createPostgresRegistry, sharedAppRoleName, sharedDatabaseName } from "./shared-registry";

// Una base del plano de control cuyo nombre lleva caracteres que la URL codifica (aquí un
// espacio): ambos tiers usaban el nombre aún codificado ("…%20…") y fallaban con 3D000, dejando
// bases y roles a medias.
describe("control database whose name is percent-encoded in DATABASE_URL", () => {
  const adminUrl = inject("pgAdminUrl");
  const controlDb = `farutech enc ${inject("runId")}_${process.pid}`;
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(controlDb)}`;
  const admin = new pg.Client({ connectionString: adminUrl });

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`create database "${controlDb}" template template0`);
  });
  afterAll(async () => {
    const shared = sharedDatabaseName(controlDb, "FARUTECH_VET");
    for (const db of [shared, shared.replaceAll(" ", "%20"), controlDb]) {
      await admin.query(`drop database if exists "${db}" with (force)`);
    }
    await admin.query(`drop role if exists "${sharedAppRoleName(shared)}"`);
    await admin.end();
  });

  it("provisions the Standard and the Enterprise tier and revokes PUBLIC on the right database", async () => {
    expect(url.toString()).toContain("%20");
    const registry = createPostgresRegistry(url.toString());
    const dedicated = createPostgresDedicated(url.toString());
    const id = newId();
    try {
      await registry.register("FARUTECH_VET", {
        tenantInstanceId: newId(),
        tenantCode: "vet-1",
        customerId: newId(),
      });
      await dedicated.create(id, randomToken(24));
      const { rows } = await admin.query<{ datname: string; public_connect: boolean }>(
        `select datname, has_database_privilege('public', datname, 'CONNECT') as public_connect
           from pg_database where datname = any($1) order by datname`,
        [[controlDb, sharedDatabaseName(controlDb, "FARUTECH_VET"), dedicatedName(id)]],
      );
      expect(rows).toEqual(
        [controlDb, sharedDatabaseName(controlDb, "FARUTECH_VET"), dedicatedName(id)]
          .sort()
          .map((datname) => ({ datname, public_connect: false })),
      );
    } finally {
      await dedicated.drop(id).catch(() => {});
      await dedicated.close();
      await registry.close();
    }
  });
});
