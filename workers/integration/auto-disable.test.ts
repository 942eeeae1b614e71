import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { and, count, eq, isNull, like, ne, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams } from "../../contracts/streams";
import { createSecretBox, generateEncryptionKey, secretContext } from "../../core/secret-box";
import {
  auditLog,
  dlqEntries,
  outboxEvents,
  tenantInstances,
  webhookEndpoints,
} from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { call } from "../../test/support/http";
import { startTestStack, type TestStack, waitFor } from "../../test/support/stack";
import { INTEGRATION_WORKER } from "./worker";

// Un endpoint roto de un producto recibe los eventos de todas sus instancias: sin tope, cada
// cambio del catálogo dejaba una entrada de DLQ y un correo a operaciones por instancia, siempre.
// Tras WEBHOOK_DISABLE_AFTER_FAILURES eventos seguidos sin entregar se desactiva (auditado); cada
// evento cuenta una vez (también si se reprocesa), una entrega buena reinicia la racha, y
// reactivarlo por la API también.
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
        failures: sql<number>`(select count(*)::int from webhook_failures f where f.endpoint_id = ${webhookEndpoints.id})`,
      })
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.id, id));
    return row;
  };
  /** Hasta que el endpoint tenga ese estado (el worker lo escribe después de la entrada de DLQ). */
  const untilState = (id: string, state: { active: boolean; failures: number }) => async () => {
    const row = await failuresOf(id);
    return row?.active === state.active && row.failures === state.failures;
  };

  /** El outbox publicado y el consumer del worker sin nada pendiente ni sin ack. */
  const settled = async () => {
    const [unpublished] = await db()
      .select({ n: count() })
      .from(outboxEvents)
      .where(and(like(outboxEvents.subject, "integration.%"), isNull(outboxEvents.publishedAt)));
    if ((unpublished?.n ?? 1) > 0) return false;
    const bus = stack.workers?.bus;
    if (!bus) throw new Error("the stack runs its workers");
    const info = await (await bus.jsm()).consumers.info(
      streams.integration.name,
      INTEGRATION_WORKER,
    );
    return info.num_pending === 0 && info.num_ack_pending === 0;
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

    // Un fallo; el replay del mismo evento vuelve a fallar (otra entrada de DLQ) pero no suma.
    await change(untilState(endpointId, { active: true, failures: 1 }));
    const [first] = await db()
      .select({ id: dlqEntries.id })
      .from(dlqEntries)
      .where(eq(dlqEntries.domain, "integration"));
    await waitFor(async () => ((await deadLetters()) === 1 ? true : undefined));
    const replay = await call(`${stack.adminUrl}/api/dlq/${first?.id}/replay`, {
      token,
      json: {},
    });
    expect(replay.status).toBe(202);
    await waitFor(async () => ((await deadLetters()) === 2 ? true : undefined), {
      timeoutMs: 20_000,
    });
    expect(await failuresOf(endpointId)).toEqual({ active: true, failures: 1 });

    // Otro fallo, una entrega buena (la racha vuelve a 0) y tres fallos más: desactivado.
    await change(untilState(endpointId, { active: true, failures: 2 }));
    status = 204;
    await change(untilState(endpointId, { active: true, failures: 0 }));
    status = 410;
    await change(untilState(endpointId, { active: true, failures: 1 }));
    await change(untilState(endpointId, { active: true, failures: 2 }));
    await change(untilState(endpointId, { active: false, failures: 3 }));
    const [audit] = await db()
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.entityId, endpointId), eq(auditLog.action, "webhook.disabled")));
    expect(audit).toMatchObject({
      actor: "system:integration-worker",
      after: { active: false, failedEvents: 3 },
    });

    // Desactivado: el siguiente cambio ya no lo intenta ni deja otra entrada en la DLQ.
    await waitFor(async () => ((await deadLetters()) === 6 ? true : undefined));
    const hitsWhenDisabled = hits;
    await change(settled);
    expect(hits).toBe(hitsWhenDisabled);
    expect(await deadLetters()).toBe(6);

    const reactivated = await call(`${stack.adminUrl}/api/webhooks/${endpointId}`, {
      method: "PATCH",
      token,
      json: { active: true },
    });
    expect(reactivated.status).toBe(200);
    expect(await failuresOf(endpointId)).toEqual({ active: true, failures: 0 });
  }, 120_000);

  // Rotación de ENCRYPTION_KEYS a medio desplegar: la API ya sella con la clave nueva y este worker
  // aún no la tiene. Es un fallo de la plataforma, no del receptor: se reintenta y va a la DLQ (se
  // repite al arreglar las claves), sin enviar nada y sin contar para desactivar el endpoint.
  it("does not blame the receiver when this worker lacks the key its secret was sealed with", async () => {
    const [vet] = await db()
      .select({ productId: tenantInstances.productId })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    const [instance] = await db()
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(
        and(
          eq(tenantInstances.status, "active"),
          ne(tenantInstances.productId, vet?.productId ?? ""),
        ),
      );
    if (!instance) throw new Error("demo needs an active instance of another product");
    const known = JSON.parse(stack.env.ENCRYPTION_KEYS ?? "[]") as unknown[];
    const rotated = await createSecretBox(
      JSON.stringify([generateEncryptionKey("rotated-in"), ...known]),
    );
    const endpointId = randomUUID();
    await db()
      .insert(webhookEndpoints)
      .values({
        id: endpointId,
        tenantInstanceId: instance.id,
        url: `${baseUrl}/rotating`,
        secretEncrypted: await rotated.encrypt(
          `whsec_${randomUUID()}`,
          secretContext.webhookSecret(endpointId),
        ),
        encryptionKeyId: rotated.activeKeyId,
      });
    const before = await deadLetters();
    const hitsBefore = hits;
    const token = await stack.adminToken();
    const res = await call(`${stack.adminUrl}/api/tenant-instances/${instance.id}/suspend`, {
      token,
      json: {},
    });
    expect(res.status).toBe(200);
    await waitFor(async () => ((await deadLetters()) > before ? true : undefined), {
      timeoutMs: 30_000,
    });
    const [entry] = await db()
      .select({ error: dlqEntries.error, deliveries: dlqEntries.deliveries })
      .from(dlqEntries)
      .where(and(eq(dlqEntries.domain, "integration"), like(dlqEntries.error, `%${endpointId}%`)));
    expect(entry?.error).toContain("no key with id rotated-in");
    expect(entry?.deliveries).toBe(5);
    expect(hits).toBe(hitsBefore);
    expect(await failuresOf(endpointId)).toEqual({ active: true, failures: 0 });
  }, 60_000);
});
