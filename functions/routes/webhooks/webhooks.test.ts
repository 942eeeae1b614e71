import { eq, like, or } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import { silentLogger } from "../../../core/logger";
import {
  createSecretBox,
  generateEncryptionKey,
  type SecretBox,
  secretContext,
} from "../../../core/secret-box";
import { auditLog, outboxEvents, webhookEndpoints } from "../../../db/schema";
import { seedDemo } from "../../../db/seed";
import { type AdminHarness, startAdminHarness } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { runMaintenanceOnce } from "../../../workers/maintenance";
import { createTestInstance } from "../tenant-instances/test-fixtures";
import { webhookSchema } from "./schema";

type Problem = { errors?: { path: string; message: string }[] };

// Lectura, cambio y baja de un endpoint. El alta (que cifra el secreto) la cubre
// test/e2e/webhooks.test.ts con ENCRYPTION_KEYS; aquí la fila se inserta ya cifrada.
describe.each(["postgres", "pglite"] as const)("webhook endpoints on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let support: string;
  let box: SecretBox;

  beforeAll(async () => {
    box = await createSecretBox(JSON.stringify([generateEncryptionKey("webhooks-test")]));
    h = await startAdminHarness(kind, undefined, { secretBox: box });
    await seedDemo(h.db.handle.db);
    admin = await h.token(["platform_admin"]);
    support = await h.token(["support"]);
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const SEALED = "v1.test.sealed-signing-secret-never-shown";

  async function insertEndpoint() {
    const instance = await createTestInstance(db());
    const [row] = await db()
      .insert(webhookEndpoints)
      .values({
        id: newId(),
        tenantInstanceId: instance.id,
        url: "https://vet.example/hooks/farutech",
        secretEncrypted: SEALED,
        encryptionKeyId: "test",
      })
      .returning();
    if (!row) throw new Error("webhook insert returned nothing");
    return row;
  }

  /** Ni el secreto cifrado ni su clave salen en respuestas, auditoría u outbox. */
  async function expectSecretNowhere(responses: unknown[]) {
    const tables = await Promise.all([
      db().select().from(auditLog).where(eq(auditLog.entityType, "webhook_endpoint")),
      db().select().from(outboxEvents).where(like(outboxEvents.type, "webhook.%")),
    ]);
    for (const rows of [...tables, ...responses]) {
      // Ningún campo con el secreto o su clave (previousSecretExpiresAt es solo una fecha).
      const text = JSON.stringify(rows).replaceAll('"previousSecretExpiresAt":', '"overlapEnd":');
      expect(text).not.toContain(SEALED);
      expect(text).not.toContain("whsec_");
      expect(text).not.toMatch(/"[^"]*(secret|encryption)[^"]*":/i);
    }
  }

  it("reads one endpoint with its ETag and changes url and active with If-Match", async () => {
    const row = await insertEndpoint();
    const path = `/api/webhooks/${row.id}`;
    const got = await h.request("GET", path, { token: support });
    expect(got.status).toBe(200);
    expect(got.headers.get("etag")).toBe('"v1"');
    // support no ve la ruta (puede llevar el token del receptor); platform_admin, la URL entera.
    expect(webhookSchema.strict().parse(got.body)).toMatchObject({
      id: row.id,
      tenantInstanceId: row.tenantInstanceId,
      url: "https://vet.example/…",
      active: true,
    });
    const full = await h.request("GET", path, { token: admin });
    expect(full.body).toMatchObject({ url: "https://vet.example/hooks/farutech" });
    const listed = await h.request(
      "GET",
      `/api/webhooks?tenantInstanceId=${row.tenantInstanceId}`,
      {
        token: support,
      },
    );
    expect((listed.body as { items: { url: string }[] }).items.map((i) => i.url)).toEqual([
      "https://vet.example/…",
    ]);

    const patch = (json: unknown, ifMatch?: string) =>
      h.request("PATCH", path, {
        token: admin,
        json,
        headers: ifMatch ? { "if-match": ifMatch } : {},
      });
    const paused = await patch({ active: false }, '"v1"');
    expect(paused.status).toBe(200);
    expect(paused.headers.get("etag")).toBe('"v2"');
    expect(webhookSchema.strict().parse(paused.body)).toMatchObject({ active: false });
    expectProblem(await patch({ active: true }, '"v1"'), 412, "precondition_failed");
    const malformed = await patch({ active: true }, "v2");
    expectProblem(malformed, 400, "validation_failed");
    expect((malformed.body as Problem).errors?.[0]?.path).toBe("header.if-match");
    // Sin If-Match también vale (como los demás PATCH).
    const moved = await patch({ url: "https://vet.example/hooks/v2", active: true });
    expect(moved.status).toBe(200);
    expect(moved.headers.get("etag")).toBe('"v3"');
    const again = await h.request("GET", path, { token: admin });
    expect(again.headers.get("etag")).toBe('"v3"');
    expect(again.body).toEqual(moved.body);
    expect(again.body).toMatchObject({ url: "https://vet.example/hooks/v2", active: true });
    // Los mismos valores: nada cambia, ni versión ni auditoría ni evento.
    const same = await patch({ active: true }, '"v3"');
    expect(same.status).toBe(200);
    expect(same.headers.get("etag")).toBe('"v3"');
    // El secreto de firma sigue siendo el mismo.
    const [stored] = await db()
      .select()
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.id, row.id));
    expect(stored?.secretEncrypted).toBe(SEALED);

    const audit = await db().select().from(auditLog).where(eq(auditLog.entityId, row.id));
    expect(audit.map((a) => [a.action, a.entityType, a.actor])).toEqual([
      ["webhook.updated", "webhook_endpoint", "tester-platform_admin"],
      ["webhook.updated", "webhook_endpoint", "tester-platform_admin"],
    ]);
    expect(audit[0]).toMatchObject({ before: { active: true }, after: { active: false } });
    // La auditoría (que lee support) guarda el origen y qué cambió, no la URL.
    expect(audit[1]?.after).toMatchObject({
      url: "https://vet.example/…",
      changed: ["url", "active"],
    });
    expect(JSON.stringify(audit)).not.toContain("/hooks/");
    const events = (await db().select().from(outboxEvents)).filter(
      (e) => e.type === "webhook.updated",
    );
    expect(events.map((e) => (e.payload as { data: unknown }).data)).toContainEqual({
      webhookId: row.id,
      changed: ["url", "active"],
    });
    await expectSecretNowhere([got.body, paused.body, moved.body, again.body]);
  });

  it("shows the overlap of a secret rotation on GET, with a new ETag when it starts and when it is forgotten", async () => {
    const row = await insertEndpoint();
    // Un secreto sellado de verdad: el solape lo vuelve a sellar como «anterior».
    await db()
      .update(webhookEndpoints)
      .set({ secretEncrypted: await box.encrypt("whsec_old", secretContext.webhookSecret(row.id)) })
      .where(eq(webhookEndpoints.id, row.id));
    const path = `/api/webhooks/${row.id}`;
    const before = await h.request("GET", path, { token: support });
    expect(before.headers.get("etag")).toBe('"v1"');
    expect(webhookSchema.strict().parse(before.body).previousSecretExpiresAt).toBeNull();

    const rotated = await h.request("POST", `${path}/rotate-secret`, {
      token: admin,
      json: { overlapSeconds: 3600 },
      headers: { "idempotency-key": `overlap-${row.id}` },
    });
    expect(rotated.status).toBe(200);
    const until = (rotated.body as { previousSecretExpiresAt: string }).previousSecretExpiresAt;
    expect(Date.parse(until) - Date.now()).toBeGreaterThan(3_500_000);
    const during = await h.request("GET", path, { token: support });
    expect(during.headers.get("etag")).toBe('"v2"');
    expect(rotated.headers.get("etag")).toBe('"v2"');
    expect(webhookSchema.strict().parse(during.body).previousSecretExpiresAt).toBe(until);
    // Quien guardó la versión anterior no recibe un 304 con el dato viejo.
    const revalidated = await h.request("GET", path, {
      token: support,
      headers: { "if-none-match": '"v1"' },
    });
    expect(revalidated.status).toBe(200);

    // El mantenimiento olvida el secreto anterior cuando vence: también cambia lo que se muestra.
    await db()
      .update(webhookEndpoints)
      .set({ previousSecretExpiresAt: new Date(Date.now() - 1000) })
      .where(eq(webhookEndpoints.id, row.id));
    await runMaintenanceOnce({ db: db(), logger: silentLogger, retentionDays: 30 }, new Date());
    const after = await h.request("GET", path, { token: support });
    expect(webhookSchema.strict().parse(after.body).previousSecretExpiresAt).toBeNull();
    expect(after.headers.get("etag")).toBe('"v4"');
    await expectSecretNowhere([before.body, during.body, after.body]);
  });

  it("answers 404 naming the field for an unknown product or instance, as the other creates do", async () => {
    const unknown = newId();
    for (const [field, message] of [
      ["productId", "Unknown product"],
      ["tenantInstanceId", "Unknown tenant instance"],
    ] as const) {
      const res = await h.request("POST", "/api/webhooks", {
        token: admin,
        json: { [field]: unknown, url: "https://vet.example/hooks/unknown" },
      });
      expectProblem(res, 404, "not_found");
      expect((res.body as Problem).errors).toEqual([{ path: `body.${field}`, message }]);
      // Ni el nombre de la restricción ni nada del esquema sale al cliente.
      expect(JSON.stringify(res.body)).not.toMatch(/fkey|constraint|webhook_endpoints/i);
    }
    const stored = await db()
      .select()
      .from(webhookEndpoints)
      .where(
        or(eq(webhookEndpoints.productId, unknown), eq(webhookEndpoints.tenantInstanceId, unknown)),
      );
    expect(stored).toEqual([]);
  });

  it("validates a PATCH like the POST: no credentials in the URL, http(s) only, something to change", async () => {
    const row = await insertEndpoint();
    const path = `/api/webhooks/${row.id}`;
    for (const [json, field] of [
      [{ url: "https://hookuser:S3cret@vet.example/hooks" }, "body.url"],
      [{ url: "https://:S3cret@vet.example/hooks" }, "body.url"],
      [{ url: "ftp://vet.example/hooks" }, "body.url"],
      [{ url: "not a url" }, "body.url"],
      [{ url: `https://vet.example/${"a".repeat(2048)}` }, "body.url"],
      [{ active: "yes" }, "body.active"],
      [{ secret: "whsec_mine" }, "body"],
      [{ productId: newId() }, "body"],
      [{}, "body"],
    ] as const) {
      const res = await h.request("PATCH", path, { token: admin, json });
      expectProblem(res, 400, "validation_failed");
      expect((res.body as Problem).errors?.map((e) => e.path)).toContain(field);
    }
    const unchanged = await h.request("GET", path, { token: admin });
    expect(unchanged.headers.get("etag")).toBe('"v1"');
    expect(unchanged.body).toMatchObject({ url: row.url, active: true });
    expect(await db().select().from(auditLog).where(eq(auditLog.entityId, row.id))).toEqual([]);
  });

  it("deletes only with a current If-Match (412 keeps the endpoint) and 404s afterwards", async () => {
    const row = await insertEndpoint();
    const path = `/api/webhooks/${row.id}`;
    await h.request("PATCH", path, { token: admin, json: { url: "https://vet.example/new" } });
    const remove = (ifMatch: string) =>
      h.request("DELETE", path, { token: admin, headers: { "if-match": ifMatch } });
    expectProblem(await remove('"v1"'), 412, "precondition_failed");
    expectProblem(await remove('"v999"'), 412, "precondition_failed");
    expectProblem(await remove("garbage"), 400, "validation_failed");
    expect((await h.request("GET", path, { token: admin })).status).toBe(200);
    expect((await remove('"v2"')).status).toBe(204);
    for (const method of ["GET", "DELETE"]) {
      expectProblem(await h.request(method, path, { token: admin }), 404, "not_found");
    }
    expectProblem(
      await h.request("PATCH", path, { token: admin, json: { active: false } }),
      404,
      "not_found",
    );
    const audit = await db().select().from(auditLog).where(eq(auditLog.entityId, row.id));
    expect(audit.map((a) => a.action)).toEqual(["webhook.updated", "webhook.deleted"]);
    expect(audit[1]?.before).toMatchObject({ url: "https://vet.example/…" });
    await expectSecretNowhere([]);
  });

  it("answers 400 for a malformed id and keeps the roles of the other webhook routes", async () => {
    const row = await insertEndpoint();
    const path = `/api/webhooks/${row.id}`;
    expectProblem(await h.request("GET", "/api/webhooks/nope", { token: admin }), 400);
    expectProblem(await h.request("GET", path), 401, "unauthorized");
    const catalog = await h.token(["catalog_manager"]);
    expectProblem(await h.request("GET", path, { token: catalog }), 403, "forbidden");
    for (const token of [support, catalog]) {
      expectProblem(
        await h.request("PATCH", path, { token, json: { active: false } }),
        403,
        "forbidden",
      );
      expectProblem(await h.request("DELETE", path, { token }), 403, "forbidden");
    }
    const still = await h.request("GET", path, { token: support });
    expect(still.headers.get("etag")).toBe('"v1"');
    expect(still.body).toMatchObject({ active: true });
  });
});
