import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { newId } from "../../../core/ids";
import {
  auditLog,
  idempotencyKeys,
  outboxEvents,
  productLimits,
  webhookEndpoints,
} from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectAuditAfterConcurrentEdit } from "../../../test/support/concurrent-edit";
import { expectProblem } from "../../../test/support/http";
import { lockWaiters } from "../../../test/support/lock-waiters";
import { idempotencyRequestHash } from "../../middleware/idempotency";
import { productSchema } from "./schema";

const unique = () => `P${crypto.randomUUID().replace(/-/g, "").slice(0, 10).toUpperCase()}`;

describe.each(["postgres", "pglite"] as const)("products on %s", (kind) => {
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

  describe("happy path", () => {
    it("reads If-Match as RFC 9110 says: a list matches if any strong ETag matches, * always does", async () => {
      const created = await h.request<{ id: string }>("POST", "/api/products", {
        token: catalog,
        json: { code: unique(), name: "If-Match" },
      });
      const url = `/api/products/${created.body.id}`;
      const patch = (ifMatch: string, name: string) =>
        h.request("PATCH", url, {
          token: catalog,
          json: { name },
          headers: { "if-match": ifMatch },
        });

      // v1 actual dentro de una lista con otros ETags (uno con coma dentro, válido en etagc).
      const listed = await patch('"v7", "a,b" , "v1"', "listed");
      expect(listed.status).toBe(200);
      expect(listed.headers.get("etag")).toBe('"v2"');
      // Ninguno de la lista es el actual: 412, sin cambio. "v02" es otro ETag, no la versión 2.
      expectProblem(await patch('"v1", "v3"', "stale"), 412, "precondition_failed");
      expectProblem(await patch('"v02"', "zero"), 412, "precondition_failed");
      // Un ETag con resumen de vista es de otro recurso (una instancia): este nunca lo sirve.
      expectProblem(await patch('"v2.0123456789ab"', "digest"), 412, "precondition_failed");
      // Comparación fuerte: el ETag débil del mismo valor no coincide.
      expectProblem(await patch('W/"v2"', "weak"), 412, "precondition_failed");
      // Un ETag de otro origen es válido pero nunca coincide.
      expectProblem(await patch('"abc"', "foreign"), 412, "precondition_failed");
      // Elementos vacíos de la lista: se ignoran (RFC 9110 §5.6.1).
      const empties = await patch(', "v9" ,, "v2",', "empties");
      expect(empties.status).toBe(200);
      expect(empties.headers.get("etag")).toBe('"v3"');
      expect((await patch("*", "any")).status).toBe(200);

      // Lo que no es una lista de ETags es un 400 que nombra la cabecera, no un 412.
      for (const malformed of ["v3", '"v3', '"v3" "v4"', '"v3",,x', "W/garbage"]) {
        const res = await patch(malformed, "malformed");
        expectProblem(res, 400, "validation_failed");
        expect((res.body as { errors: { path: string }[] }).errors[0]?.path).toBe(
          "header.if-match",
        );
      }
      const final = await h.request<{ name: string }>("GET", url, { token: catalog });
      expect(final.body.name).toBe("any");
      expect(final.headers.get("etag")).toBe('"v4"');
    });

    it("creates, reads, updates with If-Match and deletes a product, auditing each change", async () => {
      const code = unique();
      const created = await h.request("POST", "/api/products", {
        token: catalog,
        json: { code, name: "Farutech POS", limits: [{ name: "registers", description: "Cajas" }] },
      });
      expect(created.status).toBe(201);
      const product = productSchema.parse(created.body);
      expect(product.limits.map((l) => l.name)).toEqual(["max_users", "registers"]);
      expect(created.headers.get("location")).toBe(`/api/products/${product.id}`);

      const got = await h.request("GET", `/api/products/${product.id}`, { token: support });
      expect(got.status).toBe(200);
      expect(got.body).toEqual(created.body);
      const etag = got.headers.get("etag");
      expect(etag).toBe('"v1"');
      const byCode = await h.request("GET", `/api/products/by-code/${code}`, { token: support });
      expect((byCode.body as { id: string }).id).toBe(product.id);

      const patched = await h.request("PATCH", `/api/products/${product.id}`, {
        token: catalog,
        json: { name: "Farutech POS 2" },
        headers: { "if-match": etag ?? "" },
      });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({ name: "Farutech POS 2", code });
      expect(patched.headers.get("etag")).toBe('"v2"');
      const stale = await h.request("PATCH", `/api/products/${product.id}`, {
        token: catalog,
        json: { name: "lost update" },
        headers: { "if-match": etag ?? "" },
      });
      expectProblem(stale, 412, "precondition_failed");

      const limit = await h.request("POST", `/api/products/${product.id}/limits`, {
        token: catalog,
        json: { name: "terminals" },
      });
      expect(limit.status).toBe(201);
      expect((limit.body as { limits: { name: string }[] }).limits.map((l) => l.name)).toContain(
        "terminals",
      );
      // El GET ahora muestra otro límite: su ETag ya no puede ser el de antes.
      const withLimit = await h.request("GET", `/api/products/${product.id}`, { token: catalog });
      expect(withLimit.headers.get("etag")).toBe('"v3"');
      // La respuesta del POST es el producto ya con el límite: lleva el mismo ETag que su GET.
      expect(limit.headers.get("etag")).toBe('"v3"');
      expectProblem(
        await h.request("PATCH", `/api/products/${product.id}`, {
          token: catalog,
          json: { name: "lost update" },
          headers: { "if-match": '"v2"' },
        }),
        412,
        "precondition_failed",
      );

      expect(
        (await h.request("DELETE", `/api/products/${product.id}`, { token: admin })).status,
      ).toBe(204);
      expectProblem(
        await h.request("GET", `/api/products/${product.id}`, { token: admin }),
        404,
        "not_found",
      );

      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(eq(auditLog.entityId, product.id));
      expect(audit.map((a) => a.action)).toEqual([
        "product.created",
        "product.updated",
        "product.limit_added",
        "product.deleted",
      ]);
      expect(audit[0]?.actor).toBe("tester-catalog_manager");
      const events = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(and(eq(outboxEvents.type, "product.created")));
      expect(
        events.some(
          (e) => (e.payload as { data: { productId: string } }).data.productId === product.id,
        ),
      ).toBe(true);
    });

    it("audits and announces the modules and features a product delete takes with it", async () => {
      const product = await h.request<{ id: string }>("POST", "/api/products", {
        token: admin,
        json: { code: unique(), name: "Con módulos" },
      });
      const mod = await h.request<{ id: string }>(
        "POST",
        `/api/products/${product.body.id}/modules`,
        { token: admin, json: { code: unique(), name: "Caja" } },
      );
      const featureCodes = [unique(), unique()].sort();
      for (const code of featureCodes) {
        const res = await h.request("POST", `/api/modules/${mod.body.id}/features`, {
          token: admin,
          json: { code, name: code },
        });
        expect(res.status).toBe(201);
      }
      const deleted = await h.request("DELETE", `/api/products/${product.body.id}`, {
        token: admin,
        headers: { "x-correlation-id": `cascade-${product.body.id}` },
      });
      expect(deleted.status).toBe(204);
      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(eq(auditLog.correlationId, `cascade-${product.body.id}`));
      expect(audit.map((a) => [a.action, a.entityId]).sort()).toEqual(
        [
          ["module.deleted", mod.body.id],
          ["product.deleted", product.body.id],
        ].sort(),
      );
      const moduleAudit = audit.find((a) => a.action === "module.deleted");
      const cascaded = moduleAudit?.before as { features: { code: string }[] } | undefined;
      expect(cascaded?.features.map((f) => f.code)).toEqual(featureCodes);
      const events = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.correlationId, `cascade-${product.body.id}`));
      const moduleEvent = events.find((e) => e.type === "module.deleted");
      const announced = moduleEvent?.payload as { data: { featureCodes: string[] } } | undefined;
      expect(announced?.data).toMatchObject({
        moduleId: mod.body.id,
        featureCodes,
      });
      expect(events.map((e) => e.type)).toContain("product.deleted");
    });

    it("audits and announces the webhook endpoints a product delete takes with it", async () => {
      const product = await h.request<{ id: string }>("POST", "/api/products", {
        token: admin,
        json: { code: unique(), name: "Con webhooks" },
      });
      // La fila va ya cifrada: el alta por HTTP necesita ENCRYPTION_KEYS (la prueban los webhooks).
      const hooks = await h.db.handle.db
        .insert(webhookEndpoints)
        .values(
          ["a", "b"].map((n) => ({
            id: newId(),
            productId: product.body.id,
            url: `https://erp.example/hooks/${n}`,
            secretEncrypted: "v1.test.sealed",
            encryptionKeyId: "test",
          })),
        )
        .returning();
      const cid = `cascade-hooks-${product.body.id}`;
      const deleted = await h.request("DELETE", `/api/products/${product.body.id}`, {
        token: admin,
        headers: { "x-correlation-id": cid },
      });
      expect(deleted.status).toBe(204);
      const ids = hooks.map((w) => w.id).sort();
      const audit = await h.db.handle.db
        .select()
        .from(auditLog)
        .where(eq(auditLog.correlationId, cid));
      const hookAudit = audit.filter((a) => a.action === "webhook.deleted");
      expect(hookAudit.map((a) => [a.entityType, a.entityId]).sort()).toEqual(
        ids.map((id) => ["webhook_endpoint", id]),
      );
      // El mismo `before` que la baja por su propia ruta: la URL sin ruta, sin secreto.
      for (const a of hookAudit) {
        expect(a.before).toMatchObject({
          productId: product.body.id,
          url: "https://erp.example/…",
        });
      }
      expect(JSON.stringify(hookAudit)).not.toMatch(/sealed|secret|\/hooks\//);
      const events = await h.db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.correlationId, cid));
      expect(
        events
          .filter((e) => e.type === "webhook.deleted")
          .map((e) => (e.payload as { data: unknown }).data)
          .sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))),
      ).toEqual(ids.map((webhookId) => ({ webhookId })));
      expect(events.map((e) => e.type)).toContain("product.deleted");
    });

    it("lists products with their limits", async () => {
      const res = await h.request<{ items: { code: string; limits: { name: string }[] }[] }>(
        "GET",
        "/api/products?limit=100",
        { token: support },
      );
      const vet = res.body.items.find((p) => p.code === "FARUTECH_VET");
      expect(vet?.limits.map((l) => l.name)).toEqual([
        "max_users",
        "monthly_appointments",
        "storage_gb",
      ]);
    });

    it("replays a POST with the same Idempotency-Key and rejects the key with another body", async () => {
      const code = unique();
      const first = await h.request("POST", "/api/products", {
        token: admin,
        json: { code, name: "Idem" },
        headers: { "idempotency-key": `k-${code}` },
      });
      expect(first.status).toBe(201);
      const again = await h.request("POST", "/api/products", {
        token: admin,
        json: { code, name: "Idem" },
        headers: { "idempotency-key": `k-${code}` },
      });
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.body).toEqual(first.body);
      const other = await h.request("POST", "/api/products", {
        token: admin,
        json: { code: unique(), name: "Other" },
        headers: { "idempotency-key": `k-${code}` },
      });
      expectProblem(other, 422, "unprocessable");

      // Mismo JSON con otro orden de claves y otros espacios: es la misma petición, se repite.
      const reordered = await h.request("POST", "/api/products", {
        token: admin,
        body: `{ "name": "Idem",\n  "code": ${JSON.stringify(code)} }`,
        headers: { "idempotency-key": `k-${code}`, "content-type": "application/json" },
      });
      expect(reordered.status).toBe(201);
      expect(reordered.headers.get("idempotent-replayed")).toBe("true");
      expect(reordered.body).toEqual(first.body);
    });

    it("does not pin a 409 to an Idempotency-Key: the retry runs again once the conflict is gone", async () => {
      const code = unique();
      const taken = await h.request<{ id: string }>("POST", "/api/products", {
        token: admin,
        json: { code, name: "Ocupa el código" },
      });
      expect(taken.status).toBe(201);
      const attempt = () =>
        h.request("POST", "/api/products", {
          token: admin,
          json: { code, name: "Reintento" },
          headers: { "idempotency-key": `retry-${code}` },
        });
      expectProblem(await attempt(), 409, "conflict");
      expect(
        (await h.request("DELETE", `/api/products/${taken.body.id}`, { token: admin })).status,
      ).toBe(204);
      const retried = await attempt();
      expect(retried.status).toBe(201);
      expect(retried.headers.get("idempotent-replayed")).toBeNull();
      // Ahora sí queda fijada: otra repetición devuelve el 201.
      const replayed = await attempt();
      expect(replayed.status).toBe(201);
      expect(replayed.headers.get("idempotent-replayed")).toBe("true");
    });
    it("lets a retry take over an Idempotency-Key whose first request died before answering", async () => {
      const code = unique();
      const json = { code, name: "Reserva abandonada" };
      const key = `orphan-${code}`;
      const fresh = {
        actor: "tester-platform_admin",
        key,
        method: "POST",
        path: "/api/products",
        requestHash: await idempotencyRequestHash("POST", "/api/products", JSON.stringify(json)),
      };
      // Reserva reciente sin respuesta: la primera petición sigue en curso.
      await h.db.handle.db.insert(idempotencyKeys).values(fresh);
      const attempt = () =>
        h.request("POST", "/api/products", {
          token: admin,
          json,
          headers: { "idempotency-key": key },
        });
      expectProblem(await attempt(), 409, "conflict");
      // La misma reserva, de hace dos minutos: la petición murió (Lambda cortada, proceso caído).
      await h.db.handle.db
        .update(idempotencyKeys)
        .set({ createdAt: new Date(Date.now() - 120_000) })
        .where(and(eq(idempotencyKeys.actor, fresh.actor), eq(idempotencyKeys.key, key)));
      const retried = await attempt();
      expect(retried.status).toBe(201);
      expect(retried.headers.get("idempotent-replayed")).toBeNull();
      const replayed = await attempt();
      expect(replayed.status).toBe(201);
      expect(replayed.headers.get("idempotent-replayed")).toBe("true");
    });
  });

  describe("errors", () => {
    it("rejects an empty PATCH with 400 and changes nothing: no new version, audit or event", async () => {
      const created = await h.request<{ id: string }>("POST", "/api/products", {
        token: admin,
        json: { code: unique(), name: "Sin cambios" },
      });
      expect(created.status).toBe(201);
      const id = created.body.id;
      expectProblem(
        await h.request("PATCH", `/api/products/${id}`, { token: admin, json: {} }),
        400,
        "validation_failed",
      );
      const got = await h.request("GET", `/api/products/${id}`, { token: admin });
      expect(got.headers.get("etag")).toBe(created.headers.get("etag"));
      const audits = await h.db.handle.db
        .select({ id: auditLog.id })
        .from(auditLog)
        .where(and(eq(auditLog.entityId, id), eq(auditLog.action, "product.updated")));
      expect(audits).toHaveLength(0);
      const events = await h.db.handle.db
        .select({ payload: outboxEvents.payload })
        .from(outboxEvents)
        .where(eq(outboxEvents.type, "product.updated"));
      expect(
        events.filter((e) => (e.payload as { data: { productId: string } }).data.productId === id),
      ).toHaveLength(0);
    });

    // Dos conexiones reales: solo en Postgres (PGlite tiene una sola).
    it.runIf(kind === "postgres")(
      "audits as before the row an edit committed while the PATCH waited for it",
      async () => {
        const created = await h.request<{ id: string }>("POST", "/api/products", {
          token: admin,
          json: { code: unique(), name: "Original" },
        });
        await expectAuditAfterConcurrentEdit(h, {
          table: "products",
          path: `/api/products/${created.body.id}`,
          id: created.body.id,
          action: "product.updated",
        });
      },
    );

    it("names the failing fields of a bad body", async () => {
      const res = await h.request("POST", "/api/products", {
        token: admin,
        json: { code: "lower", extra: 1 },
      });
      expectProblem(res, 400, "validation_failed");
      const paths = (res.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths).toEqual(expect.arrayContaining(["body.code", "body.name"]));
    });

    it("names a limit listed twice instead of answering a key conflict", async () => {
      const res = await h.request("POST", "/api/products", {
        token: admin,
        json: {
          code: unique(),
          name: "Límites repetidos",
          limits: [{ name: "registers" }, { name: "storage_gb" }, { name: "registers" }],
        },
      });
      expectProblem(res, 400, "validation_failed");
      expect((res.body as { errors: { path: string }[] }).errors.map((e) => e.path)).toEqual([
        "body.limits.2.name",
      ]);
    });

    // Dos conexiones reales: solo en Postgres (PGlite tiene una sola).
    it.runIf(kind === "postgres")(
      "answers 412 to a DELETE whose If-Match went stale while an edit held the row",
      async () => {
        const created = await h.request<{ id: string }>("POST", "/api/products", {
          token: admin,
          json: { code: unique(), name: "Carrera" },
        });
        expect(created.status).toBe(201);
        const etag = created.headers.get("etag") ?? "";
        const editor = new pg.Client({ connectionString: h.db.url });
        await editor.connect();
        try {
          // Una edición concurrente tiene la fila y sube su versión; el DELETE llega en medio.
          await editor.query("begin");
          await editor.query(
            "update products set row_version = row_version + 1, name = 'Editado' where id = $1",
            [created.body.id],
          );
          const deleting = h.request("DELETE", `/api/products/${created.body.id}`, {
            token: admin,
            headers: { "if-match": etag },
          });
          expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
          await editor.query("commit");
          expectProblem(await deleting, 412, "precondition_failed");
        } finally {
          await editor.end();
        }
        const still = await h.request<{ name: string }>("GET", `/api/products/${created.body.id}`, {
          token: admin,
        });
        expect(still.status).toBe(200);
        expect(still.body.name).toBe("Editado");
      },
    );

    it.runIf(kind === "postgres")(
      "rolls back a POST that outlived its Idempotency-Key budget, so a retry cannot apply it twice",
      async () => {
        const created = await h.request<{ id: string }>("POST", "/api/products", {
          token: admin,
          json: { code: unique(), name: "Lenta" },
        });
        const key = unique();
        const send = () =>
          h.request<{ limits: { name: string }[] }>(
            "POST",
            `/api/products/${created.body.id}/limits`,
            { token: admin, json: { name: "slow_limit" }, headers: { "idempotency-key": key } },
          );
        const editor = new pg.Client({ connectionString: h.db.url });
        await editor.connect();
        let slow: Awaited<ReturnType<typeof send>>;
        try {
          // Otra conexión tiene la fila del producto: la petición queda dentro de su transacción.
          await editor.query("begin");
          await editor.query("update products set name = name where id = $1", [created.body.id]);
          const pending = send();
          expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
          // Mientras espera pasan 46 s de reloj (solo Date; los timers siguen reales).
          vi.useFakeTimers({ toFake: ["Date"] });
          vi.setSystemTime(Date.now() + 46_000);
          await editor.query("commit");
          slow = await pending;
        } finally {
          vi.useRealTimers();
          await editor.end();
        }
        expectProblem(slow, 503, "unavailable");
        const rows = await h.db.handle.db
          .select()
          .from(productLimits)
          .where(eq(productLimits.productId, created.body.id));
        expect(rows.map((r) => r.name)).not.toContain("slow_limit");
        // El 503 no se fija a la clave: el reintento ejecuta y el límite queda una sola vez.
        const retried = await send();
        expect(retried.status).toBe(201);
        expect(retried.headers.get("idempotent-replayed")).toBeNull();
        expect(retried.body.limits.filter((l) => l.name === "slow_limit")).toHaveLength(1);
      },
    );

    it("maps a duplicate code to 409 and a product in use to 409 on delete", async () => {
      expectProblem(
        await h.request("POST", "/api/products", {
          token: admin,
          json: { code: "FARUTECH_VET", name: "dup" },
        }),
        409,
        "conflict",
      );
      const vet = await h.request<{ id: string }>("GET", "/api/products/by-code/FARUTECH_VET", {
        token: admin,
      });
      expectProblem(
        await h.request("DELETE", `/api/products/${vet.body.id}`, { token: admin }),
        409,
        "conflict",
      );
    });

    it("names the field of a duplicate code or limit in the 409, without constraint names", async () => {
      const problemOf = (res: { body: unknown }) =>
        res.body as { errors?: { path: string; message: string }[]; detail: string };
      const noSchemaLeak = (res: { body: unknown }) =>
        expect(JSON.stringify(res.body)).not.toMatch(/constraint|_unique|_pk\b|_uq\b|products_/i);

      const dupCode = await h.request("POST", "/api/products", {
        token: admin,
        json: { code: "FARUTECH_ERP", name: "x" },
      });
      expectProblem(dupCode, 409, "conflict");
      expect(problemOf(dupCode).errors?.map((e) => e.path)).toEqual(["body.code"]);
      expect(problemOf(dupCode).detail).toContain("FARUTECH_ERP");
      noSchemaLeak(dupCode);

      const created = await h.request<{ id: string }>("POST", "/api/products", {
        token: admin,
        json: { code: unique(), name: "Límites", limits: [{ name: "registers" }] },
      });
      expect(created.status).toBe(201);
      // max_users existe siempre; registers vino en el alta.
      for (const name of ["max_users", "registers"]) {
        const dupLimit = await h.request("POST", `/api/products/${created.body.id}/limits`, {
          token: admin,
          json: { name },
        });
        expectProblem(dupLimit, 409, "conflict");
        expect(problemOf(dupLimit).errors?.map((e) => e.path)).toEqual(["body.name"]);
        expect(problemOf(dupLimit).detail).toContain(name);
        noSchemaLeak(dupLimit);
      }
      // El 409 no tocó el producto: sigue en la versión 1.
      const got = await h.request("GET", `/api/products/${created.body.id}`, { token: admin });
      expect(got.headers.get("etag")).toBe('"v1"');
    });

    it("answers 404 for unknown ids and 400 for malformed ones", async () => {
      expectProblem(
        await h.request("GET", `/api/products/${crypto.randomUUID()}`, { token: admin }),
        404,
      );
      expectProblem(
        await h.request("GET", "/api/products/nope", { token: admin }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("PATCH", `/api/products/${crypto.randomUUID()}`, {
          token: admin,
          json: { name: "x" },
        }),
        404,
      );
      const vet = await h.request<{ id: string }>("GET", "/api/products/by-code/FARUTECH_VET", {
        token: admin,
      });
      expectProblem(
        await h.request("PATCH", `/api/products/${vet.body.id}`, {
          token: admin,
          json: { name: "x" },
          headers: { "if-match": "garbage" },
        }),
        400,
        "validation_failed",
      );
    });
  });

  describe("security", () => {
    it("requires a token and the right role", async () => {
      expectProblem(await h.request("GET", "/api/products"), 401, "unauthorized");
      expectProblem(
        await h.request("GET", "/api/products", { token: "x.y.z" }),
        401,
        "unauthorized",
      );
      const tenant = await h.token(["tenant_app"]);
      expectProblem(await h.request("GET", "/api/products", { token: tenant }), 403, "forbidden");
      expectProblem(
        await h.request("POST", "/api/products", {
          token: support,
          json: { code: unique(), name: "n" },
        }),
        403,
        "forbidden",
      );
    });
  });
});
