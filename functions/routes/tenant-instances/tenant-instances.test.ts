import { and, eq, ne, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import {
  auditLog,
  idempotencyKeys,
  outboxEvents,
  plans,
  products,
  provisioningTasks,
  tenantInstances,
} from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { demoProvisionBody } from "../../../test/support/demo";
import { failNextIdempotentResponseStore } from "../../../test/support/faults";
import { expectProblem } from "../../../test/support/http";
import { tenantInstanceSchema } from "./schema";
import { createTestInstance } from "./test-fixtures";

interface Page {
  items: { id: string }[];
  nextCursor: string | null;
}

describe.each(["postgres", "pglite"] as const)("tenant instances on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let support: string;
  let catalog: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    support = await h.token(["support"]);
    catalog = await h.token(["catalog_manager"]);
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const auditOf = async (id: string) =>
    (await db().select().from(auditLog).where(eq(auditLog.entityId, id))).sort(
      (a, b) => a.id - b.id,
    );
  const eventsOf = async (id: string) =>
    (await db().select().from(outboxEvents)).filter(
      (e) => (e.payload as { data: { tenantInstanceId?: string } }).data.tenantInstanceId === id,
    );

  describe("happy path", () => {
    it("reads an instance by id and by tenant code, with an ETag and the list's shape", async () => {
      const inst = await createTestInstance(db());
      const got = await h.request("GET", `/api/tenant-instances/${inst.id}`, { token: support });
      expect(got.status).toBe(200);
      expect(got.headers.get("etag")).toMatch(/^"v1\.[0-9a-f]{12}"$/);
      const view = tenantInstanceSchema.parse(got.body);
      expect(view).toMatchObject({
        id: inst.id,
        tenantCode: inst.tenantCode,
        productCode: "FARUTECH_VET",
        status: "active",
        subscription: { id: inst.subscriptionId, planCode: "VET_STARTER", status: "active" },
      });

      const list = await h.request<Page>(
        "GET",
        `/api/tenant-instances?customerId=${inst.customerId}&limit=100`,
        { token: support },
      );
      expect(list.body.items.find((i) => i.id === inst.id)).toEqual(got.body);

      const byCode = await h.request("GET", `/api/tenant-instances/by-code/${inst.tenantCode}`, {
        token: admin,
      });
      expect(byCode.status).toBe(200);
      expect(byCode.body).toEqual(got.body);
      expect(byCode.headers.get("etag")).toBe(got.headers.get("etag"));

      // Cambia el plan (otra fila): la vista cambia y su ETag también, aunque la instancia no.
      const [otherPlan] = await db()
        .select({ id: plans.id })
        .from(plans)
        .innerJoin(products, eq(products.id, plans.productId))
        .where(and(eq(products.code, "FARUTECH_VET"), ne(plans.code, "VET_STARTER")));
      const moved = await h.request("PATCH", `/api/subscriptions/${inst.subscriptionId}`, {
        token: admin,
        json: { planId: otherPlan?.id },
      });
      expect(moved.status).toBe(200);
      const after = await h.request("GET", `/api/tenant-instances/${inst.id}`, { token: support });
      expect(after.headers.get("etag")).toMatch(/^"v1\.[0-9a-f]{12}"$/);
      expect(after.headers.get("etag")).not.toBe(got.headers.get("etag"));
      // If-Match con ese ETag compuesto sirve para editar la instancia.
      const edited = await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
        token: admin,
        json: { environment: "staging" },
        headers: { "if-match": after.headers.get("etag") ?? "" },
      });
      expect(edited.status).toBe(200);
    });

    it("patches environment and subdomain with If-Match and audits the change", async () => {
      const inst = await createTestInstance(db());
      const patched = await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
        token: admin,
        json: { environment: "staging", subdomainUrl: "qa.norte.farutech.test" },
        headers: { "if-match": '"v1"' },
      });
      expect(patched.status).toBe(200);
      expect(patched.headers.get("etag")).toMatch(/^"v2\.[0-9a-f]{12}"$/);
      expect(patched.body).toMatchObject({
        id: inst.id,
        environment: "staging",
        subdomainUrl: "qa.norte.farutech.test",
      });
      const stale = await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
        token: admin,
        json: { environment: "lost-update" },
        headers: { "if-match": '"v1"' },
      });
      expectProblem(stale, 412, "precondition_failed");
      const only = await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
        token: admin,
        json: { environment: "production" },
      });
      expect(only.body).toMatchObject({
        environment: "production",
        subdomainUrl: "qa.norte.farutech.test",
      });

      const audit = await auditOf(inst.id);
      expect(audit.map((a) => a.action)).toEqual([
        "tenant_instance.updated",
        "tenant_instance.updated",
      ]);
      expect(audit[0]).toMatchObject({
        actor: "tester-platform_admin",
        before: { environment: "production" },
        after: { environment: "staging", subdomainUrl: "qa.norte.farutech.test" },
      });
      const events = await eventsOf(inst.id);
      expect(events.map((e) => e.type)).toEqual([
        "tenant_instance.updated",
        "tenant_instance.updated",
      ]);
      // Qué cambió, sin valores: el subdominio no viaja al broker (GDPR).
      const bySeq = [...events].sort((a, b) => Number(a.seq) - Number(b.seq));
      expect(bySeq.map((e) => (e.payload as { data: unknown }).data)).toEqual([
        { tenantInstanceId: inst.id, changed: ["environment", "subdomainUrl"] },
        { tenantInstanceId: inst.id, changed: ["environment"] },
      ]);
    });

    it("suspends and reactivates, bumping the version and emitting entitlementsChanged", async () => {
      const inst = await createTestInstance(db());
      const suspended = await h.request("POST", `/api/tenant-instances/${inst.id}/suspend`, {
        token: admin,
      });
      expect(suspended.status).toBe(200);
      expect(suspended.body).toMatchObject({ id: inst.id, status: "suspended" });
      expect(suspended.headers.get("etag")).toMatch(/^"v2\.[0-9a-f]{12}"$/);

      const again = await h.request("POST", `/api/tenant-instances/${inst.id}/suspend`, {
        token: admin,
      });
      expectProblem(again, 409, "conflict");
      expect(again.body).toMatchObject({ currentStatus: "suspended" });
      expect((again.body as { detail: string }).detail).toContain("suspended");

      const reactivated = await h.request("POST", `/api/tenant-instances/${inst.id}/reactivate`, {
        token: admin,
        headers: { "if-match": '"v2"' },
      });
      expect(reactivated.status).toBe(200);
      expect(reactivated.body).toMatchObject({ status: "active" });
      expect(reactivated.headers.get("etag")).toMatch(/^"v3\.[0-9a-f]{12}"$/);
      const twice = await h.request("POST", `/api/tenant-instances/${inst.id}/reactivate`, {
        token: admin,
      });
      expectProblem(twice, 409, "conflict");
      expect((twice.body as { detail: string }).detail).toContain("active");

      const [row] = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, inst.id));
      expect(row).toMatchObject({ status: "active", rowVersion: 3 });
      expect((await auditOf(inst.id)).map((a) => [a.action, a.before, a.after])).toEqual([
        [
          "tenant_instance.suspended",
          { status: "active", rowVersion: 1 },
          { status: "suspended", rowVersion: 2 },
        ],
        [
          "tenant_instance.reactivated",
          { status: "suspended", rowVersion: 2 },
          { status: "active", rowVersion: 3 },
        ],
      ]);
      const events = await eventsOf(inst.id);
      expect(
        events
          .filter((e) => e.type === "entitlements.changed")
          .map((e) => [e.subject, (e.payload as { data: { reason: string } }).data.reason]),
      ).toEqual([
        ["integration.tasks.entitlements_changed", "instance_suspended"],
        ["integration.tasks.entitlements_changed", "instance_reactivated"],
      ]);
    });

    it("replays a suspend sent twice with the same Idempotency-Key without suspending twice", async () => {
      const inst = await createTestInstance(db());
      const key = `suspend-${inst.id}`;
      const first = await h.request("POST", `/api/tenant-instances/${inst.id}/suspend`, {
        token: admin,
        headers: { "idempotency-key": key },
      });
      const second = await h.request("POST", `/api/tenant-instances/${inst.id}/suspend`, {
        token: admin,
        headers: { "idempotency-key": key },
      });
      expect(first.status).toBe(200);
      expect(second.status).toBe(200);
      expect(second.headers.get("idempotent-replayed")).toBe("true");
      expect(second.body).toEqual(first.body);
      expect((await auditOf(inst.id)).map((a) => a.action)).toEqual(["tenant_instance.suspended"]);
    });
  });

  describe("errors", () => {
    it("never provisions twice for one Idempotency-Key whose response was lost after the commit", async () => {
      const restore = await failNextIdempotentResponseStore(db());
      try {
        const body = await demoProvisionBody(db(), "lost-response");
        const provision = () =>
          h.request("POST", "/api/provisioning/provision", {
            token: admin,
            json: body,
            headers: { "idempotency-key": "provision-lost-response" },
          });
        expect((await provision()).status).toBe(202);
        await db()
          .update(idempotencyKeys)
          .set({ createdAt: sql`now() - interval '61 seconds'` })
          .where(eq(idempotencyKeys.key, "provision-lost-response"));
        // Dice qué pasó (y no reejecuta hasta chocar con su propio código de instancia).
        const retry = await provision();
        expectProblem(retry, 409, "conflict");
        expect(retry.body).toMatchObject({
          detail: expect.stringContaining("was applied, but its response could not be stored"),
        });
        const created = await db()
          .select({ id: tenantInstances.id })
          .from(tenantInstances)
          .where(eq(tenantInstances.instanceCode, "lost-response"));
        expect(created).toHaveLength(1);
      } finally {
        await restore();
      }
    });

    it("never gives two live instances the same subdomain", async () => {
      const s = newId().slice(0, 6);
      // Dos clientes distintos cuyos nombres dan el mismo slug.
      const customerIds: string[] = [];
      for (const [i, legalName] of [`Clínica Norte ${s}`, `Clinica Norte ${s}`].entries()) {
        const res = await h.request<{ id: string }>("POST", "/api/customers", {
          token: admin,
          json: {
            legalName,
            taxId: `9${s}${i}`,
            billingEmail: `b${i}@norte.example`,
            country: "CO",
          },
        });
        expect(res.status).toBe(201);
        customerIds.push(res.body.id);
      }
      const base = await demoProvisionBody(db(), "main");
      const subdomains: string[] = [];
      for (const customerId of customerIds) {
        const res = await h.request<{ tenantInstanceId: string }>(
          "POST",
          "/api/provisioning/provision",
          { token: admin, json: { ...base, customerId } },
        );
        expect(res.status).toBe(202);
        const got = await h.request<{ subdomainUrl: string }>(
          "GET",
          `/api/tenant-instances/${res.body.tenantInstanceId}`,
          { token: admin },
        );
        subdomains.push(got.body.subdomainUrl);
      }
      expect(subdomains[0]).toBe(`main.clinica-norte-${s.toLowerCase()}.farutech.test`);
      expect(subdomains[1]).toMatch(
        new RegExp(`^main-[0-9a-f]{8}\\.clinica-norte-${s.toLowerCase()}\\.farutech\\.test$`),
      );

      // Cambiarlo a mano al de otra instancia viva es un 409.
      const other = await createTestInstance(db());
      const taken = await h.request("PATCH", `/api/tenant-instances/${other.id}`, {
        token: admin,
        json: { subdomainUrl: subdomains[0] },
      });
      expectProblem(taken, 409, "conflict");
      // El de una instancia dada de baja queda libre.
      await db()
        .update(tenantInstances)
        .set({ status: "decommissioned" })
        .where(eq(tenantInstances.subdomainUrl, subdomains[0] ?? ""));
      const reused = await h.request("PATCH", `/api/tenant-instances/${other.id}`, {
        token: admin,
        json: { subdomainUrl: subdomains[0] },
      });
      expect(reused.status).toBe(200);
    });

    it("names subdomainUrl in the 409 of a PATCH to another live instance's subdomain, without constraint names", async () => {
      const first = await createTestInstance(db());
      const second = await createTestInstance(db());
      const [taken] = await db()
        .select({ subdomainUrl: tenantInstances.subdomainUrl })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, first.id));
      const res = await h.request("PATCH", `/api/tenant-instances/${second.id}`, {
        token: admin,
        json: { subdomainUrl: taken?.subdomainUrl },
      });
      expectProblem(res, 409, "conflict");
      const body = res.body as { errors?: { path: string }[] };
      expect(body.errors?.map((e) => e.path)).toEqual(["body.subdomainUrl"]);
      expect(JSON.stringify(res.body)).not.toMatch(/constraint|_uq\b|tenant_instances/i);
      // El valor no va en el detalle: puede derivar del nombre legal del cliente (GDPR, logs).
      expect(JSON.stringify(res.body)).not.toContain(taken?.subdomainUrl);
    });

    it("answers 404 for unknown ids and codes and 400 for malformed ones", async () => {
      const unknown = newId();
      for (const [method, path] of [
        ["GET", `/api/tenant-instances/${unknown}`],
        ["POST", `/api/tenant-instances/${unknown}/suspend`],
        ["POST", `/api/tenant-instances/${unknown}/reactivate`],
        ["GET", "/api/tenant-instances/by-code/no-such-tenant-code"],
      ] as const) {
        expectProblem(await h.request(method, path, { token: admin }), 404, "not_found");
      }
      expectProblem(
        await h.request("PATCH", `/api/tenant-instances/${unknown}`, {
          token: admin,
          json: { environment: "staging" },
        }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", "/api/tenant-instances/not-a-uuid", { token: admin }),
        400,
        "validation_failed",
      );
    });

    it("rejects a list filter it doesn't know instead of returning the unfiltered list", async () => {
      const inst = await createTestInstance(db());
      // `customer_id` en vez de `customerId`: sin el 400, la lista traería a todos los clientes.
      const res = await h.request(
        "GET",
        `/api/tenant-instances?customer_id=${inst.customerId}&limit=100`,
        { token: admin },
      );
      expectProblem(res, 400, "validation_failed");
      expect(res.body).toMatchObject({
        errors: [{ path: "query.customer_id", message: "Unknown field" }],
      });
      for (const path of [
        "/api/products?foo=bar",
        "/api/audit?bogus=1",
        "/api/dlq?domian=billing",
      ]) {
        expectProblem(await h.request("GET", path, { token: admin }), 400, "validation_failed");
      }
    });

    it("rejects bad PATCH bodies naming the fields", async () => {
      const inst = await createTestInstance(db());
      const bad = await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
        token: admin,
        json: { environment: "Not Valid", subdomainUrl: "http://x/y", status: "active" },
      });
      expectProblem(bad, 400, "validation_failed");
      const paths = (bad.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths).toEqual(expect.arrayContaining(["body.environment", "body.subdomainUrl"]));
      expectProblem(
        await h.request("PATCH", `/api/tenant-instances/${inst.id}`, { token: admin, json: {} }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
          token: admin,
          json: { environment: "qa" },
          headers: { "if-match": "garbage" },
        }),
        400,
        "validation_failed",
      );
      expect(await auditOf(inst.id)).toEqual([]);
    });

    it("refuses transitions other than active→suspended and suspended→active", async () => {
      const provisioning = await createTestInstance(db(), { status: "provisioning" });
      const res = await h.request("POST", `/api/tenant-instances/${provisioning.id}/suspend`, {
        token: admin,
      });
      expectProblem(res, 409, "conflict");
      expect(res.body).toMatchObject({ currentStatus: "provisioning" });

      const gone = await createTestInstance(db(), { status: "decommissioned" });
      const reactivate = await h.request("POST", `/api/tenant-instances/${gone.id}/reactivate`, {
        token: admin,
      });
      expectProblem(reactivate, 409, "conflict");
      expect((reactivate.body as { detail: string }).detail).toContain("decommissioned");
      expectProblem(
        await h.request("PATCH", `/api/tenant-instances/${gone.id}`, {
          token: admin,
          json: { environment: "staging" },
        }),
        409,
        "conflict",
      );

      // Con una baja en cola, reactivar sería deshecho por el worker.
      const leaving = await createTestInstance(db(), { status: "suspended" });
      await db()
        .insert(provisioningTasks)
        .values({
          id: newId(),
          tenantInstanceId: leaving.id,
          kind: "deprovision",
          status: "queued",
          correlationId: `test-${newId()}`,
          requestHash: "x",
          response: {},
        });
      expectProblem(
        await h.request("POST", `/api/tenant-instances/${leaving.id}/reactivate`, { token: admin }),
        409,
        "conflict",
      );
      for (const id of [provisioning.id, gone.id, leaving.id])
        expect(await auditOf(id)).toEqual([]);
    });

    it("stops a suspend whose If-Match is stale", async () => {
      const inst = await createTestInstance(db());
      expectProblem(
        await h.request("POST", `/api/tenant-instances/${inst.id}/suspend`, {
          token: admin,
          headers: { "if-match": '"v7"' },
        }),
        412,
        "precondition_failed",
      );
      const [row] = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, inst.id));
      expect(row?.status).toBe("active");
    });
    it("refuses an If-Match with a view digest it no longer serves; a plain vN still compares the version", async () => {
      const inst = await createTestInstance(db());
      const path = `/api/tenant-instances/${inst.id}`;
      const etagOf = async () =>
        (await h.request("GET", path, { token: admin })).headers.get("etag") ?? "";
      const changeSubscription = async (expiresAt: string) =>
        expect(
          (
            await h.request("PATCH", `/api/subscriptions/${inst.subscriptionId}`, {
              token: admin,
              json: { expiresAt },
            })
          ).status,
        ).toBe(200);
      const write = (method: string, url: string, ifMatch: string, json?: unknown) =>
        h.request(method, url, { token: admin, json, headers: { "if-match": ifMatch } });

      const read = await etagOf();
      // Cambia la suscripción: la instancia sigue en v1, pero el ETag leído ya no se sirve.
      await changeSubscription("2099-01-01T00:00:00.000Z");
      const current = await etagOf();
      expect(current).toMatch(/^"v1\.[0-9a-f]{12}"$/);
      expect(current).not.toBe(read);
      expectProblem(
        await write("PATCH", path, read, { environment: "lost-update" }),
        412,
        "precondition_failed",
      );
      expectProblem(await write("POST", `${path}/suspend`, read), 412, "precondition_failed");
      expect(await auditOf(inst.id)).toEqual([]);
      // Una lista vale si uno de sus ETags es el actual.
      const suspended = await write("POST", `${path}/suspend`, `${read}, ${current}`);
      expect(suspended.status).toBe(200);
      const afterSuspend = suspended.headers.get("etag") ?? "";
      await changeSubscription("2098-01-01T00:00:00.000Z");
      expectProblem(
        await write("POST", `${path}/reactivate`, afterSuspend),
        412,
        "precondition_failed",
      );
      // "v2" sin resumen sigue comparando solo la versión de la instancia (lo que documenta el README).
      const reactivated = await write("POST", `${path}/reactivate`, '"v2"');
      expect(reactivated.status).toBe(200);
      const patched = await write("PATCH", path, reactivated.headers.get("etag") ?? "", {
        environment: "staging",
      });
      expect(patched.status).toBe(200);
      const [row] = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, inst.id));
      expect(row).toMatchObject({ status: "active", environment: "staging", rowVersion: 4 });
    });
  });

  describe("security", () => {
    it("requires a token, lets support read but not write, and keeps catalog managers out", async () => {
      const inst = await createTestInstance(db());
      const base = `/api/tenant-instances/${inst.id}`;
      expectProblem(await h.request("GET", base), 401, "unauthorized");
      expectProblem(await h.request("POST", `${base}/suspend`), 401, "unauthorized");
      expect((await h.request("GET", base, { token: support })).status).toBe(200);
      expectProblem(
        await h.request("PATCH", base, { token: support, json: { environment: "qa" } }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("POST", `${base}/suspend`, { token: support }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("POST", `${base}/reactivate`, { token: support }),
        403,
        "forbidden",
      );
      expectProblem(await h.request("GET", base, { token: catalog }), 403, "forbidden");
      expectProblem(
        await h.request("GET", `/api/tenant-instances/by-code/${inst.tenantCode}`, {
          token: catalog,
        }),
        403,
        "forbidden",
      );
      expectProblem(
        await h.request("POST", `${base}/suspend`, { token: catalog }),
        403,
        "forbidden",
      );
      const tenant = await h.token(["tenant_app"]);
      expectProblem(await h.request("GET", base, { token: tenant }), 403, "forbidden");
      const [row] = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, inst.id));
      expect(row).toMatchObject({ status: "active", rowVersion: 1 });
    });
  });
});
