import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import { moduleSchema } from "./schema";

const unique = (prefix = "M") =>
  `${prefix}${crypto.randomUUID().replace(/-/g, "").slice(0, 10).toUpperCase()}`;

describe.each(["postgres", "pglite"] as const)("modules on %s", (kind) => {
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

  async function productId(code: string): Promise<string> {
    const [row] = await h.db.handle.db
      .select({ id: products.id })
      .from(products)
      .where(eq(products.code, code));
    if (!row) throw new Error(`demo product ${code} missing`);
    return row.id;
  }

  describe("happy path", () => {
    it("finds a module of a product by its code, and 404s for another product or code", async () => {
      const vet = await productId("FARUTECH_VET");
      const [inventory] = await h.db.handle.db
        .select()
        .from(modules)
        .where(eq(modules.productId, vet))
        .limit(1);
      if (!inventory) throw new Error("demo module missing");
      const found = await h.request<{ id: string }>(
        "GET",
        `/api/products/${vet}/modules/by-code/${inventory.code}`,
        { token: support },
      );
      expect(found.status).toBe(200);
      expect(found.body.id).toBe(inventory.id);
      expect(found.headers.get("etag")).toBe(`"v${inventory.rowVersion}"`);
      const other = await newProduct();
      expectProblem(
        await h.request("GET", `/api/products/${other}/modules/by-code/${inventory.code}`, {
          token: support,
        }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", `/api/products/${vet}/modules/by-code/NOPE`, { token: support }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", `/api/products/not-a-uuid/modules/by-code/X`, { token: support }),
        400,
        "validation_failed",
      );
    });

    it("creates, reads, lists, updates with If-Match and deletes a module, auditing each change", async () => {
      const pid = await newProduct();
      const code = unique();
      const created = await h.request("POST", `/api/products/${pid}/modules`, {
        token: catalog,
        json: { code, name: "Inventario", description: "Lotes y existencias" },
      });
      expect(created.status).toBe(201);
      const mod = moduleSchema.parse(created.body);
      expect(mod).toMatchObject({ productId: pid, code, name: "Inventario" });
      expect(created.headers.get("location")).toBe(`/api/modules/${mod.id}`);
      expect(created.headers.get("etag")).toBe('"v1"');

      const got = await h.request("GET", `/api/modules/${mod.id}`, { token: support });
      expect(got.status).toBe(200);
      expect(got.body).toEqual(created.body);
      const etag = got.headers.get("etag");
      expect(etag).toBe('"v1"');

      const listed = await h.request<{ items: { id: string }[]; nextCursor: string | null }>(
        "GET",
        `/api/products/${pid}/modules`,
        { token: support },
      );
      expect(listed.status).toBe(200);
      expect(listed.body.items.map((m) => m.id)).toEqual([mod.id]);
      expect(listed.body.nextCursor).toBeNull();

      const patched = await h.request("PATCH", `/api/modules/${mod.id}`, {
        token: catalog,
        json: { name: "Inventario 2" },
        headers: { "if-match": etag ?? "" },
      });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({
        name: "Inventario 2",
        description: "Lotes y existencias",
      });
      expect(patched.headers.get("etag")).toBe('"v2"');
      expectProblem(
        await h.request("PATCH", `/api/modules/${mod.id}`, {
          token: catalog,
          json: { name: "lost update" },
          headers: { "if-match": etag ?? "" },
        }),
        412,
        "precondition_failed",
      );
      expectProblem(
        await h.request("DELETE", `/api/modules/${mod.id}`, {
          token: catalog,
          headers: { "if-match": etag ?? "" },
        }),
        412,
        "precondition_failed",
      );

      // Una feature sin uso cae con su módulo.
      const feature = await h.request<{ id: string }>("POST", `/api/modules/${mod.id}/features`, {
        token: catalog,
        json: { code: unique("F"), name: "Alertas" },
      });
      expect(feature.status).toBe(201);

      const deleted = await h.request("DELETE", `/api/modules/${mod.id}`, {
        token: catalog,
        headers: { "if-match": '"v2"' },
      });
      expect(deleted.status).toBe(204);
      expectProblem(await h.request("GET", `/api/modules/${mod.id}`, { token: admin }), 404);
      expectProblem(
        await h.request("GET", `/api/features/${feature.body.id}`, { token: admin }),
        404,
      );

      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.entityType, "module"), eq(auditLog.entityId, mod.id)));
      expect(audit.map((a) => a.action)).toEqual([
        "module.created",
        "module.updated",
        "module.deleted",
      ]);
      expect(audit[0]?.actor).toBe("tester-catalog_manager");
      expect(audit[1]?.before).toMatchObject({ name: "Inventario" });
      expect(audit[1]?.after).toMatchObject({ name: "Inventario 2" });
      expect(audit[2]?.before).toMatchObject({ features: [expect.any(Object)] });

      const events = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.subject, "integration.tasks.module.deleted"));
      const data = events
        .map((e) => (e.payload as { data: { moduleId: string; featureCodes: string[] } }).data)
        .find((d) => d.moduleId === mod.id);
      expect(data?.featureCodes).toHaveLength(1);
      const createdEvents = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "module.created"));
      expect(
        createdEvents.some(
          (e) => (e.payload as { data: { moduleId: string } }).data.moduleId === mod.id,
        ),
      ).toBe(true);
    });

    it("pages the modules of a product with a cursor", async () => {
      const pid = await newProduct();
      const codes = [unique(), unique(), unique()];
      for (const code of codes) {
        const res = await h.request("POST", `/api/products/${pid}/modules`, {
          token: admin,
          json: { code, name: code },
        });
        expect(res.status).toBe(201);
      }
      const first = await h.request<{ items: { code: string }[]; nextCursor: string | null }>(
        "GET",
        `/api/products/${pid}/modules?limit=2`,
        { token: support },
      );
      expect(first.body.items).toHaveLength(2);
      expect(first.body.nextCursor).toEqual(expect.any(String));
      const second = await h.request<{ items: { code: string }[]; nextCursor: string | null }>(
        "GET",
        `/api/products/${pid}/modules?limit=2&cursor=${first.body.nextCursor ?? ""}`,
        { token: support },
      );
      expect(second.body.items).toHaveLength(1);
      expect(second.body.nextCursor).toBeNull();
      expect([...first.body.items, ...second.body.items].map((m) => m.code).sort()).toEqual(
        [...codes].sort(),
      );
    });

    it("lists the demo modules of FARUTECH_VET", async () => {
      const res = await h.request<{ items: { code: string }[] }>(
        "GET",
        `/api/products/${await productId("FARUTECH_VET")}/modules`,
        { token: support },
      );
      expect(res.body.items.map((m) => m.code).sort()).toEqual([
        "BILLING",
        "CLINICAL",
        "INVENTORY",
      ]);
    });
  });

  describe("errors", () => {
    it("rejects an empty PATCH with 400 and changes nothing: no new version, audit or event", async () => {
      const created = await h.request<{ id: string }>(
        "POST",
        `/api/products/${await newProduct()}/modules`,
        { token: admin, json: { code: unique(), name: "Sin cambios" } },
      );
      expect(created.status).toBe(201);
      const id = created.body.id;
      expectProblem(
        await h.request("PATCH", `/api/modules/${id}`, { token: admin, json: {} }),
        400,
        "validation_failed",
      );
      const got = await h.request("GET", `/api/modules/${id}`, { token: admin });
      expect(got.headers.get("etag")).toBe(created.headers.get("etag"));
      const audits = await h.db.handle.db
        .select({ id: auditLog.id })
        .from(auditLog)
        .where(and(eq(auditLog.entityId, id), eq(auditLog.action, "module.updated")));
      expect(audits).toHaveLength(0);
      const events = await h.db.handle.db
        .select({ payload: outboxEvents.payload })
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "module.updated"));
      expect(
        events.filter((e) => (e.payload as { data: { moduleId: string } }).data.moduleId === id),
      ).toHaveLength(0);
    });

    // Dos conexiones reales: solo en Postgres (PGlite tiene una sola).
    it.runIf(kind === "postgres")(
      "audits as before the row an edit committed while the PATCH waited for it",
      async () => {
        const created = await h.request<{ id: string }>(
          "POST",
          `/api/products/${await newProduct()}/modules`,
          { token: admin, json: { code: unique(), name: "Original" } },
        );
        await expectAuditAfterConcurrentEdit(h, {
          table: "modules",
          path: `/api/modules/${created.body.id}`,
          id: created.body.id,
          action: "module.updated",
        });
      },
    );

    it("names the failing fields of a bad body", async () => {
      const pid = await newProduct();
      const res = await h.request("POST", `/api/products/${pid}/modules`, {
        token: admin,
        json: { code: "lower", extra: 1 },
      });
      expectProblem(res, 400, "validation_failed");
      const paths = (res.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths).toEqual(expect.arrayContaining(["body.code", "body.name"]));
      const patch = await h.request("PATCH", `/api/modules/${crypto.randomUUID()}`, {
        token: admin,
        json: { code: "NEW_CODE" },
      });
      expectProblem(patch, 400, "validation_failed");
    });

    it("maps a duplicate code within the product to 409 but allows it in another product", async () => {
      const pid = await newProduct();
      const code = unique();
      const first = await h.request("POST", `/api/products/${pid}/modules`, {
        token: admin,
        json: { code, name: "A" },
      });
      expect(first.status).toBe(201);
      const dup = await h.request("POST", `/api/products/${pid}/modules`, {
        token: admin,
        json: { code, name: "B" },
      });
      expectProblem(dup, 409, "conflict");
      expect((dup.body as { errors: { path: string }[] }).errors[0]?.path).toBe("body.code");
      const elsewhere = await h.request("POST", `/api/products/${await newProduct()}/modules`, {
        token: admin,
        json: { code, name: "C" },
      });
      expect(elsewhere.status).toBe(201);
    });

    it("answers 404 for unknown products and modules and 400 for malformed ids", async () => {
      const ghost = crypto.randomUUID();
      expectProblem(
        await h.request("GET", `/api/products/${ghost}/modules`, { token: admin }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("POST", `/api/products/${ghost}/modules`, {
          token: admin,
          json: { code: unique(), name: "x" },
        }),
        404,
        "not_found",
      );
      expectProblem(await h.request("GET", `/api/modules/${ghost}`, { token: admin }), 404);
      expectProblem(
        await h.request("PATCH", `/api/modules/${ghost}`, { token: admin, json: { name: "x" } }),
        404,
      );
      expectProblem(await h.request("DELETE", `/api/modules/${ghost}`, { token: admin }), 404);
      expectProblem(
        await h.request("GET", "/api/modules/nope", { token: admin }),
        400,
        "validation_failed",
      );
      const pid = await newProduct();
      const mod = await h.request<{ id: string }>("POST", `/api/products/${pid}/modules`, {
        token: admin,
        json: { code: unique(), name: "x" },
      });
      expectProblem(
        await h.request("PATCH", `/api/modules/${mod.body.id}`, {
          token: admin,
          json: { name: "y" },
          headers: { "if-match": "garbage" },
        }),
        400,
        "validation_failed",
      );
    });

    it("refuses to delete a module whose features are included in a plan", async () => {
      const vet = await productId("FARUTECH_VET");
      const [clinical] = await h.db.handle.db
        .select()
        .from(modules)
        .where(and(eq(modules.productId, vet), eq(modules.code, "CLINICAL")));
      if (!clinical) throw new Error("demo module missing");
      const res = await h.request<{ featuresInUse: string[]; plans: string[] }>(
        "DELETE",
        `/api/modules/${clinical.id}`,
        { token: admin },
      );
      expectProblem(res, 409, "conflict");
      expect(res.body.featuresInUse).toEqual(expect.arrayContaining(["DIGITAL_RECORDS"]));
      expect(res.body.plans).toEqual(expect.arrayContaining(["VET_STARTER", "VET_PROFESSIONAL"]));
      const left = await h.db.handle.db
        .select()
        .from(features)
        .where(eq(features.moduleId, clinical.id));
      expect(left).toHaveLength(3);
      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(eq(auditLog.entityId, clinical.id));
      expect(audit).toHaveLength(0);
    });

    it("refuses to delete a module whose feature is only used by an override", async () => {
      const vet = await productId("FARUTECH_VET");
      const mod = await h.request<{ id: string }>("POST", `/api/products/${vet}/modules`, {
        token: admin,
        json: { code: unique(), name: "Telemedicina" },
      });
      const code = unique("F");
      const feature = await h.request("POST", `/api/modules/${mod.body.id}/features`, {
        token: admin,
        json: { code, name: "Videoconsulta" },
      });
      expect(feature.status).toBe(201);
      const [sub] = await h.db.handle.db
        .select()
        .from(subscriptions)
        .where(eq(subscriptions.productId, vet))
        .limit(1);
      if (!sub) throw new Error("demo subscription missing");
      await h.db.handle.db.insert(subscriptionFeatureOverrides).values({
        subscriptionId: sub.id,
        productId: vet,
        featureCode: code,
        overrideType: "enable",
      });
      const res = await h.request<{ featuresInUse: string[]; overrides: number }>(
        "DELETE",
        `/api/modules/${mod.body.id}`,
        { token: admin },
      );
      expectProblem(res, 409, "conflict");
      expect(res.body.featuresInUse).toEqual([code]);
      expect(res.body.overrides).toBe(1);
      expect((await h.request("GET", `/api/modules/${mod.body.id}`, { token: admin })).status).toBe(
        200,
      );
    });
  });

  describe("security", () => {
    it("requires a token and a catalog role; support only reads", async () => {
      const vet = await productId("FARUTECH_VET");
      expectProblem(await h.request("GET", `/api/products/${vet}/modules`), 401, "unauthorized");
      const tenant = await h.token(["tenant_app"]);
      expectProblem(
        await h.request("GET", `/api/products/${vet}/modules`, { token: tenant }),
        403,
        "forbidden",
      );
      expect(
        (await h.request("GET", `/api/products/${vet}/modules`, { token: support })).status,
      ).toBe(200);
      expectProblem(
        await h.request("POST", `/api/products/${vet}/modules`, {
          token: support,
          json: { code: unique(), name: "n" },
        }),
        403,
        "forbidden",
      );
      const [mod] = await h.db.handle.db
        .select()
        .from(modules)
        .where(eq(modules.productId, vet))
        .limit(1);
      if (!mod) throw new Error("demo module missing");
      expectProblem(
        await h.request("PATCH", `/api/modules/${mod.id}`, { token: support, json: { name: "n" } }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("DELETE", `/api/modules/${mod.id}`, { token: support }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("DELETE", `/api/modules/${mod.id}`, { token: tenant }),
        403,
        "forbidden",
      );
      expectProblem(await h.request("GET", `/api/modules/${mod.id}`, { token: tenant }), 403);
    });
  });
});
