import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  auditLog,
  outboxEvents,
  provisioningTasks,
  subscriptionFeatureOverrides,
} from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { overrideSchema } from "./schema";
import { entitlementsOf, insertInstance, newCustomer, planIdOf } from "./test-fixtures";

type Override = ReturnType<typeof overrideSchema.parse>;
type Problem = { detail: string; errors?: { path: string }[] };

describe.each(["postgres", "pglite"] as const)("subscription overrides on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let support: string;
  let vetProfessional: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    support = await h.token(["support"]);
    vetProfessional = await planIdOf(h.db.handle.db, "VET_PROFESSIONAL");
  });
  afterAll(async () => h?.stop());

  /** Instancia VET activa con suscripción activa al plan Profesional. */
  async function activeSubscription() {
    const customer = await newCustomer(h, admin);
    const instanceId = await insertInstance(h.db.handle.db, {
      customerId: customer.id,
      productCode: "FARUTECH_VET",
    });
    const res = await h.request<{ id: string }>("POST", "/api/subscriptions", {
      token: admin,
      json: {
        tenantInstanceId: instanceId,
        planId: vetProfessional,
        status: "active",
        startsAt: "2026-01-01T00:00:00Z",
      },
    });
    expect(res.status).toBe(201);
    return { subscriptionId: res.body.id, instanceId };
  }

  const addOverride = (subscriptionId: string, json: unknown, token = admin) =>
    h.request<Override>("POST", `/api/subscriptions/${subscriptionId}/overrides`, { token, json });

  const reasons = async (instanceId: string) =>
    (
      await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "entitlements.changed"))
    )
      .map((e) => (e.payload as { data: { tenantInstanceId: string; reason: string } }).data)
      .filter((d) => d.tenantInstanceId === instanceId)
      .map((d) => d.reason);

  /** Auditoría de una suscripción a la que se le agregó y quitó un override. */
  async function addedThenRemoved(subscriptionId: string) {
    const audit = await h.db.handle.db
      .select()
      .from(auditLog)
      .where(eq(auditLog.entityId, subscriptionId));
    expect(audit.map((a) => a.action)).toEqual([
      "subscription.created",
      "subscription.override_added",
      "subscription.override_removed",
    ]);
    return audit;
  }

  describe("happy path", () => {
    it("a Disable override turns a plan feature off and deleting it turns it back on", async () => {
      const { subscriptionId, instanceId } = await activeSubscription();
      const ent = () => entitlementsOf(h.db.handle.db, instanceId);
      expect((await ent()).features.BATCH_CONTROL).toBe(true);

      const created = await addOverride(subscriptionId, {
        featureCode: "BATCH_CONTROL",
        type: "disable",
      });
      expect(created.status).toBe(201);
      const override = overrideSchema.parse(created.body);
      expect(override).toMatchObject({
        subscriptionId,
        kind: "feature",
        featureCode: "BATCH_CONTROL",
        type: "disable",
        limitName: null,
        value: null,
      });
      expect(created.headers.get("location")).toBe(
        `/api/subscriptions/${subscriptionId}/overrides/${override.id}`,
      );
      // El Location del alta se puede leer (support también lee).
      const located = await h.request<Override>("GET", created.headers.get("location") ?? "", {
        token: support,
      });
      expect(located.status).toBe(200);
      expect(overrideSchema.parse(located.body)).toEqual(override);
      expect(located.headers.get("etag")).toBe('"v1"');
      expect(created.headers.get("etag")).toBe('"v1"');
      expect((await ent()).features.BATCH_CONTROL).toBe(false);
      expect((await ent()).features.DIGITAL_RECORDS).toBe(true);

      const list = await h.request<{ items: Override[] }>(
        "GET",
        `/api/subscriptions/${subscriptionId}/overrides`,
        { token: support },
      );
      expect(list.status).toBe(200);
      expect(list.body.items).toEqual([created.body]);

      const removed = await h.request(
        "DELETE",
        `/api/subscriptions/${subscriptionId}/overrides/${override.id}`,
        { token: admin },
      );
      expect(removed.status).toBe(204);
      expect((await ent()).features.BATCH_CONTROL).toBe(true);
      const after = await h.request<{ items: Override[] }>(
        "GET",
        `/api/subscriptions/${subscriptionId}/overrides`,
        { token: admin },
      );
      expect(after.body.items).toEqual([]);

      const audit = await addedThenRemoved(subscriptionId);
      expect(audit[1]?.after).toMatchObject({ id: override.id, featureCode: "BATCH_CONTROL" });
      expect(audit[2]?.before).toMatchObject({ id: override.id, overrideType: "disable" });
      expect(await reasons(instanceId)).toEqual([
        "subscription.created",
        "subscription.override_added",
        "subscription.override_removed",
      ]);
    });

    it("an Enable override adds a feature the plan lacks and limit overrides replace plan values", async () => {
      const { subscriptionId, instanceId } = await activeSubscription();
      const before = await entitlementsOf(h.db.handle.db, instanceId);
      expect(before.features.ADVANCED_REPORTS).toBe(false);
      expect(before.limits).toMatchObject({ storage_gb: 50, max_users: 50 });

      expect(
        (await addOverride(subscriptionId, { featureCode: "ADVANCED_REPORTS", type: "enable" }))
          .status,
      ).toBe(201);
      const storage = await addOverride(subscriptionId, { limitName: "storage_gb", value: 0 });
      expect(storage.status).toBe(201);
      expect(storage.body).toMatchObject({
        kind: "limit",
        limitName: "storage_gb",
        value: 0,
        featureCode: null,
        type: null,
      });
      expect(
        (await addOverride(subscriptionId, { limitName: "max_users", value: 120 })).status,
      ).toBe(201);

      const after = await entitlementsOf(h.db.handle.db, instanceId);
      expect(after.features.ADVANCED_REPORTS).toBe(true);
      expect(after.limits).toMatchObject({
        storage_gb: 0,
        max_users: 120,
        monthly_appointments: 3000,
      });

      const page = await h.request<{ items: Override[]; nextCursor: string | null }>(
        "GET",
        `/api/subscriptions/${subscriptionId}/overrides?limit=2`,
        { token: admin },
      );
      expect(page.body.items).toHaveLength(2);
      const rest = await h.request<{ items: Override[]; nextCursor: string | null }>(
        "GET",
        `/api/subscriptions/${subscriptionId}/overrides?limit=2&cursor=${page.body.nextCursor}`,
        { token: admin },
      );
      expect(rest.body.items).toHaveLength(1);
      expect(rest.body.nextCursor).toBeNull();
      expect(await reasons(instanceId)).toHaveLength(4);
    });
  });

  describe("errors", () => {
    it("names an unknown feature code or limit name of the product with 422", async () => {
      const { subscriptionId } = await activeSubscription();
      const unknown = await addOverride(subscriptionId, {
        featureCode: "TELEPORTATION",
        type: "enable",
      });
      expectProblem(unknown, 422, "unprocessable");
      expect((unknown.body as unknown as Problem).detail).toContain("TELEPORTATION");
      expect((unknown.body as unknown as Problem).errors?.[0]?.path).toBe("body.featureCode");

      // Existe, pero en el ERP: no es del producto de la suscripción.
      const foreign = await addOverride(subscriptionId, {
        featureCode: "MULTI_WAREHOUSE",
        type: "enable",
      });
      expectProblem(foreign, 422, "unprocessable");
      expect((foreign.body as unknown as Problem).detail).toContain("MULTI_WAREHOUSE");

      const limit = await addOverride(subscriptionId, { limitName: "warehouses", value: 3 });
      expectProblem(limit, 422, "unprocessable");
      expect((limit.body as unknown as Problem).detail).toContain("warehouses");
      expect((limit.body as unknown as Problem).errors?.[0]?.path).toBe("body.limitName");

      const rows = await h.db.handle.db
        .select()
        .from(subscriptionFeatureOverrides)
        .where(eq(subscriptionFeatureOverrides.subscriptionId, subscriptionId));
      expect(rows).toEqual([]);
    });

    it("rejects a second override of the same feature or limit with 409", async () => {
      const { subscriptionId } = await activeSubscription();
      expect(
        (await addOverride(subscriptionId, { featureCode: "STOCK_ALERTS", type: "enable" })).status,
      ).toBe(201);
      expectProblem(
        await addOverride(subscriptionId, { featureCode: "STOCK_ALERTS", type: "disable" }),
        409,
        "conflict",
      );
      expect(
        (await addOverride(subscriptionId, { limitName: "storage_gb", value: 10 })).status,
      ).toBe(201);
      expectProblem(
        await addOverride(subscriptionId, { limitName: "storage_gb", value: 20 }),
        409,
        "conflict",
      );
    });

    it("refuses to remove an override while a feature update of the instance is pending (409)", async () => {
      const { subscriptionId, instanceId } = await activeSubscription();
      const created = await addOverride(subscriptionId, { limitName: "max_users", value: 30 });
      expect(created.status).toBe(201);
      // Sin worker en la prueba: la tarea queda en cola, como cuando el worker va atrasado.
      const put = await h.request<{ taskId: string }>(
        "PUT",
        `/api/provisioning/${instanceId}/features`,
        { token: admin, json: { max_users: 40 } },
      );
      expect(put.status).toBe(202);
      const remove = () =>
        h.request("DELETE", `/api/subscriptions/${subscriptionId}/overrides/${created.body.id}`, {
          token: admin,
        });
      const refused = await remove();
      expectProblem(refused, 409, "conflict");
      expect(refused.body).toMatchObject({ taskId: put.body.taskId });
      await h.db.handle.db
        .update(provisioningTasks)
        .set({ status: "succeeded" })
        .where(eq(provisioningTasks.id, put.body.taskId));
      expect((await remove()).status).toBe(204);
    });

    it("answers 412 to a DELETE whose If-Match predates a value rewritten in place", async () => {
      const { subscriptionId, instanceId } = await activeSubscription();
      const created = await addOverride(subscriptionId, { limitName: "max_users", value: 30 });
      expect(created.status).toBe(201);
      const path = `/api/subscriptions/${subscriptionId}/overrides/${created.body.id}`;
      const etagOf = async () =>
        (await h.request("GET", path, { token: support })).headers.get("etag");
      expect(await etagOf()).toBe('"v1"');
      // Lo que hace apply_overrides del worker: mismo id, otro valor (sin tocar row_version).
      const o = subscriptionFeatureOverrides;
      const rewrite = (set: Partial<typeof o.$inferInsert>) =>
        h.db.handle.db.update(o).set(set).where(eq(o.id, created.body.id));
      await rewrite({ value: 200, requestedAt: new Date() });
      expect(await etagOf()).toBe('"v2"');
      // Un pedido que repite el mismo valor no cambia lo que se ve: el ETag sigue igual.
      await rewrite({ value: 200, requestedAt: new Date() });
      expect(await etagOf()).toBe('"v2"');

      const remove = (ifMatch: string) =>
        h.request("DELETE", path, { token: admin, headers: { "if-match": ifMatch } });
      expectProblem(await remove('"v1"'), 412, "precondition_failed");
      expectProblem(await remove('"v999"'), 412, "precondition_failed");
      const malformed = await remove("v2");
      expectProblem(malformed, 400, "validation_failed");
      expect((malformed.body as unknown as Problem).errors?.[0]?.path).toBe("header.if-match");
      // Nada se borró: el valor que el cliente no vio sigue vigente.
      expect((await entitlementsOf(h.db.handle.db, instanceId)).limits.max_users).toBe(200);
      expect((await h.request("GET", path, { token: admin })).status).toBe(200);

      expect((await remove('"v2"')).status).toBe(204);
      expectProblem(await h.request("GET", path, { token: admin }), 404, "not_found");
      const audit = await addedThenRemoved(subscriptionId);
      expect(audit[2]?.before).toMatchObject({ id: created.body.id, value: 200, rowVersion: 2 });
    });

    it("validates the body shape and the value", async () => {
      const { subscriptionId } = await activeSubscription();
      for (const json of [
        { limitName: "storage_gb", value: -1 },
        { limitName: "storage_gb", value: 1.5 },
        { featureCode: "STOCK_ALERTS", type: "maybe" },
        { featureCode: "STOCK_ALERTS" },
        { featureCode: "STOCK_ALERTS", type: "enable", limitName: "storage_gb", value: 1 },
        { featureCode: "stock alerts", type: "enable" },
        {},
      ]) {
        expectProblem(await addOverride(subscriptionId, json), 400, "validation_failed");
      }
      const pathsOf = async (json: unknown) =>
        ((await addOverride(subscriptionId, json)).body as unknown as Problem).errors?.map(
          (e) => e.path,
        );
      expect(await pathsOf({ featureCode: "STOCK_ALERTS" })).toEqual(["body.type"]);
      expect(await pathsOf({ value: 3 })).toEqual(["body.limitName"]);
      expect(await pathsOf({ limitName: "storage_gb", value: -1 })).toEqual(["body.value"]);
    });

    it("answers 404 for unknown subscriptions and overrides, including another subscription's", async () => {
      const missing = crypto.randomUUID();
      expectProblem(
        await addOverride(missing, { featureCode: "STOCK_ALERTS", type: "enable" }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", `/api/subscriptions/${missing}/overrides`, { token: admin }),
        404,
        "not_found",
      );
      const a = await activeSubscription();
      const b = await activeSubscription();
      const mine = await addOverride(a.subscriptionId, {
        featureCode: "STOCK_ALERTS",
        type: "enable",
      });
      expectProblem(
        await h.request(
          "DELETE",
          `/api/subscriptions/${b.subscriptionId}/overrides/${mine.body.id}`,
          { token: admin },
        ),
        404,
        "not_found",
      );
      // Leer el override de A a través de B tampoco lo muestra.
      for (const path of [
        `/api/subscriptions/${b.subscriptionId}/overrides/${mine.body.id}`,
        `/api/subscriptions/${a.subscriptionId}/overrides/${crypto.randomUUID()}`,
        `/api/subscriptions/${missing}/overrides/${mine.body.id}`,
      ]) {
        expectProblem(await h.request("GET", path, { token: admin }), 404, "not_found");
      }
      expectProblem(
        await h.request("GET", `/api/subscriptions/${a.subscriptionId}/overrides/nope`, {
          token: admin,
        }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request(
          "DELETE",
          `/api/subscriptions/${a.subscriptionId}/overrides/${crypto.randomUUID()}`,
          { token: admin },
        ),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("DELETE", `/api/subscriptions/${a.subscriptionId}/overrides/nope`, {
          token: admin,
        }),
        400,
        "validation_failed",
      );
      // El override de A sigue ahí.
      const list = await h.request<{ items: Override[] }>(
        "GET",
        `/api/subscriptions/${a.subscriptionId}/overrides`,
        { token: admin },
      );
      expect(list.body.items.map((o) => o.id)).toEqual([mine.body.id]);
    });
  });

  describe("security", () => {
    it("requires a token; support reads only; catalog_manager has no access", async () => {
      const { subscriptionId } = await activeSubscription();
      const path = `/api/subscriptions/${subscriptionId}/overrides`;
      expectProblem(await h.request("GET", path), 401, "unauthorized");
      expect((await h.request("GET", path, { token: support })).status).toBe(200);
      expectProblem(
        await addOverride(subscriptionId, { featureCode: "STOCK_ALERTS", type: "enable" }, support),
        403,
        "forbidden",
      );
      const catalog = await h.token(["catalog_manager"]);
      expectProblem(await h.request("GET", path, { token: catalog }), 403, "forbidden");
      const created = await addOverride(subscriptionId, {
        featureCode: "STOCK_ALERTS",
        type: "enable",
      });
      expectProblem(
        await h.request("DELETE", `${path}/${created.body.id}`, { token: support }),
        403,
        "forbidden",
      );
      expectProblem(await h.request("GET", `${path}/${created.body.id}`), 401, "unauthorized");
      expectProblem(
        await h.request("GET", `${path}/${created.body.id}`, { token: catalog }),
        403,
        "forbidden",
      );
      const list = await h.request<{ items: Override[] }>("GET", path, { token: admin });
      expect(list.body.items).toHaveLength(1);
    });
  });
});
