import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjects } from "../../contracts/streams";
import { newId } from "../../core/ids";
import { createSecretBox, generateEncryptionKey, secretContext } from "../../core/secret-box";
import { enqueueEvent } from "../../db/outbox";
import { auditLog, provisioningTasks, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { dedicatedName } from "../../workers/provisioning/dedicated-databases";
import { createPostgresRegistry } from "../../workers/provisioning/shared-registry";
import { demoProvisionBody } from "../support/demo";
import { call } from "../support/http";
import { scramLogin, storedRoleVerifier } from "../support/scram";
import { startTestStack, type TestStack, waitFor, waitForTask } from "../support/stack";

// Tier Enterprise: base y rol propios, esquema aplicado y cadena de conexión cifrada.
describe("Enterprise tier provisioning", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    if (stack) {
      // Las bases y roles de tenant viven en el servidor: se borran aquí.
      const admin = new pg.Client({ connectionString: stack.db.url });
      await admin.connect();
      const dbs = await admin.query<{ datname: string }>(
        "select datname from pg_database where datname like 't\\_%'",
      );
      const rows = await stack.db.handle.db.select().from(tenantInstances);
      const mine = new Set(rows.map((r) => dedicatedName(r.id)));
      for (const { datname } of dbs.rows.filter((d) => mine.has(d.datname))) {
        await admin.query(`drop database if exists "${datname}" with (force)`);
        await admin.query(`drop role if exists "${datname}"`);
      }
      await admin.end();
      await stack.stop();
    }
  });

  it("creates the tenant's own database and role, applies the schema, stores the URL encrypted, and purge drops them", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "ent-1", { databaseTier: "enterprise" }),
      },
    );
    expect(res.status).toBe(202);
    const finished = (taskId: string) => waitForTask(stack.adminUrl, token, taskId);
    const task = await finished(res.body.taskId);
    expect(task.status).toBe("succeeded");
    expect(task.steps.map((s) => s.name)).toEqual([
      "create_database",
      "apply_schema",
      "activate",
      "request_welcome_notification",
    ]);

    const [instance] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    const sealed = instance?.connectionStringEncrypted ?? "";
    expect(sealed).toMatch(/^v2\.test\./);
    expect(sealed).not.toMatch(/postgres|@|127\.0\.0\.1/);
    expect(instance?.encryptionKeyId).toBe("test");

    // Sin la clave no se lee; con ella, la cadena entra como el rol del tenant y ve su esquema.
    const stranger = await createSecretBox(JSON.stringify([{ ...generateEncryptionKey("test") }]));
    const context = secretContext.connectionString(res.body.tenantInstanceId);
    await expect(stranger.decrypt(sealed, context)).rejects.toThrow();
    const box = await createSecretBox(stack.env.ENCRYPTION_KEYS ?? "");
    // Copiada a otra instancia no descifra: el contexto (la fila) va en los datos asociados.
    await expect(box.decrypt(sealed, secretContext.connectionString(newId()))).rejects.toThrow(
      /belongs to another record/,
    );
    const url = await box.decrypt(sealed, context);
    const tenant = new pg.Client({ connectionString: url });
    await tenant.connect();
    const who = await tenant.query<{ user: string }>("select current_user as user");
    const meta = await tenant.query<{ value: string }>(
      "select value from farutech_tenant_metadata where key = 'product'",
    );
    expect(who.rows[0]?.user).toBe(new URL(url).username);
    // Base y rol se nombran por el id de la instancia: el catálogo del servidor no lleva la razón social.
    expect(new URL(url).username).toBe(dedicatedName(res.body.tenantInstanceId));
    expect(new URL(url).pathname).toBe(`/${dedicatedName(res.body.tenantInstanceId)}`);
    expect(meta.rows).toEqual([{ value: "FARUTECH_VET" }]);

    // Baja con purge mientras la app hija sigue conectada: su base y su rol desaparecen igual.
    tenant.on("error", () => {});
    const del = await call<{ taskId: string }>(
      `${stack.adminUrl}/api/provisioning/${res.body.tenantInstanceId}?purge=true`,
      { token, method: "DELETE" },
    );
    expect(del.status).toBe(202);
    const deprov = await finished(del.body.taskId);
    expect(deprov.steps.map((s) => [s.name, s.status])).toEqual([
      ["suspend_instance", "succeeded"],
      ["decommission", "succeeded"],
      ["drop_tenant_data", "succeeded"],
    ]);
    await expect(tenant.query("select 1")).rejects.toThrow();
    await tenant.end().catch(() => {});
    const admin = new pg.Client({ connectionString: stack.db.url });
    await admin.connect();
    const left = await admin.query(
      `select (select count(*)::int from pg_database where datname = $1) as dbs,
              (select count(*)::int from pg_roles where rolname = $1) as roles`,
      [new URL(url).username],
    );
    await admin.end();
    expect(left.rows).toEqual([{ dbs: 0, roles: 0 }]);
    const [after] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    expect(after).toMatchObject({
      status: "decommissioned",
      connectionStringEncrypted: null,
      encryptionKeyId: null,
      dataDroppedAt: expect.any(Date),
    });
    const [audit] = await stack.db.handle.db
      .select()
      .from(auditLog)
      .where(
        and(
          eq(auditLog.entityId, res.body.tenantInstanceId),
          eq(auditLog.action, "tenant_instance.data_dropped"),
        ),
      );
    expect(audit?.after).toMatchObject({ reason: "purge", databaseTier: "enterprise" });
  }, 60_000);

  it("deprovisioning without purge keeps the tenant's database for the retention period but its login stops working at once", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "ent-keep", {
          databaseTier: "enterprise",
        }),
      },
    );
    expect(res.status).toBe(202);
    expect((await waitForTask(stack.adminUrl, token, res.body.taskId)).status).toBe("succeeded");
    const [instance] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    const box = await createSecretBox(stack.env.ENCRYPTION_KEYS ?? "");
    const url = await box.decrypt(
      instance?.connectionStringEncrypted ?? "",
      secretContext.connectionString(res.body.tenantInstanceId),
    );
    // La app hija está conectada cuando llega la baja.
    const app = new pg.Client({ connectionString: url });
    app.on("error", () => {});
    await app.connect();

    const del = await call<{ taskId: string }>(
      `${stack.adminUrl}/api/provisioning/${res.body.tenantInstanceId}`,
      { token, method: "DELETE" },
    );
    expect(del.status).toBe(202);
    const task = await waitForTask(stack.adminUrl, token, del.body.taskId);
    expect(task.steps.map((s) => [s.name, s.status])).toEqual([
      ["suspend_instance", "succeeded"],
      ["decommission", "succeeded"],
      ["disable_tenant_login", "succeeded"],
    ]);
    // Su sesión se cortó y no puede volver a entrar; la base sigue (retención).
    await expect(app.query("select 1")).rejects.toThrow();
    await app.end().catch(() => {});
    const again = new pg.Client({ connectionString: url });
    const refused = await again.connect().then(
      () => undefined,
      (err: unknown) => (err as { code?: string }).code,
    );
    await again.end().catch(() => {});
    expect(refused).toBe("28000");
    const admin = new pg.Client({ connectionString: stack.db.url });
    await admin.connect();
    const left = await admin.query(
      "select count(*)::int as dbs from pg_database where datname = $1",
      [dedicatedName(res.body.tenantInstanceId)],
    );
    await admin.end();
    expect(left.rows).toEqual([{ dbs: 1 }]);
  }, 60_000);

  // Una cadena de conexión filtrada (la app hija la tiene): contraseña nueva para el rol sin perder
  // datos. La vieja deja de entrar; la nueva la da GET …/connection; lo abierto sigue.
  it("rotates the tenant role's password: the old string stops working, the new one reaches the same data", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "ent-rotate", {
          databaseTier: "enterprise",
        }),
      },
    );
    expect(res.status).toBe(202);
    expect((await waitForTask(stack.adminUrl, token, res.body.taskId)).status).toBe("succeeded");
    const id = res.body.tenantInstanceId;
    const read = async () =>
      (
        await call<{ connectionString: string }>(
          `${stack.adminUrl}/api/tenant-instances/${id}/connection`,
          { token },
        )
      ).body.connectionString;
    const before = await read();
    const app = new pg.Client({ connectionString: before });
    app.on("error", () => {});
    await app.connect();
    await app.query("create table kept (v text); insert into kept values ('still here')");

    const rotate = () =>
      call<{ taskId: string; kind: string }>(
        `${stack.adminUrl}/api/provisioning/${id}/rotate-credentials`,
        { token, method: "POST" },
      );
    const accepted = await rotate();
    expect(accepted.status).toBe(202);
    expect(accepted.body.kind).toBe("rotate_credentials");
    const task = await waitForTask(stack.adminUrl, token, accepted.body.taskId);
    expect(task.status).toBe("succeeded");
    expect(task.steps.map((s) => s.name)).toEqual([
      "prepare_password",
      "set_password",
      "store_connection_string",
    ]);

    const after = await read();
    expect(after).not.toBe(before);
    const [u0, u1] = [new URL(before), new URL(after)];
    expect([u1.username, u1.host, u1.pathname]).toEqual([u0.username, u0.host, u0.pathname]);
    // El Postgres local entra con trust: la contraseña se prueba contra el verificador guardado.
    const verifier = await storedRoleVerifier(stack.db.url ?? "", dedicatedName(id));
    expect(await scramLogin(verifier, decodeURIComponent(u1.password))).toBe(true);
    expect(await scramLogin(verifier, decodeURIComponent(u0.password))).toBe(false);
    const fresh = new pg.Client({ connectionString: after });
    await fresh.connect();
    expect((await fresh.query("select v from kept")).rows).toEqual([{ v: "still here" }]);
    await fresh.end();
    // La sesión abierta antes de rotar sigue.
    expect((await app.query("select 1 as ok")).rows).toEqual([{ ok: 1 }]);
    await app.end();

    const [row] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, id));
    expect(row?.pendingConnectionStringEncrypted).toBeNull();
    const audits = await stack.db.handle.db
      .select({ action: auditLog.action, after: auditLog.after })
      .from(auditLog)
      .where(eq(auditLog.entityId, id));
    expect(audits.map((a) => a.action)).toEqual(
      expect.arrayContaining([
        "tenant_instance.credentials_rotation_requested",
        "tenant_instance.credentials_rotated",
      ]),
    );
    expect(JSON.stringify(audits)).not.toContain(u1.password);

    // Standard: no hay rol propio que rotar.
    const standard = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      { token, json: await demoProvisionBody(stack.db.handle.db, "std-rotate") },
    );
    expect((await waitForTask(stack.adminUrl, token, standard.body.taskId)).status).toBe(
      "succeeded",
    );
    const conflict = await call<{ code: string }>(
      `${stack.adminUrl}/api/provisioning/${standard.body.tenantInstanceId}/rotate-credentials`,
      { token, method: "POST" },
    );
    expect([conflict.status, conflict.body.code]).toEqual([409, "conflict"]);
  }, 60_000);

  // Una rotación que el worker toma cuando la instancia ya se dio de baja con purge (la baja llegó
  // entre la aceptación y el worker): no va a la DLQ ni guarda una cadena de una base que ya no
  // existe; termina sin tocar nada. Antes moría como permanente (y avisaba a operaciones).
  it("a rotation that starts after a purge finishes without storing credentials", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "ent-late", {
          databaseTier: "enterprise",
        }),
      },
    );
    expect((await waitForTask(stack.adminUrl, token, res.body.taskId)).status).toBe("succeeded");
    const id = res.body.tenantInstanceId;
    const purge = await call<{ taskId: string }>(
      `${stack.adminUrl}/api/provisioning/${id}?purge=true`,
      { token, method: "DELETE" },
    );
    expect((await waitForTask(stack.adminUrl, token, purge.body.taskId)).status).toBe("succeeded");
    // La tarea de rotación aceptada antes de la baja (la API ya no la acepta sobre una dada de baja).
    const taskId = newId();
    await stack.db.handle.db.transaction(async (tx) => {
      await tx.insert(provisioningTasks).values({
        id: taskId,
        tenantInstanceId: id,
        kind: "rotate_credentials",
        status: "queued",
        correlationId: `late-${taskId}`,
        requestHash: "late",
        response: {},
        payload: {},
      });
      await enqueueEvent(tx, {
        subject: subjects.rotateCredentials,
        type: "provisioning.rotate_credentials_requested",
        correlationId: `late-${taskId}`,
        data: { taskId, tenantInstanceId: id, kind: "rotate_credentials" },
      });
    });
    expect((await waitForTask(stack.adminUrl, token, taskId)).status).toBe("succeeded");
    const [row] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, id));
    expect(row).toMatchObject({
      status: "decommissioned",
      connectionStringEncrypted: null,
      pendingConnectionStringEncrypted: null,
    });
  }, 60_000);

  it("erasing the customer (GDPR) decommissions its instances and drops their data: own database and role, and the shared registry row", async () => {
    const token = await stack.adminToken();
    const customer = await call<{ id: string }>(`${stack.adminUrl}/api/customers`, {
      token,
      json: {
        legalName: "Clínica Olvido Pérez",
        taxId: `GDPR-${Date.now()}`,
        billingEmail: "olvido@clinica.example",
        country: "CO",
      },
    });
    expect(customer.status).toBe(201);
    const customerId = customer.body.id;
    const provisioned: string[] = [];
    for (const databaseTier of ["enterprise", "standard"] as const) {
      const res = await call<{ taskId: string; tenantInstanceId: string }>(
        `${stack.adminUrl}/api/provisioning/provision`,
        {
          token,
          json: await demoProvisionBody(stack.db.handle.db, `olvido-${databaseTier}`, {
            customerId,
            databaseTier,
          }),
        },
      );
      expect(res.status).toBe(202);
      expect((await waitForTask(stack.adminUrl, token, res.body.taskId)).status).toBe("succeeded");
      provisioned.push(res.body.tenantInstanceId);
    }
    const [enterpriseId, standardId] = provisioned;
    if (!enterpriseId || !standardId) throw new Error("setup");
    const registry = createPostgresRegistry(stack.db.url ?? "");
    try {
      expect(await registry.isRegistered("FARUTECH_VET", standardId)).toBe(true);

      const erased = await call(`${stack.adminUrl}/api/customers/${customerId}/erase`, {
        token,
        method: "POST",
      });
      expect(erased.status).toBe(200);
      // El borrado pide la baja con purge de cada instancia; los workers la hacen.
      const instances = await waitFor(
        async () => {
          const rows = await stack.db.handle.db
            .select()
            .from(tenantInstances)
            .where(eq(tenantInstances.customerId, customerId));
          return rows.every((r) => r.dataDroppedAt) ? rows : undefined;
        },
        { timeoutMs: 30_000 },
      );
      expect(instances.map((i) => i.status)).toEqual(["decommissioned", "decommissioned"]);
      expect(instances.every((i) => i.connectionStringEncrypted === null)).toBe(true);
      expect(await registry.isRegistered("FARUTECH_VET", standardId)).toBe(false);
      const admin = new pg.Client({ connectionString: stack.db.url });
      await admin.connect();
      const left = await admin.query(
        `select (select count(*)::int from pg_database where datname = $1) as dbs,
                (select count(*)::int from pg_roles where rolname = $1) as roles`,
        [dedicatedName(enterpriseId)],
      );
      await admin.end();
      expect(left.rows).toEqual([{ dbs: 0, roles: 0 }]);
    } finally {
      await registry.close();
    }
  }, 90_000);
});

// Modo embebido (sin servidor): la base propia del tenant es una carpeta PGlite de datos suya.
describe("Enterprise tier provisioning, embedded (PGlite)", () => {
  let stack: TestStack;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "farutech-enterprise-"));
    stack = await startTestStack({
      database: "pglite",
      env: { PGLITE_DATA_DIR: join(dir, "control") },
    });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("gives the tenant its own PGlite data directory with the schema, stores its URL encrypted, and purge removes it", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "ent-embedded", {
          databaseTier: "enterprise",
        }),
      },
    );
    expect(res.status).toBe(202);
    const finished = (taskId: string) => waitForTask(stack.adminUrl, token, taskId);
    const task = await finished(res.body.taskId);
    expect(task.steps.map((s) => [s.name, s.status])).toEqual([
      ["create_database", "succeeded"],
      ["apply_schema", "succeeded"],
      ["activate", "succeeded"],
      ["request_welcome_notification", "succeeded"],
    ]);
    const [instance] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    const sealed = instance?.connectionStringEncrypted ?? "";
    expect(sealed).toMatch(/^v2\.test\./);
    const box = await createSecretBox(stack.env.ENCRYPTION_KEYS ?? "");
    const url = await box.decrypt(
      sealed,
      secretContext.connectionString(res.body.tenantInstanceId),
    );
    // Carpeta de la instalación (PGLITE_DATA_DIR no es `…/pglite`): `<carpeta>-tenants`.
    const tenantDir = join(
      `${join(dir, "control")}-tenants`,
      dedicatedName(res.body.tenantInstanceId),
    );
    expect(url).toBe(`pglite://${tenantDir}`);

    // La carpeta del tenant es una base PGlite con el esquema base del producto.
    const tenant = await PGlite.create(tenantDir);
    const meta = await tenant.query<{ value: string }>(
      "select value from farutech_tenant_metadata where key = 'product'",
    );
    await tenant.close();
    expect(meta.rows).toEqual([{ value: "FARUTECH_VET" }]);

    const del = await call<{ taskId: string }>(
      `${stack.adminUrl}/api/provisioning/${res.body.tenantInstanceId}?purge=true`,
      { token, method: "DELETE" },
    );
    expect(del.status).toBe(202);
    expect((await finished(del.body.taskId)).status).toBe("succeeded");
    expect(existsSync(tenantDir)).toBe(false);
  }, 60_000);
});
