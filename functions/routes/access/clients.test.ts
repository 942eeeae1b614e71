import { eq } from "drizzle-orm";
import type { Hono } from "hono";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { generateSigningKey } from "../../../core/auth/keys";
import { newId } from "../../../core/ids";
import { silentLogger } from "../../../core/logger";
import { verifySecret } from "../../../core/secret-hash";
import { apiClients, auditLog, idempotencyKeys, outboxEvents } from "../../../db/schema";
import { seedDemo } from "../../../db/seed";
import type { EdgeEnv } from "../../../edge/env";
import { createNodeEdgeApp } from "../../../edge/node";
import { type AdminHarness, startAdminHarness } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { createTestInstance } from "../tenant-instances/test-fixtures";
import { apiClientCredentialsSchema, apiClientSchema } from "./schema";

interface Page {
  items: unknown[];
  nextCursor: string | null;
}

describe.each(["postgres", "pglite"] as const)("API clients on %s", (kind) => {
  let h: AdminHarness;
  let edge: Hono<EdgeEnv>;
  let admin: string;
  let support: string;
  let catalog: string;

  beforeAll(async () => {
    h = await startAdminHarness(kind);
    await seedDemo(h.db.handle.db);
    // El edge real sobre la misma base: las credenciales emitidas deben servir para pedir tokens.
    edge = await createNodeEdgeApp(
      {
        AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("clients-test")]),
        AUTH_ISSUER: "http://edge.test",
        AUTH_AUDIENCE: "farutech-orchestrator",
        LOG_LEVEL: "silent",
      },
      h.db.handle.db,
      silentLogger,
    );
    admin = await h.token(["platform_admin"]);
    support = await h.token(["support"]);
    catalog = await h.token(["catalog_manager"]);
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const tokenFor = (clientId: string, secret: string) =>
    edge.request("/oauth/token", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: clientId,
        client_secret: secret,
      }).toString(),
    });

  /** El secreto no puede aparecer en ninguna tabla ni respuesta fuera del 201. */
  async function expectSecretNowhere(secret: string, responses: unknown[]) {
    const tables = await Promise.all([
      db().select().from(auditLog),
      db().select().from(outboxEvents),
      db().select().from(idempotencyKeys),
      db().select().from(apiClients),
    ]);
    for (const rows of tables) expect(JSON.stringify(rows)).not.toContain(secret);
    for (const body of responses) expect(JSON.stringify(body)).not.toContain(secret);
  }

  // Una creación (no una repetición) siempre trae el secreto.
  const freshCredentials = apiClientCredentialsSchema.extend({ clientSecret: z.string() });
  const freshCreds = (body: unknown) => freshCredentials.parse(body);

  describe("happy path", () => {
    it("creates an admin client whose secret works once shown and is stored only hashed", async () => {
      const res = await h.request("POST", "/api/admin-clients", {
        token: admin,
        json: { name: "Catálogo CI", roles: ["catalog_manager", "support"] },
      });
      expect(res.status).toBe(201);
      const created = freshCreds(res.body);
      expect(created).toMatchObject({
        name: "Catálogo CI",
        kind: "admin",
        customerId: null,
        instanceIds: [],
        roles: ["catalog_manager", "support"],
      });
      expect(created.clientSecret.length).toBeGreaterThanOrEqual(40);
      expect(res.headers.get("location")).toBe(`/api/admin-clients/${created.clientId}`);
      expect(res.headers.get("cache-control")).toBe("no-store");
      // El ETag del 201 es el del GET: sirve para revocarlo con If-Match sin leerlo antes.
      const read = await h.request("GET", `/api/admin-clients/${created.clientId}`, {
        token: admin,
      });
      expect(res.headers.get("etag")).toBe(read.headers.get("etag"));

      const [row] = await db()
        .select()
        .from(apiClients)
        .where(eq(apiClients.clientId, created.clientId));
      expect(row?.secretHash).toMatch(/^pbkdf2-sha256\$/);
      expect(await verifySecret(created.clientSecret, row?.secretHash ?? "")).toBe(true);
      expect(await verifySecret(`${created.clientSecret}x`, row?.secretHash ?? "")).toBe(false);

      const issued = await tokenFor(created.clientId, created.clientSecret);
      expect(issued.status).toBe(200);
      const claims = decodeJwt(((await issued.json()) as { access_token: string }).access_token);
      expect(claims).toMatchObject({
        sub: created.clientId,
        roles: ["catalog_manager", "support"],
        tenant_id: null,
      });
      expect((await tokenFor(created.clientId, "wrong-secret")).status).toBe(401);

      const one = await h.request("GET", `/api/admin-clients/${created.clientId}`, {
        token: support,
      });
      expect(one.status).toBe(200);
      expect(apiClientSchema.strict().parse(one.body)).toMatchObject({ revokedAt: null });
      expect(one.headers.get("etag")).toBe('"v1"');
      const list = await h.request<Page>("GET", "/api/admin-clients?limit=100", { token: admin });
      expect(list.body.items).toContainEqual(one.body);
      expect(JSON.stringify(list.body)).not.toContain("secret");

      const audit = await db()
        .select()
        .from(auditLog)
        .where(eq(auditLog.entityId, created.clientId));
      expect(audit.map((a) => [a.action, a.entityType, a.actor])).toEqual([
        ["api_client.created", "api_client", "tester-platform_admin"],
      ]);
      expect(JSON.stringify(audit)).not.toContain(row?.secretHash ?? "?");
      await expectSecretNowhere(created.clientSecret, [one.body, list.body]);
    });

    it("creates a tenant client scoped to one instance of its customer", async () => {
      const inst = await createTestInstance(db());
      const other = await createTestInstance(db());
      const res = await h.request("POST", `/api/tenant-instances/${inst.id}/clients`, {
        token: admin,
        json: { name: "App Vet Norte" },
      });
      expect(res.status).toBe(201);
      const created = freshCreds(res.body);
      expect(created).toMatchObject({
        kind: "tenant",
        customerId: inst.customerId,
        instanceIds: [inst.id],
        roles: ["tenant_app"],
      });
      expect(res.headers.get("etag")).toBe('"v1"');
      expect(created.clientId).not.toBe(created.clientSecret);

      const issued = await tokenFor(created.clientId, created.clientSecret);
      expect(issued.status).toBe(200);
      const accessToken = ((await issued.json()) as { access_token: string }).access_token;
      expect(decodeJwt(accessToken)).toMatchObject({
        tenant_id: inst.customerId,
        instance_ids: [inst.id],
        roles: ["tenant_app"],
      });
      const read = (id: string) =>
        edge.request(`/v1/entitlements?instanceId=${id}`, {
          headers: { authorization: `Bearer ${accessToken}` },
        });
      expect((await read(inst.id)).status).toBe(200);
      expect((await read(other.id)).status).toBe(403);

      const filtered = await h.request<Page>(
        "GET",
        `/api/admin-clients?kind=tenant&instanceId=${inst.id}`,
        { token: support },
      );
      expect(filtered.body.items).toEqual([
        expect.objectContaining({ clientId: created.clientId, kind: "tenant" }),
      ]);
      const byCustomer = await h.request<Page>(
        "GET",
        `/api/admin-clients?customerId=${inst.customerId}&kind=admin`,
        { token: support },
      );
      expect(byCustomer.body.items).toEqual([]);
      const events = (await db().select().from(outboxEvents)).filter(
        (e) => e.type === "api_client.created",
      );
      expect(
        events.some(
          (e) => (e.payload as { data: { clientId: string } }).data.clientId === created.clientId,
        ),
      ).toBe(true);
      await expectSecretNowhere(created.clientSecret, [filtered.body]);
    });

    it("revokes a client: no more tokens, revokedAt listed, a second DELETE changes nothing", async () => {
      const res = await h.request<{ clientId: string; clientSecret: string }>(
        "POST",
        "/api/admin-clients",
        { token: admin, json: { name: "to revoke", roles: ["support"] } },
      );
      const { clientId, clientSecret } = res.body;
      expect((await tokenFor(clientId, clientSecret)).status).toBe(200);
      expect(
        (await h.request("DELETE", `/api/admin-clients/${clientId}`, { token: admin })).status,
      ).toBe(204);
      expect((await tokenFor(clientId, clientSecret)).status).toBe(401);
      expect(
        (await h.request("DELETE", `/api/admin-clients/${clientId}`, { token: admin })).status,
      ).toBe(204);
      const one = await h.request<{ revokedAt: string | null }>(
        "GET",
        `/api/admin-clients/${clientId}`,
        { token: admin },
      );
      expect(one.body.revokedAt).toEqual(expect.any(String));
      const revoked = await h.request<Page>("GET", "/api/admin-clients?state=revoked&limit=100", {
        token: admin,
      });
      expect(revoked.body.items).toContainEqual(one.body);
      const active = await h.request<Page>("GET", "/api/admin-clients?state=active&limit=100", {
        token: admin,
      });
      expect(active.body.items).not.toContainEqual(expect.objectContaining({ clientId }));
      const audit = await db().select().from(auditLog).where(eq(auditLog.entityId, clientId));
      expect(audit.map((a) => a.action)).toEqual(["api_client.created", "api_client.revoked"]);
      await expectSecretNowhere(clientSecret, [one.body, revoked.body]);
    });

    it("revokes with If-Match only while the client is as it was read (412 otherwise)", async () => {
      const res = await h.request<{ clientId: string; clientSecret: string }>(
        "POST",
        "/api/admin-clients",
        { token: admin, json: { name: "guarded revoke", roles: ["support"] } },
      );
      const { clientId, clientSecret } = res.body;
      const path = `/api/admin-clients/${clientId}`;
      const etagOf = async () =>
        (await h.request("GET", path, { token: support })).headers.get("etag");
      expect(await etagOf()).toBe('"v1"');
      const revoke = (ifMatch: string) =>
        h.request("DELETE", path, { token: admin, headers: { "if-match": ifMatch } });
      expectProblem(await revoke('"v999"'), 412, "precondition_failed");
      const malformed = await revoke("v1");
      expectProblem(malformed, 400, "validation_failed");
      expect(JSON.stringify(malformed.body)).toContain("header.if-match");
      // Ni el 412 ni el 400 revocaron nada.
      expect((await tokenFor(clientId, clientSecret)).status).toBe(200);

      expect((await revoke('"v1"')).status).toBe(204);
      expect((await tokenFor(clientId, clientSecret)).status).toBe(401);
      expect(await etagOf()).toBe('"v2"');
      // Revocado: repetir con el ETag vigente no cambia nada; con el de antes es un 412.
      expect((await revoke('"v2"')).status).toBe(204);
      expectProblem(await revoke('"v1"'), 412, "precondition_failed");
      expect(await etagOf()).toBe('"v2"');
      const audit = await db().select().from(auditLog).where(eq(auditLog.entityId, clientId));
      expect(audit.map((a) => a.action)).toEqual(["api_client.created", "api_client.revoked"]);
      await expectSecretNowhere(clientSecret, []);
    });

    it("pages through clients with a cursor without repeating any", async () => {
      for (let i = 0; i < 3; i++) {
        await h.request("POST", "/api/admin-clients", {
          token: admin,
          json: { name: `page ${i}`, roles: ["support"] },
        });
      }
      const seen = new Set<string>();
      let cursor: string | null = null;
      do {
        const url = `/api/admin-clients?limit=2${cursor ? `&cursor=${cursor}` : ""}`;
        const page: { body: { items: { clientId: string }[]; nextCursor: string | null } } =
          await h.request("GET", url, { token: support });
        for (const item of page.body.items) {
          expect(seen.has(item.clientId)).toBe(false);
          seen.add(item.clientId);
        }
        cursor = page.body.nextCursor;
      } while (cursor);
      const all = await db().select({ id: apiClients.id }).from(apiClients);
      expect(seen.size).toBe(all.length);
    });
  });

  describe("errors", () => {
    it("rejects bad bodies naming the fields", async () => {
      for (const json of [
        { name: "x", roles: ["tenant_app"] },
        { name: "x", roles: [] },
        { name: "x", roles: ["support", "support"] },
        { name: "", roles: ["support"] },
        { name: "x", roles: ["support"], clientSecret: "mine" },
        { roles: ["support"] },
      ]) {
        const res = await h.request("POST", "/api/admin-clients", { token: admin, json });
        expectProblem(res, 400, "validation_failed");
      }
      const bad = await h.request("POST", "/api/admin-clients", {
        token: admin,
        json: { name: "x", roles: ["root"] },
      });
      expect((bad.body as { errors: { path: string }[] }).errors[0]?.path).toMatch(/^body\.roles/);
      const inst = await createTestInstance(db());
      expectProblem(
        await h.request("POST", `/api/tenant-instances/${inst.id}/clients`, {
          token: admin,
          json: { name: "x", roles: ["platform_admin"] },
        }),
        400,
        "validation_failed",
      );
    });

    it("answers 404 for unknown instances and clients, 409 for a decommissioned instance", async () => {
      expectProblem(
        await h.request("POST", `/api/tenant-instances/${newId()}/clients`, {
          token: admin,
          json: { name: "x" },
        }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("POST", "/api/tenant-instances/nope/clients", {
          token: admin,
          json: { name: "x" },
        }),
        400,
        "validation_failed",
      );
      const gone = await createTestInstance(db(), { status: "decommissioned" });
      expectProblem(
        await h.request("POST", `/api/tenant-instances/${gone.id}/clients`, {
          token: admin,
          json: { name: "x" },
        }),
        409,
        "conflict",
      );
      expectProblem(
        await h.request("DELETE", "/api/admin-clients/adm_does-not-exist", { token: admin }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", "/api/admin-clients/adm_does-not-exist", { token: admin }),
        404,
        "not_found",
      );
      expectProblem(
        await h.request("GET", "/api/admin-clients?cursor=%%%", { token: admin }),
        400,
        "validation_failed",
      );
    });

    it("replays a POST with the same Idempotency-Key without ever storing the secret", async () => {
      const key = `client-${newId()}`;
      const send = () =>
        h.request<{ clientId: string; clientSecret: string | null }>("POST", "/api/admin-clients", {
          token: admin,
          json: { name: "retrying CI", roles: ["support"] },
          headers: { "idempotency-key": key },
        });
      const first = await send();
      expect(first.status).toBe(201);
      const again = await send();
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.body.clientId).toBe(first.body.clientId);
      expect(again.body.clientSecret).toBeNull();
      const rows = await db().select().from(apiClients).where(eq(apiClients.name, "retrying CI"));
      expect(rows).toHaveLength(1);
      await expectSecretNowhere(first.body.clientSecret ?? "", []);
    });
  });

  describe("security", () => {
    it("lets only platform_admin issue or revoke credentials", async () => {
      const inst = await createTestInstance(db());
      expectProblem(await h.request("GET", "/api/admin-clients"), 401, "unauthorized");
      expectProblem(
        await h.request("POST", "/api/admin-clients", { json: { name: "x", roles: ["support"] } }),
        401,
        "unauthorized",
      );
      const tenant = await h.token(["tenant_app"]);
      for (const token of [support, catalog, tenant]) {
        expectProblem(
          await h.request("POST", "/api/admin-clients", {
            token,
            json: { name: "x", roles: ["platform_admin"] },
          }),
          403,
          "forbidden",
        );
        expectProblem(
          await h.request("POST", `/api/tenant-instances/${inst.id}/clients`, {
            token,
            json: { name: "x" },
          }),
          403,
          "forbidden",
        );
        expectProblem(
          await h.request("DELETE", "/api/admin-clients/adm_whatever", { token }),
          403,
          "forbidden",
        );
      }
      expect((await h.request("GET", "/api/admin-clients", { token: support })).status).toBe(200);
      expectProblem(
        await h.request("GET", "/api/admin-clients", { token: catalog }),
        403,
        "forbidden",
      );
      const rows = await db().select().from(apiClients).where(eq(apiClients.name, "x"));
      expect(rows).toEqual([]);
    });
  });
});
