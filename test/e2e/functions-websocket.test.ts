import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams } from "../../contracts/streams";
import { generateSigningKey } from "../../core/auth/keys";
import { createTokenSigner } from "../../core/auth/tokens";
import { silentLogger } from "../../core/logger";
import { outboxEvents, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createAdminApp } from "../../functions/app";
import { type AdminRuntime, createAdminRuntime } from "../../functions/runtime";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { startNatsForTest, type TestNats } from "../support/stack";

// Las funciones admin publican por el transporte WebSocket de NATS (como en Lambda),
// en un proceso sin conexiones TCP: aquí no corren workers.
describe("admin functions over the NATS WebSocket transport", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let runtime: AdminRuntime;
  let token: string;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    nats = await startNatsForTest();
    const key = await generateSigningKey("ws-test");
    const settings = {
      issuer: "http://edge.test",
      audience: "farutech-orchestrator",
      accessTokenTtlSeconds: 60,
    };
    runtime = await createAdminRuntime(
      {
        NATS_WS_URL: nats.wsUrl,
        AUTH_SIGNING_KEYS: JSON.stringify([key]),
        AUTH_ISSUER: settings.issuer,
        AUTH_AUDIENCE: settings.audience,
      },
      { db: db.handle, logger: silentLogger },
    );
    const signer = await createTokenSigner([key], settings);
    token = (
      await signer.sign({
        sub: "ws-admin",
        tenant_id: null,
        instance_ids: [],
        roles: ["platform_admin"],
      })
    ).token;
  });

  afterAll(async () => {
    await runtime?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it("writes the outbox event and publishes it to JetStream with Nats-Msg-Id = event id", async () => {
    const app = createAdminApp(runtime.deps);
    const [instance] = await db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!instance) throw new Error("demo data missing");
    const plans = await app.request("/api/plans?limit=100", {
      headers: { authorization: `Bearer ${token}` },
    });
    const plan = ((await plans.json()) as { items: { id: string; code: string }[] }).items.find(
      (p) => p.code === "VET_STARTER",
    );
    const res = await app.request("/api/provisioning/provision", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        customerId: instance.customerId,
        productId: instance.productId,
        planId: plan?.id,
        instanceCode: "via-websocket",
        databaseTier: "standard",
      }),
    });
    expect(res.status).toBe(202);
    const { taskId } = (await res.json()) as { taskId: string };

    const [event] = await db.handle.db.select().from(outboxEvents);
    if (!event) throw new Error("no outbox event written");
    expect(event.publishedAt).toBeInstanceOf(Date);
    expect((event.payload as { data: { taskId: string } }).data.taskId).toBe(taskId);

    const bus = await runtime.bus.get();
    if (!bus) throw new Error("bus not connected");
    const jsm = await bus.jsm();
    const msg = await jsm.streams.getMessage(streams.provisioning.name, {
      last_by_subj: "provisioning.tasks.provision",
    });
    expect(msg?.header.get("Nats-Msg-Id")).toBe(event.id);
    expect(msg?.json<{ data: { taskId: string } }>().data.taskId).toBe(taskId);

    const ready = await app.request("/readyz");
    expect(await ready.json()).toEqual({
      status: "ready",
      checks: { database: "ok", broker: "ok" },
    });
  });
});
