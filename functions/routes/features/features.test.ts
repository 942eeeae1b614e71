import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgConstraint, pgErrorCode } from "../../../core/http/db-errors";
import {
  auditLog,
  features,
  modules,
  outboxEvents,
  products,
  subscriptionFeatureOverrides,
  subscriptions,
} from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectAuditAfterConcurrentEdit } from "../../../test/support/concurrent-edit";
import { expectProblem } from "../../../test/support/http";
import { entitlementsOf, insertInstance, newCustomer } from "../subscriptions/test-fixtures";
import { featureSchema } from "./schema";

const unique = (prefix = "F") =>
  `${prefix}${crypto.randomUUID().replace(/-/g, "").slice(0, 10).toUpperCase()}`;

async function rejection(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error("expected the database to reject the change");
}

describe.each(["postgres", "pglite"] as const)("features on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let catalog: string;
  let support: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    catalog = await h.token(["catalog_manager"]);
    support = await h.token(["support"]);
  });
  afterAll(async () => h?.stop());

  async function newProduct(): Promise<string> {
    const res = await h.request<{ id: string }>("POST", "/api/products", {
      token: admin,
      json: { code: unique("P"), name: "Producto de prueba" },
    });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  async function newModule(productId: string): Promise<string> {
    const res = await h.request<{ id: string }>("POST", `/api/products/${productId}/modules`, {
      token: admin,
      json: { code: unique("M"), name: "Módulo de prueba" },
    });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  async function demoFeature(productCode: string, code: string) {
    const [row] = await h.db.handle.db
      .select({ id: features.id, productId: features.productId })
      .from(features)
      .innerJoin(products, eq(products.id, features.productId))
      .where(and(eq(products.code, productCode), eq(features.code, code)));
    if (!row) throw new Error(`demo feature ${code} missing`);
    return row;
  }

  describe("happy path", () => {
    it("finds a feature of a product by the code plans and overrides use, and 404s otherwise", async () => {
      const batch = await demoFeature("FARUTECH_VET", "BATCH_CONTROL");
      const found = await h.request<{ id: string; code: string; productId: string }>(
        "GET",
        `/api/products/${batch.productId}/features/by-code/BATCH_CONTROL`,
        { token: support },
      );
      expect(found.status).toBe(200);
      expect(found.body).toMatchObject({ id: batch.id, code: "BATCH_CONTROL" });
      expect(found.headers.get("etag")).toMatch(/^"v\d+"$/);
      const byId = await h.request("GET", `/api/features/${batch.id}`, { token: support });
      expect(found.body).toEqual(byId.body);
      // El mismo código en otro producto no es esta feature.
      const other = await newProduct();
      expectProblem(
        await h.request("GET", `/api/products/${other}/features/by-code/BATCH_CONTROL`, {
          token: support,
        }),
        404,
        "not_found",
      );
      const missing = await h.request<{ detail: string }>(
        "GET",
        `/api/products/${crypto.randomUUID()}/features/by-code/BATCH_CONTROL`,
        { token: support },
      );
      expectProblem(missing, 404, "not_found");
      expect(missing.body.detail).toContain("Product");
      expectProblem(
        await h.request("GET", `/api/products/${batch.productId}/features/by-code/BATCH_CONTROL`),
        401,
      );
    });

    it("tells every live instance of the product that its entitlements changed when a feature is added or removed", async () => {
      const productCode = unique("P");
      const product = await h.request<{ id: string }>("POST", "/api/products", {
        token: admin,
        json: { code: productCode, name: "Producto con instancias" },
      });
      expect(product.status).toBe(201);
      const mid = await newModule(product.body.id);
      const customer = await newCustomer(h, admin);
      const live = await insertInstance(h.db.handle.db, { customerId: customer.id, productCode });
      const gone = await insertInstance(h.db.handle.db, {
        customerId: customer.id,
        productCode,
        status: "decommissioned",
      });
      const changed = async (reason: string) =>
        (
          await h.db.handle.db
            .select({ payload: outboxEvents.payload })
            .from(outboxEvents)
            .where(eq(outboxEvents.type, "entitlements.changed"))
        )
          .map((r) => (r.payload as { data: { tenantInstanceId: string; reason: string } }).data)
          .filter((d) => d.reason === reason && [live, gone].includes(d.tenantInstanceId))
          .map((d) => d.tenantInstanceId);

      const created = await h.request<{ id: string }>("POST", `/api/modules/${mid}/features`, {
        token: admin,
        json: { code: unique(), name: "Nueva" },
      });
      expect(created.status).toBe(201);
      expect(await changed("feature.created")).toEqual([live]);
      const entitlements = await entitlementsOf(h.db.handle.db, live);
      expect(Object.keys(entitlements.features)).toHaveLength(1);

      const removed = await h.request("DELETE", `/api/features/${created.body.id}`, {
        token: admin,
      });
      expect(removed.status).toBe(204);
      expect(await changed("feature.deleted")).toEqual([live]);
    });

    it("creates, reads, lists, updates with If-Match and deletes a feature, auditing each change", async () => {
      const pid = await newProduct();
      const mid = await newModule(pid);
      const code = unique();
      const created = await h.request("POST", `/api/modules/${mid}/features`, {
        token: catalog,
        json: { code, name: "Control de lotes", description: "Lotes y vencimientos" },
      });
      expect(created.status).toBe(201);
      const feature = featureSchema.parse(created.body);
      expect(feature).toMatchObject({ moduleId: mid, productId: pid, code, isPremium: false });
      expect(created.headers.get("location")).toBe(`/api/features/${feature.id}`);

      const got = await h.request("GET", `/api/features/${feature.id}`, { token: support });
      expect(got.status).toBe(200);
      expect(got.body).toEqual(created.body);
      const etag = got.headers.get("etag");
      expect(etag).toBe('"v1"');

      const premium = await h.request("POST", `/api/modules/${mid}/features`, {
        token: catalog,
        json: { code: unique(), name: "Reportes", isPremium: true },
      });
      expect(premium.status).toBe(201);
      const all = await h.request<{ items: { id: string }[] }>(
        "GET",
        `/api/modules/${mid}/features`,
        { token: support },
      );
      expect(all.body.items).toHaveLength(2);
      const onlyPremium = await h.request<{ items: { id: string; isPremium: boolean }[] }>(
        "GET",
        `/api/modules/${mid}/features?isPremium=true`,
        { token: support },
      );
      expect(onlyPremium.body.items.map((f) => f.id)).toEqual([
        (premium.body as { id: string }).id,
      ]);

      const patched = await h.request("PATCH", `/api/features/${feature.id}`, {
        token: catalog,
        json: { isPremium: true, name: "Control de lotes Pro" },
        headers: { "if-match": etag ?? "" },
      });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({ isPremium: true, name: "Control de lotes Pro", code });
      expect(patched.headers.get("etag")).toBe('"v2"');
      expectProblem(
        await h.request("PATCH", `/api/features/${feature.id}`, {
          token: catalog,
          json: { name: "lost update" },
          headers: { "if-match": etag ?? "" },
        }),
        412,
        "precondition_failed",
      );
      expectProblem(
        await h.request("DELETE", `/api/features/${feature.id}`, {
          token: catalog,
          headers: { "if-match": etag ?? "" },
        }),
        412,
        "precondition_failed",
      );

      const deleted = await h.request("DELETE", `/api/features/${feature.id}`, {
        token: catalog,
        headers: { "if-match": '"v2"' },
      });
      expect(deleted.status).toBe(204);
      expectProblem(await h.request("GET", `/api/features/${feature.id}`, { token: admin }), 404);

      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.entityType, "feature"), eq(auditLog.entityId, feature.id)));
      expect(audit.map((a) => a.action)).toEqual([
        "feature.created",
        "feature.updated",
        "feature.deleted",
      ]);
      expect(audit[0]?.actor).toBe("tester-catalog_manager");
      expect(audit[1]?.before).toMatchObject({ isPremium: false });
      expect(audit[1]?.after).toMatchObject({ isPremium: true });

      const events = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "feature.created"));
      const data = events
        .map((e) => (e.payload as { data: { featureId: string; productId: string } }).data)
        .find((d) => d.featureId === feature.id);
      expect(data?.productId).toBe(pid);
      const gone = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "feature.deleted"));
      expect(
        gone.some(
          (e) => (e.payload as { data: { featureId: string } }).data.featureId === feature.id,
        ),
      ).toBe(true);
    });

    it("pages the features of a module with a cursor", async () => {
      const mid = await newModule(await newProduct());
      for (let i = 0; i < 3; i++) {
        const res = await h.request("POST", `/api/modules/${mid}/features`, {
          token: admin,
          json: { code: unique(), name: `F${i}` },
        });
        expect(res.status).toBe(201);
      }
      const first = await h.request<{ items: { id: string }[]; nextCursor: string | null }>(
        "GET",
        `/api/modules/${mid}/features?limit=2`,
        { token: support },
      );
      expect(first.body.items).toHaveLength(2);
      const second = await h.request<{ items: { id: string }[]; nextCursor: string | null }>(
        "GET",
        `/api/modules/${mid}/features?limit=2&cursor=${first.body.nextCursor ?? ""}`,
        { token: support },
      );
      expect(second.body.items).toHaveLength(1);
      expect(second.body.nextCursor).toBeNull();
      const ids = new Set([...first.body.items, ...second.body.items].map((f) => f.id));
      expect(ids.size).toBe(3);
    });
  });

  describe("errors", () => {
    it("rejects an empty PATCH with 400 and changes nothing: no new version, audit or event", async () => {
      const mid = await newModule(await newProduct());
      const created = await h.request<{ id: string }>("POST", `/api/modules/${mid}/features`, {
        token: admin,
        json: { code: unique(), name: "Sin cambios" },
      });
      expect(created.status).toBe(201);
      const id = created.body.id;
      expectProblem(
        await h.request("PATCH", `/api/features/${id}`, { token: admin, json: {} }),
        400,
        "validation_failed",
      );
      const got = await h.request("GET", `/api/features/${id}`, { token: admin });
      expect(got.headers.get("etag")).toBe(created.headers.get("etag"));
      const audits = await h.db.handle.db
        .select({ id: auditLog.id })
        .from(auditLog)
        .where(and(eq(auditLog.entityId, id), eq(auditLog.action, "feature.updated")));
      expect(audits).toHaveLength(0);
      const events = await h.db.handle.db
        .select({ payload: outboxEvents.payload })
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "feature.updated"));
      expect(
        events.filter((e) => (e.payload as { data: { featureId: string } }).data.featureId === id),
      ).toHaveLength(0);
    });

    // Dos conexiones reales: solo en Postgres (PGlite tiene una sola).
    it.runIf(kind === "postgres")(
      "audits as before the row an edit committed while the PATCH waited for it",
      async () => {
        const mid = await newModule(await newProduct());
        const created = await h.request<{ id: string }>("POST", `/api/modules/${mid}/features`, {
          token: admin,
          json: { code: unique(), name: "Original" },
        });
        await expectAuditAfterConcurrentEdit(h, {
          table: "features",
          path: `/api/features/${created.body.id}`,
          id: created.body.id,
          action: "feature.updated",
        });
      },
    );

    it("names the failing fields of a bad body", async () => {
      const mid = await newModule(await newProduct());
      const res = await h.request("POST", `/api/modules/${mid}/features`, {
        token: admin,
        json: { code: "bad code", isPremium: "yes" },
      });
      expectProblem(res, 400, "validation_failed");
      const paths = (res.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths).toEqual(expect.arrayContaining(["body.code", "body.name", "body.isPremium"]));
    });

    it("maps a duplicate code anywhere in the product to 409 but allows it in another product", async () => {
      const pid = await newProduct();
      const [m1, m2] = [await newModule(pid), await newModule(pid)];
      const code = unique();
      expect(
        (
          await h.request("POST", `/api/modules/${m1}/features`, {
            token: admin,
            json: { code, name: "A" },
          })
        ).status,
      ).toBe(201);
      // Otro módulo del mismo producto: el código es único por producto, no por módulo.
      const dup = await h.request("POST", `/api/modules/${m2}/features`, {
        token: admin,
        json: { code, name: "B" },
      });
      expectProblem(dup, 409, "conflict");
      expect((dup.body as { errors: { path: string }[] }).errors[0]?.path).toBe("body.code");
      const other = await h.request(
        "POST",
        `/api/modules/${await newModule(await newProduct())}/features`,
        {
          token: admin,
          json: { code, name: "C" },
        },
      );
      expect(other.status).toBe(201);
    });

    it("answers 404 for unknown modules and features", async () => {
      const ghost = crypto.randomUUID();
      expectProblem(
        await h.request("GET", `/api/modules/${ghost}/features`, { token: admin }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("POST", `/api/modules/${ghost}/features`, {
          token: admin,
          json: { code: unique(), name: "x" },
        }),
        404,
        "not_found",
      );
      expectProblem(await h.request("GET", `/api/features/${ghost}`, { token: admin }), 404);
      expectProblem(
        await h.request("PATCH", `/api/features/${ghost}`, { token: admin, json: { name: "x" } }),
        404,
      );
      expectProblem(await h.request("DELETE", `/api/features/${ghost}`, { token: admin }), 404);
      expectProblem(
        await h.request("GET", "/api/features/123", { token: admin }),
        400,
        "validation_failed",
      );
    });

    it("refuses to delete a feature included in a plan", async () => {
      const digital = await demoFeature("FARUTECH_VET", "DIGITAL_RECORDS");
      const res = await h.request<{ featuresInUse: string[]; plans: string[] }>(
        "DELETE",
        `/api/features/${digital.id}`,
        { token: admin },
      );
      expectProblem(res, 409, "conflict");
      expect(res.body.featuresInUse).toEqual(["DIGITAL_RECORDS"]);
      expect(res.body.plans).toEqual(["VET_ENTERPRISE", "VET_PROFESSIONAL", "VET_STARTER"]);
      expect((await h.request("GET", `/api/features/${digital.id}`, { token: admin })).status).toBe(
        200,
      );
    });

    it("refuses to delete a feature only used by an override", async () => {
      const crm = (await demoFeature("FARUTECH_CRM", "PIPELINE")).productId;
      const [mod] = await h.db.handle.db
        .select()
        .from(modules)
        .where(and(eq(modules.productId, crm), eq(modules.code, "SALES")));
      if (!mod) throw new Error("demo module missing");
      const code = unique();
      const created = await h.request<{ id: string }>("POST", `/api/modules/${mod.id}/features`, {
        token: admin,
        json: { code, name: "Cotizaciones" },
      });
      expect(created.status).toBe(201);
      const [sub] = await h.db.handle.db
        .select()
        .from(subscriptions)
        .where(eq(subscriptions.productId, crm))
        .limit(1);
      if (!sub) throw new Error("demo subscription missing");
      await h.db.handle.db.insert(subscriptionFeatureOverrides).values({
        subscriptionId: sub.id,
        productId: crm,
        featureCode: code,
        overrideType: "disable",
      });
      const res = await h.request<{ featuresInUse: string[]; overrides: number; plans: string[] }>(
        "DELETE",
        `/api/features/${created.body.id}`,
        { token: admin },
      );
      expectProblem(res, 409, "conflict");
      expect(res.body).toMatchObject({ featuresInUse: [code], overrides: 1, plans: [] });
    });
  });

  describe("hierarchy", () => {
    it("takes the product from the module and never accepts one from the body", async () => {
      const pid = await newProduct();
      const mid = await newModule(pid);
      const other = await newProduct();
      const res = await h.request("POST", `/api/modules/${mid}/features`, {
        token: admin,
        json: { code: unique(), name: "x", productId: other },
      });
      expectProblem(res, 400, "validation_failed");
      const patch = await h.request("PATCH", `/api/features/${crypto.randomUUID()}`, {
        token: admin,
        json: { moduleId: mid },
      });
      expectProblem(patch, 400, "validation_failed");
    });

    it("the database refuses a feature whose product differs from its module's", async () => {
      const pid = await newProduct();
      const mid = await newModule(pid);
      const other = await newProduct();
      const db = h.db.handle.db;
      const insert = await rejection(() =>
        db.insert(features).values({ moduleId: mid, productId: other, code: unique(), name: "x" }),
      );
      expect(pgErrorCode(insert)).toBe("23503");
      expect(pgConstraint(insert)).toBe("features_module_product_fk");

      const created = await h.request<{ id: string }>("POST", `/api/modules/${mid}/features`, {
        token: admin,
        json: { code: unique(), name: "y" },
      });
      expect(created.status).toBe(201);
      const move = await rejection(() =>
        db.update(features).set({ productId: other }).where(eq(features.id, created.body.id)),
      );
      expect(pgErrorCode(move)).toBe("23503");
      const [stillThere] = await db
        .select({ productId: features.productId, moduleId: features.moduleId })
        .from(features)
        .where(eq(features.id, created.body.id));
      expect(stillThere).toEqual({ productId: pid, moduleId: mid });
      // Mover el módulo a otro producto arrastraría la feature: la FK tampoco lo permite.
      const moveModule = await rejection(() =>
        db.execute(sql`update modules set product_id = ${other} where id = ${mid}`),
      );
      expect(pgErrorCode(moveModule)).toBe("23503");
    });
  });

  describe("security", () => {
    it("requires a token and a catalog role; support only reads", async () => {
      const digital = await demoFeature("FARUTECH_VET", "DIGITAL_RECORDS");
      expectProblem(await h.request("GET", `/api/features/${digital.id}`), 401, "unauthorized");
      const tenant = await h.token(["tenant_app"]);
      expectProblem(
        await h.request("GET", `/api/features/${digital.id}`, { token: tenant }),
        403,
        "forbidden",
      );
      expect(
        (await h.request("GET", `/api/features/${digital.id}`, { token: support })).status,
      ).toBe(200);
      expectProblem(
        await h.request("PATCH", `/api/features/${digital.id}`, {
          token: support,
          json: { name: "n" },
        }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("DELETE", `/api/features/${digital.id}`, { token: support }),
        403,
        "forbidden",
      );
      const [mod] = await h.db.handle.db.select().from(modules).limit(1);
      if (!mod) throw new Error("demo module missing");
      expectProblem(
        await h.request("POST", `/api/modules/${mod.id}/features`, {
          token: support,
          json: { code: unique(), name: "n" },
        }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("POST", `/api/modules/${mod.id}/features`, {
          token: tenant,
          json: { code: unique(), name: "n" },
        }),
        403,
        "forbidden",
      );
      expectProblem(await h.request("GET", `/api/modules/${mod.id}/features`), 401, "unauthorized");
    });
  });
});
