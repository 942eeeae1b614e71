import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, desc, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../core/logger";
import { auditLog, outboxEvents, products, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createTestDatabase, type TestDatabase } from "../../test/support/databases";
import { LATE_WRITE_WINDOW_DAYS, runMaintenanceOnce } from "../maintenance";
import { PermanentError } from "../runtime/errors";
import {
  createPgliteDedicated,
  createPostgresDedicated,
  type DedicatedDatabases,
  dedicatedName,
} from "./dedicated-databases";
import {
  createPgliteRegistry,
  createPostgresRegistry,
  type SharedTenantRegistry,
} from "./shared-registry";
import { dropTenantData } from "./tenant-data";

const DAY = 86_400_000;

// Retención: la pasada de mantenimiento borra los datos de las bajas vencidas, una sola vez.
describe.each(["postgres", "pglite"] as const)("tenant data retention on %s", (kind) => {
  let db: TestDatabase;
  let dir: string;
  let registry: SharedTenantRegistry;
  let dedicated: DedicatedDatabases;
  const now = new Date();
  // La base propia se nombra por el id de la instancia (único: no choca con otras ejecuciones).
  let enterpriseId = "";

  const instances = async () =>
    (
      await db.handle.db
        .select({ instance: tenantInstances, productCode: products.code })
        .from(tenantInstances)
        .innerJoin(products, eq(products.id, tenantInstances.productId))
        .orderBy(tenantInstances.tenantCode)
    ).slice(0, 5);
  const setInstance = (id: string, values: Partial<typeof tenantInstances.$inferInsert>) =>
    db.handle.db.update(tenantInstances).set(values).where(eq(tenantInstances.id, id));
  const enterpriseExists = async () => {
    if (kind === "pglite") return existsSync(join(dir, "tenants", dedicatedName(enterpriseId)));
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ n: number }>(
        `select (select count(*) from pg_database where datname = $1)
              + (select count(*) from pg_roles where rolname = $1) as n`,
        [dedicatedName(enterpriseId)],
      );
      return Number(rows[0]?.n) > 0;
    } finally {
      await admin.end();
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    await seedDemo(db.handle.db);
    dir = mkdtempSync(join(tmpdir(), "farutech-retention-"));
    registry =
      kind === "postgres"
        ? createPostgresRegistry(db.url ?? "")
        : createPgliteRegistry(join(dir, "apps"));
    dedicated =
      kind === "postgres"
        ? createPostgresDedicated(db.url ?? "")
        : createPgliteDedicated(join(dir, "tenants"));
  });
  afterAll(async () => {
    if (enterpriseId) await dedicated?.drop(enterpriseId).catch(() => {});
    await dedicated?.close();
    await registry?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("drops Standard rows and the Enterprise database once retention has passed", async () => {
    const [expired, recent, active, enterprise] = await instances();
    if (!expired || !recent || !active || !enterprise) throw new Error("demo data missing");
    for (const row of [expired, recent, active]) {
      await registry.register(row.productCode, {
        tenantInstanceId: row.instance.id,
        tenantCode: row.instance.tenantCode,
        customerId: row.instance.customerId,
      });
    }
    enterpriseId = enterprise.instance.id;
    await dedicated.create(enterpriseId, "tenant-pw");
    const url = dedicated.connectionString(enterpriseId, "tenant-pw");
    await dedicated.applyBaseline(url, enterprise.productCode);
    expect(await enterpriseExists()).toBe(true);

    const ago = (days: number) => new Date(now.getTime() - days * DAY);
    await setInstance(expired.instance.id, { status: "decommissioned", decommissionedAt: ago(31) });
    await setInstance(recent.instance.id, { status: "decommissioned", decommissionedAt: ago(29) });
    // Activo desde hace mucho: nunca se toca.
    await setInstance(active.instance.id, { status: "active", updatedAt: ago(400) });
    // Baja anterior a decommissioned_at: cuenta desde updated_at.
    await setInstance(enterprise.instance.id, {
      databaseTier: "enterprise",
      connectionStringEncrypted: "v1.test.sealed",
      encryptionKeyId: "test",
      status: "decommissioned",
      updatedAt: ago(45),
    });

    const options = {
      db: db.handle.db,
      logger: silentLogger,
      retentionDays: 3650,
      tenantData: { registry, dedicated, retentionDays: 30 },
    };
    // Las dos Standard dadas de baja (registradas antes del paso disable_tenant_access) pierden
    // el acceso de su app en la primera pasada; la vencida además se borra.
    expect(await runMaintenanceOnce(options, now)).toMatchObject({
      deactivatedTenants: 2,
      droppedTenantData: 2,
    });

    expect(await registry.isRegistered(expired.productCode, expired.instance.id)).toBe(false);
    expect(await registry.isRegistered(recent.productCode, recent.instance.id)).toBe(true);
    expect(await registry.isRegistered(active.productCode, active.instance.id)).toBe(true);
    expect(await enterpriseExists()).toBe(false);

    const byId = async (id: string) =>
      (await db.handle.db.select().from(tenantInstances).where(eq(tenantInstances.id, id)))[0];
    expect(await byId(enterprise.instance.id)).toMatchObject({
      connectionStringEncrypted: null,
      encryptionKeyId: null,
      dataDroppedAt: expect.any(Date),
    });
    expect((await byId(expired.instance.id))?.dataDroppedAt).toBeInstanceOf(Date);
    expect((await byId(recent.instance.id))?.dataDroppedAt).toBeNull();
    const dropped = await db.handle.db
      .select()
      .from(auditLog)
      .where(
        and(
          eq(auditLog.action, "tenant_instance.data_dropped"),
          eq(auditLog.actor, "worker:maintenance"),
        ),
      );
    expect(dropped.map((a) => [a.entityId, a.after]).sort()).toEqual(
      [
        [
          expired.instance.id,
          expect.objectContaining({
            reason: "retention",
            databaseTier: "standard",
            rowsDeleted: 1,
          }),
        ],
        [
          enterprise.instance.id,
          expect.objectContaining({ reason: "retention", databaseTier: "enterprise" }),
        ],
      ].sort(),
    );
    const events = await db.handle.db
      .select()
      .from(outboxEvents)
      .where(eq(outboxEvents.type, "tenant_instance.data_dropped"));
    expect(
      events
        .map((e) => (e.payload as { data: { tenantInstanceId: string } }).data.tenantInstanceId)
        .sort(),
    ).toEqual([expired.instance.id, enterprise.instance.id].sort());

    // Otra pasada (u otro proceso) no repite nada.
    expect(await runMaintenanceOnce(options, now)).toMatchObject({
      deactivatedTenants: 0,
      droppedTenantData: 0,
    });
    expect(
      await dropTenantData({ db: db.handle.db, registry, dedicated }, expired.instance.id, {
        actor: "test",
        reason: "purge",
      }),
    ).toBe("already_dropped");
    expect(
      await db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "tenant_instance.data_dropped")),
    ).toHaveLength(2);
    // Un tenant activo nunca pierde sus datos por error.
    await expect(
      dropTenantData({ db: db.handle.db, registry, dedicated }, active.instance.id, {
        actor: "test",
        reason: "purge",
      }),
    ).rejects.toBeInstanceOf(PermanentError);
    expect(await registry.isRegistered(active.productCode, active.instance.id)).toBe(true);

    // Al vencer su plazo, la baja reciente también se borra.
    expect(await runMaintenanceOnce(options, new Date(now.getTime() + 2 * DAY))).toMatchObject({
      droppedTenantData: 1,
    });
    expect(await registry.isRegistered(recent.productCode, recent.instance.id)).toBe(false);
  });

  it("drops again what a late write of an abandoned task put back after the data was dropped", async () => {
    // Sigue a la prueba anterior: `expired` (Standard) y la Enterprise ya tienen data_dropped_at.
    const [expired, , , enterprise] = await instances();
    if (!expired || !enterprise) throw new Error("demo data missing");
    expect(expired.instance.dataDroppedAt).toBeInstanceOf(Date);
    expect(enterprise.instance.dataDroppedAt).toBeInstanceOf(Date);
    const options = {
      db: db.handle.db,
      logger: silentLogger,
      retentionDays: 3650,
      tenantData: { registry, dedicated, retentionDays: 30 },
    };
    // Lo que hace una entrega abandonada que despierta tarde: registra y crea base y rol.
    const lateRegister = () =>
      registry.register(expired.productCode, {
        tenantInstanceId: expired.instance.id,
        tenantCode: expired.instance.tenantCode,
        customerId: expired.instance.customerId,
      });
    await lateRegister();
    await dedicated.create(enterpriseId, "late-pw");
    expect(await enterpriseExists()).toBe(true);
    expect(await dedicated.exists(enterpriseId)).toBe(true);

    expect(await runMaintenanceOnce(options, now)).toMatchObject({ removedLateTenantWrites: 2 });
    expect(await registry.isRegistered(expired.productCode, expired.instance.id)).toBe(false);
    expect(await enterpriseExists()).toBe(false);
    expect(await dedicated.exists(enterpriseId)).toBe(false);
    expect(await runMaintenanceOnce(options, now)).toMatchObject({ removedLateTenantWrites: 0 });

    // Pasada la ventana ya no se mira (una pasada no recorre todas las bajas de la historia).
    await lateRegister();
    const later = new Date(now.getTime() + (LATE_WRITE_WINDOW_DAYS + 1) * DAY);
    expect(await runMaintenanceOnce(options, later)).toMatchObject({ removedLateTenantWrites: 0 });
    await registry.dropTenant(expired.productCode, expired.instance.id);
  });

  it("keeps dropping later tenants in the same pass when the oldest ones fail", async () => {
    const rows = (
      await db.handle.db
        .select({ instance: tenantInstances, productCode: products.code })
        .from(tenantInstances)
        .innerJoin(products, eq(products.id, tenantInstances.productId))
        .where(eq(tenantInstances.databaseTier, "standard"))
        .orderBy(tenantInstances.tenantCode)
    ).filter((r) => r.instance.status !== "decommissioned");
    const [broken, fine] = rows;
    if (!broken || !fine) throw new Error("demo data missing");
    for (const row of [broken, fine]) {
      await registry.register(row.productCode, {
        tenantInstanceId: row.instance.id,
        tenantCode: row.instance.tenantCode,
        customerId: row.instance.customerId,
      });
    }
    const ago = (days: number) => new Date(now.getTime() - days * DAY);
    await setInstance(broken.instance.id, { status: "decommissioned", decommissionedAt: ago(90) });
    await setInstance(fine.instance.id, { status: "decommissioned", decommissionedAt: ago(60) });
    // La más vieja falla siempre (su base no responde, o el RLS esconde filas).
    const failing: SharedTenantRegistry = {
      ...registry,
      register: registry.register.bind(registry),
      isRegistered: registry.isRegistered.bind(registry),
      close: registry.close.bind(registry),
      dropTenant: (productCode, id) =>
        id === broken.instance.id
          ? Promise.reject(new Error("shared database unreachable"))
          : registry.dropTenant(productCode, id),
    };
    const result = await runMaintenanceOnce(
      {
        db: db.handle.db,
        logger: silentLogger,
        retentionDays: 3650,
        // Una por tanda: con tandas de 50, 50 bajas que fallan tapaban a todas las siguientes.
        tenantData: { registry: failing, dedicated, retentionDays: 30, batchSize: 1 },
      },
      now,
    );
    expect(result).toMatchObject({ droppedTenantData: 1 });
    expect(await registry.isRegistered(fine.productCode, fine.instance.id)).toBe(false);
    expect(await registry.isRegistered(broken.productCode, broken.instance.id)).toBe(true);
  });

  // PGlite no tiene roles: ahí nadie más entra en la carpeta del tenant.
  it.runIf(kind === "postgres")(
    "takes the login away from an Enterprise tenant whose deprovisioning stopped before that step",
    async () => {
      const [row] = (
        await db.handle.db
          .select({ id: tenantInstances.id, status: tenantInstances.status })
          .from(tenantInstances)
          .orderBy(desc(tenantInstances.tenantCode))
      ).filter((r) => r.status !== "decommissioned");
      if (!row) throw new Error("demo data missing");
      const password = "tenant-pw-login";
      await dedicated.create(row.id, password);
      const canLogin = async () => {
        const admin = new pg.Client({ connectionString: db.url });
        await admin.connect();
        try {
          const { rows } = await admin.query<{ rolcanlogin: boolean }>(
            "select rolcanlogin from pg_roles where rolname = $1",
            [dedicatedName(row.id)],
          );
          return rows[0]?.rolcanlogin;
        } finally {
          await admin.end();
        }
      };
      const app = new pg.Client({ connectionString: dedicated.connectionString(row.id, password) });
      try {
        // La baja se confirmó, pero su paso disable_tenant_login agotó sus intentos (DLQ).
        await setInstance(row.id, {
          databaseTier: "enterprise",
          status: "decommissioned",
          decommissionedAt: new Date(now.getTime() - DAY),
        });
        app.on("error", () => {});
        await app.connect();
        expect(await canLogin()).toBe(true);
        const options = {
          db: db.handle.db,
          logger: silentLogger,
          retentionDays: 3650,
          tenantData: { registry, dedicated, retentionDays: 30 },
        };
        expect(await runMaintenanceOnce(options, now)).toMatchObject({ disabledTenantLogins: 1 });
        expect(await canLogin()).toBe(false);
        // La sesión abierta de la app hija también se corta.
        await expect(app.query("select 1")).rejects.toThrow();
        expect(await runMaintenanceOnce(options, now)).toMatchObject({ disabledTenantLogins: 0 });
      } finally {
        await app.end().catch(() => {});
        await dedicated.drop(row.id);
      }
    },
  );
});
