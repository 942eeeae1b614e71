import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  auditLog,
  outboxEvents,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import { seedDemo } from "../../db/seed";
import {
  deprovisionResponseSchema,
  featureUpdateResponseSchema,
  provisionResponseSchema,
} from "../../functions/routes/provisioning/schema";
import { demoProvisionBody } from "../../test/support/demo";
import { call, expectProblem } from "../../test/support/http";
import { startTestStack, type TestStack, waitForTask } from "../../test/support/stack";
import { createPostgresRegistry, sharedDatabaseName } from "./shared-registry";

// Cota de frescura del edge (issue 5) más margen para la petición.
const FRESHNESS_MS = 2_500;
interface Entitlements {
  status: string;
  features: Record<string, boolean>;
  limits: Record<string, number>;
}

// Por la pila real: función admin → JetStream → worker de provisioning → edge.
describe.each(["postgres", "pglite"] as const)(
  "deprovision and update_features on %s",
  (database) => {
    let stack: TestStack;
    let token: string;

    beforeAll(async () => {
      stack = await startTestStack({ database });
      await seedDemo(stack.db.handle.db);
      token = await stack.adminToken();
    });
    afterAll(async () => {
      await stack?.stop();
    });

    const db = () => stack.db.handle.db;
    const api = (path: string, init: Parameters<typeof call>[1] = {}) =>
      call(`${stack.adminUrl}${path}`, { token, ...init });
    const finished = (taskId: string) => waitForTask(stack.adminUrl, token, taskId);
    const entitlements = async (id: string) => {
      const r = await call<Entitlements>(`${stack.edgeUrl}/v1/entitlements?instanceId=${id}`, {
        token,
      });
      expect(r.status).toBe(200);
      return r.body;
    };

    it("provisions, updates features, then deprovisions, with the edge following each step", async () => {
      const provisioned = await call(`${stack.adminUrl}/api/provisioning/provision`, {
        token,
        json: await demoProvisionBody(db(), `deprov-${database}`),
      });
      expect(provisioned.status).toBe(202);
      const { tenantInstanceId: id, taskId } = provisionResponseSchema.parse(provisioned.body);
      expect((await finished(taskId)).status).toBe("succeeded");
      const before = await entitlements(id);
      // VET_STARTER: 5 usuarios y sin reportes avanzados.
      expect(before).toMatchObject({
        status: "active",
        limits: { max_users: 5 },
        features: { ADVANCED_REPORTS: false, DIGITAL_RECORDS: true },
      });

      const put = await api(`/api/provisioning/${id}/features`, {
        method: "PUT",
        json: { max_users: 200, advanced_reports: true, DIGITAL_RECORDS: false },
      });
      expect(put.status).toBe(202);
      const update = featureUpdateResponseSchema.parse(put.body);
      const updateTask = await finished(update.taskId);
      expect(updateTask.status).toBe("succeeded");
      expect(updateTask.steps.map((s) => [s.name, s.status])).toEqual([
        ["apply_overrides", "succeeded"],
      ]);
      // El edge cachea: el cambio debe verse dentro de su cota de frescura (2 s).
      await expect
        .poll(() => entitlements(id), { timeout: FRESHNESS_MS })
        .toMatchObject({
          status: "active",
          limits: { max_users: 200, storage_gb: 5 },
          features: { ADVANCED_REPORTS: true, DIGITAL_RECORDS: false, BASIC_REPORTING: true },
        });

      // Un segundo PUT actualiza los overrides existentes en vez de duplicarlos.
      const second = await api(`/api/provisioning/${id}/features`, {
        method: "PUT",
        json: { max_users: 20, DIGITAL_RECORDS: true },
      });
      expect((await finished(featureUpdateResponseSchema.parse(second.body).taskId)).status).toBe(
        "succeeded",
      );
      await expect
        .poll(() => entitlements(id), { timeout: FRESHNESS_MS })
        .toMatchObject({
          limits: { max_users: 20 },
          features: { ADVANCED_REPORTS: true, DIGITAL_RECORDS: true },
        });
      const [sub] = await db()
        .select()
        .from(subscriptions)
        .where(eq(subscriptions.tenantInstanceId, id));
      const overrides = await db()
        .select()
        .from(subscriptionFeatureOverrides)
        .where(eq(subscriptionFeatureOverrides.subscriptionId, sub?.id ?? ""));
      expect(
        overrides
          .map((o) => [o.featureCode ?? o.limitName, o.overrideType ?? o.value])
          .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      ).toEqual([
        ["ADVANCED_REPORTS", "enable"],
        ["DIGITAL_RECORDS", "enable"],
        ["max_users", 20],
      ]);

      const del = await api(`/api/provisioning/${id}?purge=true`, { method: "DELETE" });
      expect(del.status).toBe(202);
      const deprov = deprovisionResponseSchema.parse(del.body);
      const deprovTask = await finished(deprov.taskId);
      expect(deprovTask.status).toBe("succeeded");
      expect(deprovTask.kind).toBe("deprovision");
      expect(deprovTask.steps.map((s) => [s.name, s.status])).toEqual([
        ["suspend_instance", "succeeded"],
        ["decommission", "succeeded"],
        ["drop_tenant_data", "succeeded"],
      ]);

      const instance = await api(`/api/tenant-instances/${id}`);
      expect(instance.body).toMatchObject({
        status: "decommissioned",
        subscription: { status: "cancelled" },
        // purge=true: los datos se borran ya, no al vencer la retención.
        decommissionedAt: expect.any(String),
        dataDroppedAt: expect.any(String),
      });
      await expect
        .poll(async () => (await entitlements(id)).status, { timeout: FRESHNESS_MS })
        .toBe("decommissioned");
      const gone = await entitlements(id);
      expect(Object.values(gone.features).some(Boolean)).toBe(false);

      // Ya dada de baja: otro DELETE es un 409 y no crea tareas.
      expectProblem(await api(`/api/provisioning/${id}`, { method: "DELETE" }), 409, "conflict");

      const audit = await db()
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.entityId, id), eq(auditLog.actor, "worker:provisioning")));
      expect(audit.map((a) => a.action)).toEqual([
        "tenant_instance.activated",
        "tenant_instance.suspended",
        "tenant_instance.decommissioned",
        "tenant_instance.data_dropped",
      ]);
      expect(audit[2]?.after).toMatchObject({ purgeRequested: true });
      // purge=true: la fila del tenant en la base compartida se borró en la misma tarea.
      expect(audit[3]?.after).toMatchObject({
        reason: "purge",
        databaseTier: "standard",
        rowsDeleted: 1,
        taskId: deprov.taskId,
      });
      const reasons = (await db().select().from(outboxEvents))
        .filter((e) => e.type === "entitlements.changed")
        .map((e) => (e.payload as { data: { tenantInstanceId: string; reason: string } }).data)
        .filter((d) => d.tenantInstanceId === id)
        .map((d) => d.reason);
      expect(reasons).toEqual([
        "activated",
        "features_updated",
        "features_updated",
        "deprovision_suspended",
        "decommissioned",
      ]);
      const [row] = await db().select().from(tenantInstances).where(eq(tenantInstances.id, id));
      expect(row?.status).toBe("decommissioned");
      expect(row?.decommissionedAt).toBeInstanceOf(Date);
      expect(row?.dataDroppedAt).toBeInstanceOf(Date);
      if (database === "postgres") {
        const registry = createPostgresRegistry(stack.db.url ?? "");
        expect(await registry.isRegistered("FARUTECH_VET", id)).toBe(false);
        await registry.close();
      }
    });

    it("drops the data of an instance decommissioned without purge when purge is asked later", async () => {
      const provisioned = await call(`${stack.adminUrl}/api/provisioning/provision`, {
        token,
        json: await demoProvisionBody(db(), `late-purge-${database}`),
      });
      const { tenantInstanceId: id, taskId } = provisionResponseSchema.parse(provisioned.body);
      expect((await finished(taskId)).status).toBe("succeeded");
      const kept = await api(`/api/provisioning/${id}`, { method: "DELETE" });
      const keptTask = await finished(deprovisionResponseSchema.parse(kept.body).taskId);
      expect(keptTask.status).toBe("succeeded");
      // Sin purge, la app hija deja ya de ver sus filas (como el rol Enterprise sin LOGIN).
      expect(keptTask.steps.map((s) => [s.name, s.status])).toEqual([
        ["suspend_instance", "succeeded"],
        ["decommission", "succeeded"],
        ["disable_tenant_access", "succeeded"],
      ]);
      if (database === "postgres") {
        const url = new URL(stack.db.url ?? "");
        url.pathname = `/${sharedDatabaseName(url.pathname.slice(1), "FARUTECH_VET")}`;
        const shared = new pg.Client({ connectionString: url.toString() });
        await shared.connect();
        try {
          const { rows } = await shared.query(
            "select deactivated_at from farutech_tenants where tenant_id = $1",
            [id],
          );
          expect(rows).toEqual([{ deactivated_at: expect.any(Date) }]);
        } finally {
          await shared.end();
        }
      }
      const [decommissioned] = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, id));
      // Sin purge: los datos esperan a la retención.
      expect(decommissioned?.dataDroppedAt).toBeNull();

      const purge = await api(`/api/provisioning/${id}?purge=true`, { method: "DELETE" });
      expect(purge.status).toBe(202);
      const purgeTask = await finished(deprovisionResponseSchema.parse(purge.body).taskId);
      expect(purgeTask.status).toBe("succeeded");
      // Solo el borrado: la instancia no pasa otra vez por suspendida ni por la baja.
      expect(purgeTask.steps.map((s) => [s.name, s.status])).toEqual([
        ["drop_tenant_data", "succeeded"],
      ]);
      const [row] = await db().select().from(tenantInstances).where(eq(tenantInstances.id, id));
      expect(row).toMatchObject({
        status: "decommissioned",
        decommissionedAt: decommissioned?.decommissionedAt,
        dataDroppedAt: expect.any(Date),
      });
      if (database === "postgres") {
        const registry = createPostgresRegistry(stack.db.url ?? "");
        expect(await registry.isRegistered("FARUTECH_VET", id)).toBe(false);
        await registry.close();
      }
    });
  },
);
