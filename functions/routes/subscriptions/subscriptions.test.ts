import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { demoProducts } from "../../../db/demo-data";
import { auditLog, outboxEvents } from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { lockWaiters } from "../../../test/support/lock-waiters";
import { subscriptionSchema } from "./schema";
import {
  entitlementsOf,
  insertInstance,
  newCustomer,
  planIdOf,
  productIdOf,
} from "./test-fixtures";

type Sub = ReturnType<typeof subscriptionSchema.parse>;

describe.each(["postgres", "pglite"] as const)("subscriptions on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let support: string;
  let vetStarter: string;
  let vetEnterprise: string;
  let erpStandard: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    support = await h.token(["support"]);
    vetStarter = await planIdOf(h.db.handle.db, "VET_STARTER");
    vetEnterprise = await planIdOf(h.db.handle.db, "VET_ENTERPRISE");
    erpStandard = await planIdOf(h.db.handle.db, "ERP_STANDARD");
  });
  afterAll(async () => h?.stop());

  /** Cliente nuevo con una instancia VET activa y sin suscripción. */
  async function bareInstance(status: "active" | "decommissioned" = "active") {
    const customer = await newCustomer(h, admin);
    const instanceId = await insertInstance(h.db.handle.db, {
      customerId: customer.id,
      productCode: "FARUTECH_VET",
      status,
    });
    return { customerId: customer.id, instanceId };
  }

  async function subscribe(json: Record<string, unknown>) {
    const res = await h.request<Sub>("POST", "/api/subscriptions", { token: admin, json });
    expect(res.status).toBe(201);
    return { sub: subscriptionSchema.parse(res.body), res };
  }

  const entitlementEvents = async (instanceId: string) =>
    (
      await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "entitlements.changed"))
    ).filter(
      (e) =>
        (e.payload as { data: { tenantInstanceId: string } }).data.tenantInstanceId === instanceId,
    );

  describe("happy path", () => {
    it("subscribes an instance, taking customer and product from it, and turns features on", async () => {
      const { customerId, instanceId } = await bareInstance();
      expect((await entitlementsOf(h.db.handle.db, instanceId)).status).toBe("no_subscription");

      const { sub, res } = await subscribe({
        tenantInstanceId: instanceId,
        planId: vetStarter,
        status: "active",
        startsAt: "2026-01-01T00:00:00Z",
      });
      expect(res.headers.get("location")).toBe(`/api/subscriptions/${sub.id}`);
      expect(sub).toMatchObject({
        customerId,
        tenantInstanceId: instanceId,
        productId: await productIdOf(h.db.handle.db, "FARUTECH_VET"),
        planId: vetStarter,
        planCode: "VET_STARTER",
        status: "active",
        startsAt: "2026-01-01T00:00:00.000Z",
        expiresAt: null,
      });

      const got = await h.request("GET", `/api/subscriptions/${sub.id}`, { token: support });
      expect(got.status).toBe(200);
      expect(got.body).toEqual(res.body);
      expect(got.headers.get("etag")).toBe('"v1"');

      const ent = await entitlementsOf(h.db.handle.db, instanceId);
      expect(ent.status).toBe("active");
      expect(ent.planCode).toBe("VET_STARTER");
      expect(ent.features.DIGITAL_RECORDS).toBe(true);
      expect(ent.features.ADVANCED_REPORTS).toBe(false);

      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(eq(auditLog.entityId, sub.id));
      expect(audit.map((a) => a.action)).toEqual(["subscription.created"]);
      expect(audit[0]?.actor).toBe("tester-platform_admin");
      expect(await entitlementEvents(instanceId)).toHaveLength(1);
      const created = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "subscription.created"));
      expect(
        created.some(
          (e) => (e.payload as { data: { subscriptionId: string } }).data.subscriptionId === sub.id,
        ),
      ).toBe(true);
    });

    it("defaults to a pending subscription starting now, with nothing on yet", async () => {
      const { instanceId } = await bareInstance();
      const before = Date.now();
      const { sub } = await subscribe({ tenantInstanceId: instanceId, planId: vetStarter });
      expect(sub.status).toBe("pending");
      expect(new Date(sub.startsAt).getTime()).toBeGreaterThanOrEqual(before - 1000);
      const ent = await entitlementsOf(h.db.handle.db, instanceId);
      expect(ent.status).toBe("pending");
      // Todas las features del producto, apagadas: con `features` vacío el every() pasaría solo.
      const vet = demoProducts.find((p) => p.code === "FARUTECH_VET");
      const codes = vet?.modules.flatMap((m) => m.features.map((f) => f.code)) ?? [];
      expect(codes.length).toBeGreaterThan(0);
      expect(Object.keys(ent.features).sort()).toEqual([...codes].sort());
      expect(Object.values(ent.features).every((on) => !on)).toBe(true);
    });

    it("changes plan, status and expiry with If-Match, each change reaching the entitlements", async () => {
      const { instanceId } = await bareInstance();
      const { sub } = await subscribe({
        tenantInstanceId: instanceId,
        planId: vetStarter,
        status: "active",
        startsAt: "2026-01-01T00:00:00Z",
      });
      const upgraded = await h.request<Sub>("PATCH", `/api/subscriptions/${sub.id}`, {
        token: admin,
        json: { planId: vetEnterprise },
        headers: { "if-match": '"v1"' },
      });
      expect(upgraded.status).toBe(200);
      expect(upgraded.body).toMatchObject({ planId: vetEnterprise, planCode: "VET_ENTERPRISE" });
      expect(upgraded.headers.get("etag")).toBe('"v2"');
      expect((await entitlementsOf(h.db.handle.db, instanceId)).features.ADVANCED_REPORTS).toBe(
        true,
      );

      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${sub.id}`, {
          token: admin,
          json: { status: "suspended" },
          headers: { "if-match": '"v1"' },
        }),
        412,
        "precondition_failed",
      );

      const suspended = await h.request<Sub>("PATCH", `/api/subscriptions/${sub.id}`, {
        token: admin,
        json: { status: "suspended" },
        headers: { "if-match": '"v2"' },
      });
      expect(suspended.body.status).toBe("suspended");
      const off = await entitlementsOf(h.db.handle.db, instanceId);
      expect(off.status).toBe("suspended");
      expect(off.features.DIGITAL_RECORDS).toBe(false);

      const expiring = await h.request<Sub>("PATCH", `/api/subscriptions/${sub.id}`, {
        token: admin,
        json: { status: "active", expiresAt: "2026-06-30T00:00:00Z" },
      });
      expect(expiring.status).toBe(200);
      expect(expiring.body).toMatchObject({
        status: "active",
        expiresAt: "2026-06-30T00:00:00.000Z",
      });
      const at = (iso: string) => entitlementsOf(h.db.handle.db, instanceId, new Date(iso));
      expect((await at("2026-06-29T00:00:00Z")).status).toBe("active");
      expect((await at("2026-07-01T00:00:00Z")).status).toBe("expired");

      const cleared = await h.request<Sub>("PATCH", `/api/subscriptions/${sub.id}`, {
        token: admin,
        json: { expiresAt: null },
      });
      expect(cleared.body.expiresAt).toBeNull();

      const actions = (
        await h.db.handle.db.select().from(auditLog).where(eq(auditLog.entityId, sub.id))
      ).map((a) => a.action);
      expect(actions).toEqual([
        "subscription.created",
        "subscription.updated",
        "subscription.updated",
        "subscription.updated",
        "subscription.updated",
      ]);
      // Alta + 4 cambios: cada uno avisa al edge.
      expect(await entitlementEvents(instanceId)).toHaveLength(5);
    });

    it("cancels on DELETE (idempotent), leaving the row with status cancelled", async () => {
      const { instanceId } = await bareInstance();
      const { sub } = await subscribe({
        tenantInstanceId: instanceId,
        planId: vetStarter,
        status: "active",
      });
      expectProblem(
        await h.request("DELETE", `/api/subscriptions/${sub.id}`, {
          token: admin,
          headers: { "if-match": '"v9"' },
        }),
        412,
        "precondition_failed",
      );
      const res = await h.request("DELETE", `/api/subscriptions/${sub.id}`, {
        token: admin,
        headers: { "if-match": '"v1"' },
      });
      expect(res.status).toBe(204);
      const got = await h.request<Sub>("GET", `/api/subscriptions/${sub.id}`, { token: admin });
      expect(got.body.status).toBe("cancelled");
      expect(got.headers.get("etag")).toBe('"v2"');
      const ent = await entitlementsOf(h.db.handle.db, instanceId);
      expect(ent.status).toBe("cancelled");
      expect(Object.values(ent.features).some((on) => on)).toBe(false);

      expect(
        (await h.request("DELETE", `/api/subscriptions/${sub.id}`, { token: admin })).status,
      ).toBe(204);
      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.entityId, sub.id), eq(auditLog.action, "subscription.cancelled")));
      expect(audit).toHaveLength(1);
      expect(audit[0]?.before).toEqual({ status: "active" });
      expect(await entitlementEvents(instanceId)).toHaveLength(2);
    });

    it("filters and paginates the list", async () => {
      const { customerId, instanceId } = await bareInstance();
      const { sub } = await subscribe({ tenantInstanceId: instanceId, planId: vetStarter });
      const list = (query: string) =>
        h.request<{ items: Sub[]; nextCursor: string | null }>(
          "GET",
          `/api/subscriptions?${query}`,
          { token: support },
        );
      expect((await list(`customerId=${customerId}`)).body.items.map((s) => s.id)).toEqual([
        sub.id,
      ]);
      expect((await list(`tenantInstanceId=${instanceId}`)).body.items.map((s) => s.id)).toEqual([
        sub.id,
      ]);
      const byPlan = (await list(`planId=${vetStarter}&status=pending&limit=100`)).body.items;
      expect(byPlan.map((s) => s.id)).toContain(sub.id);
      expect(byPlan.every((s) => s.planCode === "VET_STARTER" && s.status === "pending")).toBe(
        true,
      );
      expect((await list(`customerId=${customerId}&status=active`)).body.items).toEqual([]);

      const first = await list("limit=3");
      expect(first.body.items).toHaveLength(3);
      expect(first.body.nextCursor).toEqual(expect.any(String));
      const second = await list(`limit=3&cursor=${first.body.nextCursor}`);
      expect(second.body.items.length).toBeGreaterThan(0);
      const firstIds = new Set(first.body.items.map((s) => s.id));
      expect(second.body.items.some((s) => firstIds.has(s.id))).toBe(false);
    });
  });

  describe("errors", () => {
    // Dos conexiones reales: solo en Postgres.
    it.runIf(kind === "postgres")(
      "serializes a PATCH without If-Match behind a concurrent change instead of answering 412",
      async () => {
        const { instanceId } = await bareInstance();
        const { sub, res: created } = await subscribe({
          tenantInstanceId: instanceId,
          planId: vetStarter,
        });
        expect(created.headers.get("etag")).toBe('"v1"');
        const other = new pg.Client({ connectionString: h.db.url });
        await other.connect();
        try {
          await other.query("begin");
          await other.query(
            "update subscriptions set row_version = row_version + 1, updated_at = now() where id = $1",
            [sub.id],
          );
          const patching = h.request<Sub>("PATCH", `/api/subscriptions/${sub.id}`, {
            token: admin,
            json: { planId: vetEnterprise },
          });
          expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
          await other.query("commit");
          const res = await patching;
          expect(res.status).toBe(200);
          // Se aplicó sobre la versión 2 que dejó la otra transacción.
          expect(res.headers.get("etag")).toBe('"v3"');
        } finally {
          await other.end();
        }
      },
    );

    // En PGlite la base corre en el mismo proceso y su reloj es el del host: no hay dos relojes.
    it.skipIf(kind === "pglite")(
      "starts a subscription without startsAt at the database time, not at the API host's",
      async () => {
        const { instanceId } = await bareInstance();
        const realNow = Date.now();
        // El host de la API, una hora adelantado (el token se firma y verifica con esa hora).
        vi.useFakeTimers({ toFake: ["Date"] });
        try {
          vi.setSystemTime(realNow + 3_600_000);
          const token = await h.token(["platform_admin"]);
          const res = await h.request<Sub>("POST", "/api/subscriptions", {
            token,
            json: { tenantInstanceId: instanceId, planId: vetStarter },
          });
          expect(res.status).toBe(201);
          const startsAt = Date.parse(subscriptionSchema.parse(res.body).startsAt);
          expect(Math.abs(startsAt - realNow)).toBeLessThan(60_000);
        } finally {
          vi.useRealTimers();
        }
      },
    );

    it("rejects a plan of another product with 422 and a subscribed instance with 409", async () => {
      const { instanceId } = await bareInstance();
      const other = await h.request("POST", "/api/subscriptions", {
        token: admin,
        json: { tenantInstanceId: instanceId, planId: erpStandard },
      });
      expectProblem(other, 422, "unprocessable");
      expect((other.body as { errors: { path: string }[] }).errors[0]?.path).toBe("body.planId");

      await subscribe({ tenantInstanceId: instanceId, planId: vetStarter });
      const again = await h.request("POST", "/api/subscriptions", {
        token: admin,
        json: { tenantInstanceId: instanceId, planId: vetEnterprise },
      });
      expectProblem(again, 409, "conflict");
    });

    it("answers 404 naming the field for unknown instance or plan, 422 for a decommissioned one", async () => {
      const missingInstance = await h.request("POST", "/api/subscriptions", {
        token: admin,
        json: { tenantInstanceId: crypto.randomUUID(), planId: vetStarter },
      });
      expectProblem(missingInstance, 404, "not_found");
      expect((missingInstance.body as { errors: { path: string }[] }).errors[0]?.path).toBe(
        "body.tenantInstanceId",
      );
      const { instanceId } = await bareInstance();
      const missingPlan = await h.request("POST", "/api/subscriptions", {
        token: admin,
        json: { tenantInstanceId: instanceId, planId: crypto.randomUUID() },
      });
      expectProblem(missingPlan, 404, "not_found");
      expect((missingPlan.body as { errors: { path: string }[] }).errors[0]?.path).toBe(
        "body.planId",
      );
      const gone = await bareInstance("decommissioned");
      expectProblem(
        await h.request("POST", "/api/subscriptions", {
          token: admin,
          json: { tenantInstanceId: gone.instanceId, planId: vetStarter },
        }),
        422,
        "unprocessable",
      );
    });

    it("requires expiresAt after startsAt and a plan of the same product on PATCH", async () => {
      const { instanceId } = await bareInstance();
      expectProblem(
        await h.request("POST", "/api/subscriptions", {
          token: admin,
          json: {
            tenantInstanceId: instanceId,
            planId: vetStarter,
            startsAt: "2026-03-01T00:00:00Z",
            expiresAt: "2026-02-01T00:00:00Z",
          },
        }),
        422,
        "unprocessable",
      );
      const { sub } = await subscribe({
        tenantInstanceId: instanceId,
        planId: vetStarter,
        startsAt: "2026-03-01T00:00:00Z",
      });
      const early = await h.request("PATCH", `/api/subscriptions/${sub.id}`, {
        token: admin,
        json: { expiresAt: "2026-03-01T00:00:00Z" },
      });
      expectProblem(early, 422, "unprocessable");
      expect((early.body as { errors: { path: string }[] }).errors[0]?.path).toBe("body.expiresAt");
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${sub.id}`, {
          token: admin,
          json: { planId: erpStandard },
        }),
        422,
        "unprocessable",
      );
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${sub.id}`, {
          token: admin,
          json: { planId: crypto.randomUUID() },
        }),
        404,
        "not_found",
      );
      // Nada cambió.
      const got = await h.request<Sub>("GET", `/api/subscriptions/${sub.id}`, { token: admin });
      expect(got.body).toMatchObject({ planCode: "VET_STARTER", expiresAt: null });
      expect(got.headers.get("etag")).toBe('"v1"');
    });

    it("validates bodies, ids and filters", async () => {
      const bad = await h.request("POST", "/api/subscriptions", {
        token: admin,
        json: { tenantInstanceId: "nope", planId: vetStarter, status: "cancelled", extra: 1 },
      });
      expectProblem(bad, 400, "validation_failed");
      const paths = (bad.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths).toEqual(expect.arrayContaining(["body.tenantInstanceId", "body.status"]));
      const [some] = (
        await h.request<{ items: Sub[] }>("GET", "/api/subscriptions?limit=1", { token: admin })
      ).body.items;
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${some?.id}`, { token: admin, json: {} }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${some?.id}`, {
          token: admin,
          json: { status: "paused" },
        }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${some?.id}`, {
          token: admin,
          json: { startsAt: "tomorrow" },
        }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("GET", `/api/subscriptions/${crypto.randomUUID()}`, { token: admin }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${crypto.randomUUID()}`, {
          token: admin,
          json: { status: "active" },
        }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("DELETE", `/api/subscriptions/${crypto.randomUUID()}`, { token: admin }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", "/api/subscriptions/nope", { token: admin }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("GET", "/api/subscriptions?status=paused", { token: admin }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("GET", "/api/subscriptions?cursor=garbage", { token: admin }),
        400,
        "validation_failed",
      );
    });
    it("rejects date-times outside years 1970-9999 in UTC with 400 naming the field, never a 500", async () => {
      const { instanceId } = await bareInstance();
      const fieldsOf = (res: { body: unknown }) =>
        (res.body as { errors?: { path: string }[] }).errors?.map((e) => e.path);
      // Alta: el año 10000 en UTC no llega a la base.
      const post = await h.request("POST", "/api/subscriptions", {
        token: admin,
        json: {
          tenantInstanceId: instanceId,
          planId: vetStarter,
          expiresAt: "9999-12-31T23:59:59-14:00",
        },
      });
      expectProblem(post, 400, "validation_failed");
      expect(fieldsOf(post)).toEqual(["body.expiresAt"]);

      const { sub } = await subscribe({
        tenantInstanceId: instanceId,
        planId: vetStarter,
        startsAt: "2026-03-01T00:00:00Z",
      });
      const patch = (json: Record<string, unknown>) =>
        h.request<Sub>("PATCH", `/api/subscriptions/${sub.id}`, { token: admin, json });
      for (const [field, value] of [
        ["expiresAt", "9999-12-31T23:59:59-14:00"],
        ["startsAt", "9999-12-31T23:59:59-00:01"],
        ["startsAt", "0000-01-01T00:00:00Z"],
        // Año 49: V8 lo leería de vuelta como 2049.
        ["startsAt", "0049-06-01T00:00:00Z"],
        // 1969 en UTC aunque la fecha local diga 1970.
        ["startsAt", "1970-01-01T00:30:00+01:00"],
      ] as const) {
        const res = await patch({ [field]: value });
        expectProblem(res, 400, "validation_failed");
        expect(fieldsOf(res), value).toEqual([`body.${field}`]);
      }
      // Nada cambió.
      const got = await h.request<Sub>("GET", `/api/subscriptions/${sub.id}`, { token: admin });
      expect(got.body).toMatchObject({ startsAt: "2026-03-01T00:00:00.000Z", expiresAt: null });
      expect(got.headers.get("etag")).toBe('"v1"');

      // Los bordes del rango valen y se devuelven tal cual, en UTC.
      const edges = await patch({
        startsAt: "1970-01-01T00:00:00Z",
        expiresAt: "9999-12-31T23:59:59+14:00",
      });
      expect(edges.status).toBe(200);
      expect(edges.body).toMatchObject({
        startsAt: "1970-01-01T00:00:00.000Z",
        expiresAt: "9999-12-31T09:59:59.000Z",
      });
      const last = await patch({ expiresAt: "9999-12-31T23:59:59.999Z" });
      expect(last.status).toBe(200);
      expect(last.body.expiresAt).toBe("9999-12-31T23:59:59.999Z");
    });
  });

  describe("security", () => {
    it("requires a token; support reads only; catalog_manager has no access", async () => {
      expectProblem(await h.request("GET", "/api/subscriptions"), 401, "unauthorized");
      const { instanceId } = await bareInstance();
      expectProblem(
        await h.request("POST", "/api/subscriptions", {
          json: { tenantInstanceId: instanceId, planId: vetStarter },
        }),
        401,
        "unauthorized",
      );
      expect((await h.request("GET", "/api/subscriptions", { token: support })).status).toBe(200);
      expectProblem(
        await h.request("POST", "/api/subscriptions", {
          token: support,
          json: { tenantInstanceId: instanceId, planId: vetStarter },
        }),
        403,
        "forbidden",
      );
      const catalog = await h.token(["catalog_manager"]);
      expectProblem(
        await h.request("GET", "/api/subscriptions", { token: catalog }),
        403,
        "forbidden",
      );
      const [some] = (
        await h.request<{ items: Sub[] }>("GET", "/api/subscriptions?limit=1", { token: admin })
      ).body.items;
      expectProblem(
        await h.request("PATCH", `/api/subscriptions/${some?.id}`, {
          token: support,
          json: { status: "suspended" },
        }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("DELETE", `/api/subscriptions/${some?.id}`, { token: catalog }),
        403,
        "forbidden",
      );
      // Nada de lo rechazado quedó escrito.
      const subs = await h.request<{ items: Sub[] }>(
        "GET",
        `/api/subscriptions?tenantInstanceId=${instanceId}`,
        { token: admin },
      );
      expect(subs.body.items).toEqual([]);
      const still = await h.request<Sub>("GET", `/api/subscriptions/${some?.id}`, { token: admin });
      expect(still.body.status).toBe(some?.status);
    });
  });
});
