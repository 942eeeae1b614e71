import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { and, eq, ne } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SIGNATURE_HEADER, verifyWebhook } from "../../core/webhook-signature";
import { auditLog, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { call, expectProblem } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

interface Received {
  path: string;
  body: string;
  signature: string;
  eventId: string;
}

// IntegrationWorker: entitlements.changed llega firmado (HMAC-SHA256) y con reintentos.
describe("signed webhooks", () => {
  let stack: TestStack;
  let receiver: Server;
  let url: string;
  const received: Received[] = [];
  let failuresLeft = 1;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
      });
      req.on("end", () => {
        if (failuresLeft > 0) {
          failuresLeft--;
          res.writeHead(503).end();
          return;
        }
        received.push({
          path: req.url ?? "",
          body,
          signature: String(req.headers[SIGNATURE_HEADER.toLowerCase()] ?? ""),
          eventId: String(req.headers["farutech-event-id"] ?? ""),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise<void>((r) => receiver?.close(() => r()));
  });

  it("delivers entitlements.changed for the instance, signed, after a transient failure", async () => {
    const token = await stack.adminToken();
    const [instance] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!instance) throw new Error("demo data missing");
    const created = await call<{ id: string; secret: string }>(`${stack.adminUrl}/api/webhooks`, {
      token,
      json: { tenantInstanceId: instance.id, url },
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_/);
    const listed = await call<{ items: Record<string, unknown>[] }>(
      `${stack.adminUrl}/api/webhooks`,
      { token },
    );
    expect(JSON.stringify(listed.body)).not.toContain(created.body.secret);

    const suspended = await call(`${stack.adminUrl}/api/tenant-instances/${instance.id}/suspend`, {
      token,
      json: {},
    });
    expect(suspended.status).toBe(200);
    const delivery = await waitFor(async () => received[0], { timeoutMs: 15_000 });
    expect(failuresLeft).toBe(0);
    const payload = JSON.parse(delivery.body) as {
      id: string;
      type: string;
      data: { tenantInstanceId: string };
    };
    expect(payload.type).toBe("entitlements.changed");
    expect(payload.data.tenantInstanceId).toBe(instance.id);
    expect(delivery.eventId).toBe(payload.id);
    const now = Math.floor(Date.now() / 1000);
    expect(await verifyWebhook(created.body.secret, delivery.body, delivery.signature, now)).toBe(
      true,
    );
    expect(await verifyWebhook("whsec_wrong", delivery.body, delivery.signature, now)).toBe(false);
    expect(
      await verifyWebhook(created.body.secret, `${delivery.body} `, delivery.signature, now),
    ).toBe(false);

    expectProblem(
      await call(`${stack.adminUrl}/api/webhooks`, { token, json: { url } }),
      400,
      "validation_failed",
    );
    // fetch no envía una URL con credenciales: se rechaza al registrarla, no en cada entrega.
    const withCredentials = url.replace("://", "://hookuser:S3cret@");
    const rejected = await call<{ errors?: { path: string }[] }>(`${stack.adminUrl}/api/webhooks`, {
      token,
      json: { tenantInstanceId: instance.id, url: withCredentials },
    });
    expectProblem(rejected, 400, "validation_failed");
    expect(JSON.stringify(rejected.body)).toContain("body.url");
  }, 40_000);

  it("reads the endpoint at the Location of its POST, changes it with If-Match, never shows the secret", async () => {
    const token = await stack.adminToken();
    const [instance] = await stack.db.handle.db.select().from(tenantInstances).limit(1);
    if (!instance) throw new Error("demo data missing");
    const created = await call<{ id: string; secret: string }>(`${stack.adminUrl}/api/webhooks`, {
      token,
      json: { tenantInstanceId: instance.id, url: `${url}?located=1` },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("etag")).toBe('"v1"');
    const location = `${stack.adminUrl}${created.headers.get("location")}`;
    const got = await call(location, { token });
    expect(got.status).toBe(200);
    expect(got.headers.get("etag")).toBe('"v1"');
    const { secret, ...shown } = created.body;
    expect(got.body).toEqual(shown);

    const patched = await call(location, {
      method: "PATCH",
      token,
      json: { active: false },
      headers: { "if-match": '"v1"' },
    });
    expect(patched.status).toBe(200);
    expect(patched.headers.get("etag")).toBe('"v2"');
    expect(patched.body).toMatchObject({ id: created.body.id, active: false });
    const remove = (ifMatch: string) =>
      call(location, { method: "DELETE", token, headers: { "if-match": ifMatch } });
    expectProblem(await remove('"v1"'), 412, "precondition_failed");
    expect((await call(location, { token })).status).toBe(200);
    for (const body of [got.body, patched.body]) expect(JSON.stringify(body)).not.toContain(secret);
    expect((await remove('"v2"')).status).toBe(204);
    expectProblem(await call(location, { token }), 404, "not_found");
  });

  it("lists webhook endpoints a page at a time and by instance", async () => {
    const token = await stack.adminToken();
    const instances = await stack.db.handle.db.select().from(tenantInstances).limit(2);
    const [a, b] = instances;
    if (!a || !b) throw new Error("demo data missing");
    const mine: string[] = [];
    for (const target of [a, a, a, b]) {
      const res = await call<{ id: string }>(`${stack.adminUrl}/api/webhooks`, {
        token,
        json: { tenantInstanceId: target.id, url: `${url}?n=${mine.length}` },
      });
      expect(res.status).toBe(201);
      if (target === a) mine.push(res.body.id);
    }
    type Page = {
      items: { id: string; tenantInstanceId: string | null }[];
      nextCursor: string | null;
    };
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `tenantInstanceId=${a.id}&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const page: { status: number; body: Page } = await call<Page>(
        `${stack.adminUrl}/api/webhooks?${query}`,
        { token },
      );
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      // El filtro por instancia no deja pasar el endpoint de la otra instancia.
      expect(page.body.items.map((i) => i.tenantInstanceId)).toEqual(
        page.body.items.map(() => a.id),
      );
      seen.push(...page.body.items.map((i) => i.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen.filter((id) => mine.includes(id)).sort()).toEqual([...mine].sort());
    expect(new Set(seen).size).toBe(seen.length);
    expectProblem(
      await call(`${stack.adminUrl}/api/webhooks?limit=1000`, { token }),
      400,
      "validation_failed",
    );
  });

  // Tras una filtración (o por higiene) el receptor necesita un secreto nuevo sin perder eventos:
  // durante el solape cada entrega lleva una firma por secreto y vale cualquiera de los dos.
  it("rotates the signing secret: both secrets verify during the overlap, only the new one without it", async () => {
    const token = await stack.adminToken();
    const [instance] = await stack.db.handle.db
      .select()
      .from(tenantInstances)
      .where(
        and(eq(tenantInstances.status, "active"), ne(tenantInstances.instanceCode, "vet-norte")),
      )
      .limit(1);
    if (!instance) throw new Error("demo data missing");
    const path = "/hooks?rotation=1";
    const created = await call<{ id: string; secret: string }>(`${stack.adminUrl}/api/webhooks`, {
      token,
      json: { tenantInstanceId: instance.id, url: `${url}?rotation=1` },
    });
    expect(created.status).toBe(201);
    const rotateUrl = `${stack.adminUrl}/api/webhooks/${created.body.id}/rotate-secret`;
    type Rotated = { id: string; secret: string | null; previousSecretExpiresAt: string | null };
    const rotated = await call<Rotated>(rotateUrl, {
      token,
      json: { overlapSeconds: 3600 },
      headers: { "idempotency-key": `rotate-${created.body.id}` },
    });
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({
      id: created.body.id,
      secret: expect.stringMatching(/^whsec_/),
    });
    expect(rotated.body.secret).not.toBe(created.body.secret);
    const until = Date.parse(rotated.body.previousSecretExpiresAt ?? "");
    expect(until - Date.now()).toBeGreaterThan(3500_000);
    expect(until - Date.now()).toBeLessThanOrEqual(3600_000);
    // Repetida con la misma clave: la misma rotación, sin volver a mostrar el secreto.
    const replayed = await call<Rotated>(rotateUrl, {
      token,
      json: { overlapSeconds: 3600 },
      headers: { "idempotency-key": `rotate-${created.body.id}` },
    });
    expect(replayed.status).toBe(200);
    expect(replayed.body.secret).toBeNull();

    let transitions = 0;
    const nextDelivery = async () => {
      const before = received.filter((r) => r.path === path).length;
      const action = transitions++ % 2 === 0 ? "suspend" : "reactivate";
      const res = await call(`${stack.adminUrl}/api/tenant-instances/${instance.id}/${action}`, {
        token,
        json: {},
      });
      expect(res.status).toBe(200);
      return waitFor(async () => received.filter((r) => r.path === path)[before], {
        timeoutMs: 15_000,
      });
    };
    const verifies = (secret: string | null, d: Received) =>
      verifyWebhook(secret ?? "", d.body, d.signature, Math.floor(Date.now() / 1000));

    const during = await nextDelivery();
    expect(during.signature.match(/v1=/g)).toHaveLength(2);
    expect(await verifies(rotated.body.secret, during)).toBe(true);
    expect(await verifies(created.body.secret, during)).toBe(true);
    expect(await verifies("whsec_wrong", during)).toBe(false);

    // Sin solape (secreto filtrado): el anterior deja de firmar ya.
    const key = (name: string) => ({ "idempotency-key": `${name}-${created.body.id}` });
    const cut = await call<Rotated>(rotateUrl, {
      token,
      json: { overlapSeconds: 0 },
      headers: key("cut"),
    });
    expect(cut.status).toBe(200);
    expect(cut.body.previousSecretExpiresAt).toBeNull();
    const after = await nextDelivery();
    expect(after.signature.match(/v1=/g)).toHaveLength(1);
    expect(await verifies(cut.body.secret, after)).toBe(true);
    expect(await verifies(rotated.body.secret, after)).toBe(false);
    expect(await verifies(created.body.secret, after)).toBe(false);

    // Auditado, sin secretos.
    const audits = await stack.db.handle.db
      .select()
      .from(auditLog)
      .where(
        and(eq(auditLog.entityId, created.body.id), eq(auditLog.action, "webhook.secret_rotated")),
      );
    expect(audits).toHaveLength(2);
    expect(JSON.stringify(audits)).not.toContain("whsec_");

    expectProblem(
      await call(rotateUrl, { token, json: { overlapSeconds: 8 * 86_400 }, headers: key("max") }),
      400,
      "validation_failed",
    );
    // Sin Idempotency-Key no se rota: un reintento sin ella dejaría fuera al receptor.
    const keyless = await call(rotateUrl, { token, json: {} });
    expectProblem(keyless, 400, "validation_failed");
    expect(JSON.stringify(keyless.body)).toContain("header.Idempotency-Key");
    expect(cut.headers.get("cache-control")).toBe("no-store");
    const support = await stack.token({ kind: "admin", roles: ["support"] });
    expectProblem(
      await call(rotateUrl, { token: support, json: {}, headers: key("support") }),
      403,
      "forbidden",
    );
    expectProblem(
      await call(`${stack.adminUrl}/api/webhooks/${instance.id}/rotate-secret`, {
        token,
        json: {},
        headers: key("unknown"),
      }),
      404,
      "not_found",
    );
  }, 60_000);
});
