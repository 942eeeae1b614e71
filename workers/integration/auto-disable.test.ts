import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { and, count, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSecretBox, secretContext } from "../../core/secret-box";
import { auditLog, dlqEntries, tenantInstances, webhookEndpoints } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { call } from "../../test/support/http";
import { startTestStack, type TestStack, waitFor } from "../../test/support/stack";

// Un endpoint roto de un producto recibe los eventos de todas sus instancias: sin tope, cada
// cambio del catálogo dejaba una entrada de DLQ y un correo a operaciones por instancia, siempre.
// Tras WEBHOOK_DISABLE_AFTER_FAILURES eventos seguidos en la DLQ se desactiva (auditado); una
// entrega buena reinicia la racha, y reactivarlo por la API también.
describe("integration worker: an endpoint that keeps failing is disabled", () => {
  let stack: TestStack;
  let receiver: Server;
  let baseUrl: string;
  let status = 410;
  let hits = 0;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        hits++;
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    stack = await startTestStack({
      database: "postgres",
      env: { WEBHOOK_DISABLE_AFTER_FAILURES: "3" },
    });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise<void>((r) => receiver?.close(() => r()));
  });

  const db = () => stack.db.handle.db;
  const deadLetters = async () => {
    const [row] = await db()
      .select({ n: count() })
      .from(dlqEntries)
      .where(eq(dlqEntries.domain, "integration"));
    return row?.n ?? 0;
  };
  const failuresOf = async (id: string) => {
    const [row] = await db()
      .select({
        active: webhookEndpoints.active,
        failures: webhookEndpoints.consecutiveFailures,
      })
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.id, id));
    return row;
  };

  it("disables it after three events in a row reach the DLQ, and PATCH active=true starts over", async () => {
    const [instance] = await db()
      .select({ id: tenantInstances.id, productId: tenantInstances.productId })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!instance) throw new Error("demo instance missing");
    const box = await createSecretBox(stack.env.ENCRYPTION_KEYS ?? "");
    const endpointId = randomUUID();
    await db()
      .insert(webhookEndpoints)
      .values({
        id: endpointId,
        productId: instance.productId,
        url: `${baseUrl}/hooks`,
        secretEncrypted: await box.encrypt(
          `whsec_${randomUUID()}`,
          secretContext.webhookSecret(endpointId),
        ),
        encryptionKeyId: box.activeKeyId,
      });
    const token = await stack.adminToken();
    let suspended = false;
    // Un evento por cambio de estado de la instancia; espera a que el worker lo termine.
    const change = async (until: () => Promise<boolean>) => {
      const transition = suspended ? "reactivate" : "suspend";
      const res = await call(
        `${stack.adminUrl}/api/tenant-instances/${instance.id}/${transition}`,
        { token, json: {} },
      );
      expect(res.status).toBe(200);
      suspended = !suspended;
      await waitFor(async () => ((await until()) ? true : undefined), { timeoutMs: 20_000 });
    };
    const deadLettered = (n: number) => async () => (await deadLetters()) >= n;

    // Dos fallos, una entrega buena (la racha vuelve a 0) y tres fallos más: desactivado.
    await change(deadLettered(1));
    await change(deadLettered(2));
    expect(await failuresOf(endpointId)).toEqual({ active: true, failures: 2 });
    status = 204;
    const before = hits;
    await change(async () => hits > before && (await failuresOf(endpointId))?.failures === 0);
    status = 410;
    await change(deadLettered(3));
    await change(deadLettered(4));
    await change(deadLettered(5));
    expect(await failuresOf(endpointId)).toEqual({ active: false, failures: 3 });
    const [audit] = await db()
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.entityId, endpointId), eq(auditLog.action, "webhook.disabled")));
    expect(audit).toMatchObject({
      actor: "system:integration-worker",
      after: { active: false, consecutiveFailures: 3 },
    });

    // Desactivado: el siguiente cambio ya no lo intenta ni deja otra entrada en la DLQ.
    const hitsWhenDisabled = hits;
    await change(async () => {
      const [pending] = await db()
        .select({ n: count() })
        .from(sql`outbox_events`)
        .where(sql`published_at is null`);
      return (pending?.n ?? 1) === 0;
    });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(hits).toBe(hitsWhenDisabled);
    expect(await deadLetters()).toBe(5);

    const reactivated = await call(`${stack.adminUrl}/api/webhooks/${endpointId}`, {
      method: "PATCH",
      token,
      json: { active: true },
    });
    expect(reactivated.status).toBe(200);
    expect(await failuresOf(endpointId)).toEqual({ active: true, failures: 0 });
  }, 120_000);
});
