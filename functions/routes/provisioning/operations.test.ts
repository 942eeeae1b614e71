import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import {
  auditLog,
  modules,
  outboxEvents,
  provisioningTaskSteps,
  provisioningTasks,
  tenantInstances,
} from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { demoProvisionBody } from "../../../test/support/demo";
import { expectProblem } from "../../../test/support/http";
import { createTestInstance } from "../tenant-instances/test-fixtures";
import { deprovisionResponseSchema, featureUpdateResponseSchema } from "./schema";

describe.each(["postgres", "pglite"] as const)("provisioning operations on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const tasksOf = (id: string) =>
    db().select().from(provisioningTasks).where(eq(provisioningTasks.tenantInstanceId, id));
  const eventsOf = async (id: string) =>
    (await db().select().from(outboxEvents)).filter(
      (e) => (e.payload as { data: { tenantInstanceId?: string } }).data.tenantInstanceId === id,
    );
  const auditOf = (id: string) => db().select().from(auditLog).where(eq(auditLog.entityId, id));
  const putFeatures = (id: string, json: unknown, token = admin, headers = {}) =>
    h.request("PUT", `/api/provisioning/${id}/features`, { token, json, headers });
  const deprovision = (id: string, query = "", token = admin, headers = {}) =>
    h.request("DELETE", `/api/provisioning/${id}${query}`, { token, headers });

  describe("happy path", () => {
    it("accepts a feature update as an update_features task holding the normalized map", async () => {
      const inst = await createTestInstance(db());
      const res = await putFeatures(inst.id, { max_users: 200, advanced_reports: true });
      expect(res.status).toBe(202);
      const accepted = featureUpdateResponseSchema.parse(res.body);
      expect(accepted).toEqual({
        tenantInstanceId: inst.id,
        taskId: accepted.taskId,
        kind: "update_features",
        status: "updating_features",
        features: { max_users: 200, ADVANCED_REPORTS: true },
      });
      expect(res.headers.get("location")).toBe(`/api/provisioning/tasks/${accepted.taskId}`);

      const [task] = await tasksOf(inst.id);
      expect(task).toMatchObject({
        id: accepted.taskId,
        kind: "update_features",
        status: "queued",
        payload: { features: { max_users: 200, ADVANCED_REPORTS: true } },
      });
      const events = await eventsOf(inst.id);
      expect(events.map((e) => [e.subject, e.type, (e.payload as { data: unknown }).data])).toEqual(
        [
          [
            "provisioning.tasks.update_features",
            "provisioning.update_features_requested",
            { taskId: accepted.taskId, tenantInstanceId: inst.id, kind: "update_features" },
          ],
        ],
      );
      expect(events[0]?.correlationId).toBe(task?.correlationId);
      const audit = await auditOf(inst.id);
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({
        action: "tenant_instance.features_update_requested",
        after: { taskId: accepted.taskId, features: { max_users: 200, ADVANCED_REPORTS: true } },
        correlationId: task?.correlationId,
      });

      // La tarea se consulta por la API de tareas.
      const read = await h.request("GET", `/api/provisioning/tasks/${accepted.taskId}`, {
        token: admin,
      });
      expect(read.body).toMatchObject({ kind: "update_features", status: "queued", steps: [] });
    });

    it("treats X-Correlation-Id as a trace id: the same request repeats its task, another request is another task", async () => {
      const [one, two] = [await createTestInstance(db()), await createTestInstance(db())];
      const incident = { "x-correlation-id": `incident-${newId().slice(0, 8)}` };
      const first = await putFeatures(one.id, { max_users: 50 }, admin, incident);
      expect(first.status).toBe(202);
      // La misma petición con el mismo id: la misma tarea.
      const repeated = await putFeatures(one.id, { max_users: 50 }, admin, incident);
      expect(repeated.status).toBe(202);
      expect(repeated.body).toEqual(first.body);
      expect(repeated.headers.get("idempotent-replayed")).toBe("true");
      // Otra instancia (y una baja) bajo el mismo id de incidente: tareas nuevas, no un 422.
      const other = await putFeatures(two.id, { max_users: 50 }, admin, incident);
      expect(other.status).toBe(202);
      expect(other.headers.get("idempotent-replayed")).toBeNull();
      const gone = await deprovision(two.id, "", admin, incident);
      expect(gone.status).toBe(202);
      const ids = [first, other, gone].map((r) => (r.body as { taskId: string }).taskId);
      expect(new Set(ids).size).toBe(3);
      const tasks = await db()
        .select({ id: provisioningTasks.id })
        .from(provisioningTasks)
        .where(eq(provisioningTasks.correlationId, incident["x-correlation-id"]));
      expect(tasks.map((t) => t.id).sort()).toEqual([...ids].sort());
    });

    it("accepts a deprovision, records purge and answers the same task while it is queued", async () => {
      const inst = await createTestInstance(db());
      const res = await deprovision(inst.id, "?purge=true");
      expect(res.status).toBe(202);
      const accepted = deprovisionResponseSchema.parse(res.body);
      expect(accepted).toMatchObject({ tenantInstanceId: inst.id, status: "deprovisioning" });
      expect(res.headers.get("location")).toBe(`/api/provisioning/tasks/${accepted.taskId}`);

      const again = await deprovision(inst.id);
      expect(again.status).toBe(202);
      expect(again.body).toEqual(res.body);
      expect(again.headers.get("idempotent-replayed")).toBe("true");

      const tasks = await tasksOf(inst.id);
      expect(tasks).toHaveLength(1);
      expect(tasks[0]).toMatchObject({
        id: accepted.taskId,
        kind: "deprovision",
        status: "queued",
        payload: { purge: true },
      });
      const events = await eventsOf(inst.id);
      expect(events.map((e) => [e.subject, (e.payload as { data: unknown }).data])).toEqual([
        [
          "provisioning.tasks.deprovision",
          { taskId: accepted.taskId, tenantInstanceId: inst.id, kind: "deprovision" },
        ],
      ]);
      expect((await auditOf(inst.id)).map((a) => a.action)).toEqual([
        "tenant_instance.deprovision_requested",
      ]);
    });

    it("answers 409 to a purge while a deprovision without purge is running", async () => {
      const inst = await createTestInstance(db());
      const res = await deprovision(inst.id);
      expect(res.status).toBe(202);
      const accepted = deprovisionResponseSchema.parse(res.body);
      expect(accepted.purge).toBe(false);
      const purge = await deprovision(inst.id, "?purge=true");
      expectProblem(purge, 409, "conflict");
      expect(purge.body).toMatchObject({ taskId: accepted.taskId, purge: false });
      expect(await tasksOf(inst.id)).toHaveLength(1);
    });

    it("records purge=false by default and honours If-Match", async () => {
      const inst = await createTestInstance(db());
      expectProblem(
        await deprovision(inst.id, "", admin, { "if-match": '"v9"' }),
        412,
        "precondition_failed",
      );
      const res = await deprovision(inst.id, "", admin, { "if-match": '"v1"' });
      expect(res.status).toBe(202);
      expect(res.body).toMatchObject({ purge: false });
      const [task] = await tasksOf(inst.id);
      expect(task?.payload).toEqual({ purge: false });
    });

    it("turns a repeated request with its correlation id into a no-op; another body is another task", async () => {
      const inst = await createTestInstance(db());
      const headers = { "x-correlation-id": `corr-${inst.id}` };
      const first = await putFeatures(inst.id, { STOCK_ALERTS: true }, admin, headers);
      const second = await putFeatures(inst.id, { STOCK_ALERTS: true }, admin, headers);
      expect(first.status).toBe(202);
      expect(second.status).toBe(202);
      expect(second.headers.get("idempotent-replayed")).toBe("true");
      expect(second.body).toEqual(first.body);
      expect(await tasksOf(inst.id)).toHaveLength(1);
      const other = await putFeatures(inst.id, { STOCK_ALERTS: false }, admin, headers);
      expect(other.status).toBe(202);
      expect(other.headers.get("idempotent-replayed")).toBeNull();
      const tasks = await tasksOf(inst.id);
      expect(tasks).toHaveLength(2);
      expect(tasks.map((t) => t.correlationId)).toEqual([`corr-${inst.id}`, `corr-${inst.id}`]);
    });
  });

  describe("errors", () => {
    it("refuses a feature update over a stale If-Match (412) and takes the current one", async () => {
      const inst = await createTestInstance(db());
      const read = await h.request("GET", `/api/tenant-instances/${inst.id}`, { token: admin });
      const etag = read.headers.get("etag") ?? "";
      // Otro operador cambia la instancia entre la lectura y la escritura.
      expect(
        (
          await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
            token: admin,
            json: { environment: "staging" },
          })
        ).status,
      ).toBe(200);
      expectProblem(
        await putFeatures(inst.id, { max_users: 9 }, admin, { "if-match": etag }),
        412,
        "precondition_failed",
      );
      expect(await tasksOf(inst.id)).toEqual([]);
      const fresh = await h.request("GET", `/api/tenant-instances/${inst.id}`, { token: admin });
      const ok = await putFeatures(inst.id, { max_users: 9 }, admin, {
        "if-match": fresh.headers.get("etag") ?? "",
      });
      expect(ok.status).toBe(202);
      // Dos operadores con la misma lectura: el segundo PUT de features llega con un ETag viejo.
      expectProblem(
        await putFeatures(inst.id, { max_users: 12 }, admin, {
          "if-match": fresh.headers.get("etag") ?? "",
        }),
        412,
        "precondition_failed",
      );
      expect(await tasksOf(inst.id)).toHaveLength(1);
    });

    it("refuses a feature update or deprovision whose If-Match carries a view digest no longer served", async () => {
      const inst = await createTestInstance(db());
      const path = `/api/tenant-instances/${inst.id}`;
      const read = (await h.request("GET", path, { token: admin })).headers.get("etag") ?? "";
      // La suscripción cambia y la instancia no: su versión sigue siendo 1, su ETag ya no.
      const moved = await h.request("PATCH", `/api/subscriptions/${inst.subscriptionId}`, {
        token: admin,
        json: { expiresAt: "2099-01-01T00:00:00.000Z" },
      });
      expect(moved.status).toBe(200);
      const current = (await h.request("GET", path, { token: admin })).headers.get("etag") ?? "";
      expect(current).not.toBe(read);
      expectProblem(
        await putFeatures(inst.id, { max_users: 9 }, admin, { "if-match": read }),
        412,
        "precondition_failed",
      );
      expectProblem(
        await deprovision(inst.id, "", admin, { "if-match": read }),
        412,
        "precondition_failed",
      );
      expect(await tasksOf(inst.id)).toEqual([]);
      const ok = await putFeatures(inst.id, { max_users: 9 }, admin, { "if-match": current });
      expect(ok.status).toBe(202);
    });

    it("answers 404 for unknown instances and 400 for malformed ids or bodies", async () => {
      const unknown = newId();
      expectProblem(await deprovision(unknown), 404, "not_found");
      expectProblem(await putFeatures(unknown, { max_users: 3 }), 404, "not_found");
      expectProblem(await deprovision("nope"), 400, "validation_failed");
      expectProblem(await deprovision(unknown, "?purge=maybe"), 400, "validation_failed");
      const inst = await createTestInstance(db());
      for (const body of [
        {},
        { max_users: -1 },
        { max_users: "x" },
        { max_users: 1.5 },
        [1],
        null,
      ]) {
        expectProblem(await putFeatures(inst.id, body), 400, "validation_failed");
      }
      const dup = await putFeatures(inst.id, { stock_alerts: true, STOCK_ALERTS: false });
      expectProblem(dup, 400, "validation_failed");
      expect(await tasksOf(inst.id)).toEqual([]);
    });

    it("names unknown feature codes and limit names with a 422", async () => {
      const inst = await createTestInstance(db());
      const res = await putFeatures(inst.id, { NOT_A_FEATURE: true, nope_limit: 3, max_users: 9 });
      expectProblem(res, 422, "unprocessable");
      expect((res.body as { unknownCodes: string[] }).unknownCodes.sort()).toEqual([
        "NOT_A_FEATURE",
        "nope_limit",
      ]);
      const paths = (res.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths.sort()).toEqual(["body.NOT_A_FEATURE", "body.nope_limit"]);
      // Un código de otro producto tampoco vale (PRODUCTION_ORDERS es del ERP).
      expectProblem(await putFeatures(inst.id, { PRODUCTION_ORDERS: true }), 422, "unprocessable");
      expect(await tasksOf(inst.id)).toEqual([]);
      expect(await eventsOf(inst.id)).toEqual([]);
    });

    it("brings the data drop of a decommissioned instance forward with purge, once", async () => {
      const gone = await createTestInstance(db(), {
        status: "decommissioned",
        subscriptionStatus: "cancelled",
      });
      const res = await deprovision(gone.id, "?purge=true");
      expect(res.status).toBe(202);
      const accepted = deprovisionResponseSchema.parse(res.body);
      expect(accepted).toMatchObject({ purge: true, status: "deprovisioning" });
      // Un segundo pedido mientras corre devuelve la misma tarea.
      expect((await deprovision(gone.id, "?purge=true")).body).toEqual(res.body);
      const tasks = await tasksOf(gone.id);
      expect(tasks).toHaveLength(1);
      expect(tasks[0]).toMatchObject({
        kind: "deprovision",
        payload: { purge: true, dataOnly: true },
      });
      expect((await auditOf(gone.id)).map((a) => a.action)).toEqual([
        "tenant_instance.purge_requested",
      ]);

      // Con los datos ya borrados no queda nada que adelantar.
      await db()
        .update(provisioningTasks)
        .set({ status: "succeeded" })
        .where(eq(provisioningTasks.id, accepted.taskId));
      await db()
        .update(tenantInstances)
        .set({ dataDroppedAt: new Date() })
        .where(eq(tenantInstances.id, gone.id));
      const dropped = await deprovision(gone.id, "?purge=true");
      expectProblem(dropped, 409, "conflict");
      expect((dropped.body as { detail: string }).detail).toMatch(/data was dropped/);
    });

    it("refuses a new override while an accepted feature update of the instance is still pending", async () => {
      // El PUT aceptado antes se aplicaría después y pisaría el override más nuevo (el worker
      // ordena por el momento en que se aceptó cada uno): como al borrar un override, 409.
      const inst = await createTestInstance(db());
      expect((await putFeatures(inst.id, { advanced_reports: false })).status).toBe(202);
      const added = await h.request("POST", `/api/subscriptions/${inst.subscriptionId}/overrides`, {
        token: admin,
        json: { featureCode: "ADVANCED_REPORTS", type: "enable" },
      });
      expectProblem(added, 409, "conflict");
      expect((added.body as { taskId?: string }).taskId).toEqual(expect.any(String));
    });

    it("refuses to delete a feature or its module while an accepted feature update still names it", async () => {
      // El worker fallaría para siempre esa tarea (y los demás cambios del mismo PUT).
      const inst = await createTestInstance(db());
      const [mod] = await db().select().from(modules).where(eq(modules.productId, inst.productId));
      if (!mod) throw new Error("demo module missing");
      const code = `PENDING_${newId().slice(0, 6).toUpperCase()}`;
      const created = await h.request<{ id: string }>("POST", `/api/modules/${mod.id}/features`, {
        token: admin,
        json: { code, name: "Pendiente" },
      });
      expect(created.status).toBe(201);
      expect((await putFeatures(inst.id, { [code]: true })).status).toBe(202);
      const deleted = await h.request("DELETE", `/api/features/${created.body.id}`, {
        token: admin,
      });
      expectProblem(deleted, 409, "conflict");
      expect(deleted.body).toMatchObject({ featuresInUse: [code], pendingTasks: 1 });
      expectProblem(
        await h.request("DELETE", `/api/modules/${mod.id}`, { token: admin }),
        409,
        "conflict",
      );
    });

    it("refuses to touch decommissioned instances or ones still being provisioned", async () => {
      const gone = await createTestInstance(db(), {
        status: "decommissioned",
        subscriptionStatus: "cancelled",
      });
      const dep = await deprovision(gone.id);
      expectProblem(dep, 409, "conflict");
      expect(dep.body).toMatchObject({ currentStatus: "decommissioned" });
      expectProblem(await putFeatures(gone.id, { max_users: 3 }), 409, "conflict");

      const body = await demoProvisionBody(db(), `ops-${newId().slice(0, 8)}`);
      const provisioned = await h.request<{ tenantInstanceId: string }>(
        "POST",
        "/api/provisioning/provision",
        { token: admin, json: body },
      );
      expect(provisioned.status).toBe(202);
      const pending = provisioned.body.tenantInstanceId;
      expectProblem(await deprovision(pending), 409, "conflict");
      // Los overrides sí pueden pedirse: la suscripción ya existe (pending).
      expect((await putFeatures(pending, { max_users: 7 })).status).toBe(202);

      const leaving = await createTestInstance(db());
      expect((await deprovision(leaving.id)).status).toBe(202);
      expectProblem(await putFeatures(leaving.id, { max_users: 3 }), 409, "conflict");
      expect((await tasksOf(gone.id)).length).toBe(0);
    });
  });

  // La cadena de una base Enterprise se guarda antes de crear su rol: rotar a mitad del alta
  // fallaba (rol inexistente) o, peor, el alta volvía a poner la contraseña vieja después.
  describe("credential rotation", () => {
    const rotate = (id: string, token = admin) =>
      h.request<{ taskId: string; kind: string }>(
        "POST",
        `/api/provisioning/${id}/rotate-credentials`,
        { token },
      );
    const enterprise = async (status: "provisioning" | "active" | "failed") => {
      const instance = await createTestInstance(db(), { status });
      await db()
        .update(tenantInstances)
        .set({
          databaseTier: "enterprise",
          connectionStringEncrypted: "v2.k.iv.ct",
          encryptionKeyId: "k",
        })
        .where(eq(tenantInstances.id, instance.id));
      return instance;
    };

    it("accepts an active Enterprise instance once (the same task while pending), and nothing else", async () => {
      const ready = await enterprise("active");
      const first = await rotate(ready.id);
      expect(first.status).toBe(202);
      expect(first.body.kind).toBe("rotate_credentials");
      const again = await rotate(ready.id);
      expect(again.status).toBe(202);
      expect(again.body.taskId).toBe(first.body.taskId);
      expect(again.headers.get("idempotent-replayed")).toBe("true");

      for (const status of ["provisioning", "failed"] as const) {
        const half = await enterprise(status);
        const res = await rotate(half.id);
        expectProblem(res, 409, "conflict");
        expect(res.body).toMatchObject({ currentStatus: status });
      }
      const standard = await createTestInstance(db());
      expectProblem(await rotate(standard.id), 409, "conflict");
      expectProblem(await rotate(newId()), 404, "not_found");
      const support = await h.token(["support"]);
      expectProblem(await rotate(ready.id, support), 403, "forbidden");
    });
  });

  describe("task list", () => {
    type TaskPage = {
      items: { taskId: string; kind: string; status: string; steps: { name: string }[] }[];
      nextCursor: string | null;
    };
    const list = (query: string, token = admin) =>
      h.request<TaskPage>("GET", `/api/provisioning/tasks${query}`, { token });

    it("gives one task a strong ETag that changes when the task or its steps do", async () => {
      const inst = await createTestInstance(db());
      const accepted = await putFeatures(inst.id, { max_users: 10 });
      const taskId = (accepted.body as { taskId: string }).taskId;
      const get = async () =>
        (await h.request("GET", `/api/provisioning/tasks/${taskId}`, { token: admin })).headers.get(
          "etag",
        );
      const queued = await get();
      expect(queued).toMatch(/^"[\x21\x23-\x7e]+"$/);
      expect(await get()).toBe(queued);
      await db()
        .insert(provisioningTaskSteps)
        .values({ taskId, name: "record_features", position: 1, status: "running" });
      const stepped = await get();
      expect(stepped).not.toBe(queued);
      await db()
        .update(provisioningTasks)
        .set({ status: "running" })
        .where(eq(provisioningTasks.id, taskId));
      expect(await get()).not.toBe(stepped);
    });

    it("lists an instance's tasks oldest first with their steps, filters and pages", async () => {
      const inst = await createTestInstance(db());
      const other = await createTestInstance(db());
      const first = await putFeatures(inst.id, { max_users: 10 });
      await db()
        .update(provisioningTasks)
        .set({ status: "dead_lettered" })
        .where(eq(provisioningTasks.id, (first.body as { taskId: string }).taskId));
      await putFeatures(other.id, { max_users: 11 });
      const second = await putFeatures(inst.id, { max_users: 12 });
      const secondId = (second.body as { taskId: string }).taskId;
      await db()
        .insert(provisioningTaskSteps)
        .values([
          { taskId: secondId, name: "record_features", position: 1, status: "succeeded" },
          { taskId: secondId, name: "emit_entitlements", position: 2, status: "running" },
        ]);

      const all = await list(`?tenantInstanceId=${inst.id}`);
      expect(all.status).toBe(200);
      expect(all.body.items.map((t) => t.taskId)).toEqual([
        (first.body as { taskId: string }).taskId,
        secondId,
      ]);
      expect(all.body.items[1]?.steps.map((s) => s.name)).toEqual([
        "record_features",
        "emit_entitlements",
      ]);
      expect(all.body.items[0]?.steps).toEqual([]);
      // El GET de una tarea y la lista muestran lo mismo.
      const one = await h.request("GET", `/api/provisioning/tasks/${secondId}`, { token: admin });
      expect(all.body.items[1]).toEqual(one.body);

      const dead = await list(`?tenantInstanceId=${inst.id}&status=dead_lettered`);
      expect(dead.body.items.map((t) => t.status)).toEqual(["dead_lettered"]);
      expect((await list(`?tenantInstanceId=${inst.id}&kind=provision`)).body.items).toEqual([]);

      const page1 = await list(`?tenantInstanceId=${inst.id}&limit=1`);
      expect(page1.body.items.map((t) => t.taskId)).toEqual([all.body.items[0]?.taskId]);
      const page2 = await list(
        `?tenantInstanceId=${inst.id}&limit=1&cursor=${page1.body.nextCursor ?? ""}`,
      );
      expect(page2.body.items.map((t) => t.taskId)).toEqual([secondId]);
      expect(page2.body.nextCursor).toBeNull();
    });

    it("rejects unknown filters and values, and needs a reading role", async () => {
      expectProblem(await list("?instanceId=x"), 400, "validation_failed");
      expectProblem(await list("?status=done"), 400, "validation_failed");
      expectProblem(await list("?tenantInstanceId=42"), 400, "validation_failed");
      expectProblem(await h.request("GET", "/api/provisioning/tasks"), 401, "unauthorized");
      expectProblem(await list("", await h.token(["tenant_app"])), 403, "forbidden");
      expect((await list("", await h.token(["support"]))).status).toBe(200);
    });
  });

  describe("security", () => {
    it("requires platform_admin for both operations", async () => {
      const inst = await createTestInstance(db());
      expectProblem(await h.request("DELETE", `/api/provisioning/${inst.id}`), 401, "unauthorized");
      expectProblem(
        await h.request("PUT", `/api/provisioning/${inst.id}/features`, { json: { max_users: 3 } }),
        401,
        "unauthorized",
      );
      for (const role of ["support", "catalog_manager", "tenant_app"]) {
        const token = await h.token([role]);
        expectProblem(await deprovision(inst.id, "", token), 403, "forbidden");
        expectProblem(await putFeatures(inst.id, { max_users: 3 }, token), 403, "forbidden");
      }
      expect(await tasksOf(inst.id)).toEqual([]);
    });
  });
});
