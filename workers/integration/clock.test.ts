import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { eq, ne } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import {
  createSecretBox,
  generateEncryptionKey,
  type SecretBox,
  secretContext,
} from "../../core/secret-box";
import { verifyWebhook } from "../../core/webhook-signature";
import { tenantInstances, webhookEndpoints } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import type { HandlerContext } from "../runtime/consumer";
import { type IntegrationEvent, integrationWorker } from "./worker";

interface Received {
  body: string;
  signature: string;
}

// Un worker cuyo host tiene la hora corrida (NTP roto) firma con la hora de la base: los
// receptores (±300 s) no rechazan cada entrega, y el secreto anterior deja de firmar cuando la
// base dice que venció, no cuando lo cree ese host.
describe("integration worker with a host clock that is off", () => {
  let db: TestDatabase;
  let box: SecretBox;
  let receiver: Server;
  let url: string;
  const received: Received[] = [];

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    box = await createSecretBox(JSON.stringify([generateEncryptionKey("clock-test")]));
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({
          body: Buffer.concat(chunks).toString(),
          signature: String(req.headers["farutech-signature"] ?? ""),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => receiver?.close(() => r()));
    await db?.drop();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function context(tenantInstanceId: string): HandlerContext<IntegrationEvent> {
    const data = { tenantInstanceId, reason: "override_changed" };
    return {
      data,
      envelope: {
        id: newId(),
        type: "entitlements.changed",
        occurredAt: new Date().toISOString(),
        correlationId: `clock-${newId()}`,
        data,
      },
      subject: "integration.entitlements.changed",
      deliveryCount: 1,
      logger: silentLogger,
      heartbeat() {},
      signal: new AbortController().signal,
    };
  }

  it("signs with the database time and stops signing with the previous secret when the database says it expired", async () => {
    const [instance] = await db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(ne(tenantInstances.status, "decommissioned"))
      .limit(1);
    if (!instance) throw new Error("demo data missing");
    const id = newId();
    await db.handle.db.insert(webhookEndpoints).values({
      id,
      tenantInstanceId: instance.id,
      url,
      secretEncrypted: await box.encrypt("whsec_current", secretContext.webhookSecret(id)),
      encryptionKeyId: box.activeKeyId,
      previousSecretEncrypted: await box.encrypt(
        "whsec_previous",
        secretContext.previousWebhookSecret(id),
      ),
      // Venció hace un minuto (hora de la base).
      previousSecretExpiresAt: new Date(Date.now() - 60_000),
    });
    const worker = integrationWorker({
      db: db.handle.db,
      secretBox: box,
      allowPrivateTargets: true,
    });
    // El host de este worker va 6 minutos atrasado.
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() - 6 * 60_000);
    await worker.handle(context(instance.id));
    vi.useRealTimers();

    const [delivery] = received;
    if (!delivery) throw new Error("nothing was delivered");
    const now = Math.floor(Date.now() / 1000);
    expect(await verifyWebhook("whsec_current", delivery.body, delivery.signature, now)).toBe(true);
    expect(delivery.signature.match(/v1=/g)).toHaveLength(1);
    expect(await verifyWebhook("whsec_previous", delivery.body, delivery.signature, now)).toBe(
      false,
    );
    const [row] = await db.handle.db
      .select({ active: webhookEndpoints.active })
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.id, id));
    expect(row?.active).toBe(true);
  });
});
