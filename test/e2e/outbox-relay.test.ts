import { eq, isNull } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { outboxEvents, provisioningTasks } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { demoProvisionBody } from "../support/demo";
import { call } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

// Lo confirmado al llamador no se pierde: con el broker caído el evento queda en el outbox.
describe("outbox relay", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("publishes what the function could not while NATS was down", { timeout: 60_000 }, async () => {
    const token = await stack.adminToken();
    const body = await demoProvisionBody(stack.db.handle.db, "while-broker-down");
    // Una función ya conectada (instancia caliente) cuyo broker se cae: el caso en que una
    // publicación podría quedarse esperando su timeout (3 s, core/bus.ts).
    const bus = await stack.admin.bus.get();
    if (!bus) throw new Error("the admin function could not connect to NATS");
    const publishes: { ms: number; outcome: "published" | "rejected" }[] = [];
    const publishEvent = bus.publishEvent.bind(bus);
    bus.publishEvent = async (subject, event) => {
      const started = performance.now();
      try {
        const ack = await publishEvent(subject, event);
        publishes.push({ ms: performance.now() - started, outcome: "published" });
        return ack;
      } catch (err) {
        publishes.push({ ms: performance.now() - started, outcome: "rejected" });
        throw err;
      }
    };
    await stack.nats.stop();
    await waitFor(async () => (bus.isConnected() ? undefined : true));
    const res = await call<{ taskId: string }>(`${stack.adminUrl}/api/provisioning/provision`, {
      token,
      json: body,
    });
    expect(res.status).toBe(202);
    // La función intentó publicar y el bus lo rechazó en el acto, sin esperar el timeout de
    // publicación: se mide solo la publicación (no la petición con sus escrituras), así que la
    // cota (1 s) queda lejos de lo normal (~0 ms) y del timeout (3 s) que descarta.
    expect(publishes.map((p) => p.outcome)).toEqual(["rejected"]);
    expect(publishes[0]?.ms).toBeLessThan(1_000);
    const pending = await stack.db.handle.db
      .select()
      .from(outboxEvents)
      .where(isNull(outboxEvents.publishedAt));
    expect(pending.map((e) => (e.payload as { data: { taskId: string } }).data.taskId)).toContain(
      res.body.taskId,
    );

    await stack.nats.restart();
    const done = await waitFor(
      async () => {
        const [t] = await stack.db.handle.db
          .select({ status: provisioningTasks.status })
          .from(provisioningTasks)
          .where(eq(provisioningTasks.id, res.body.taskId));
        return t?.status === "succeeded" ? t : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(done.status).toBe("succeeded");
    // El worker escribe eventos nuevos al terminar (entitlements, bienvenida): el relay los
    // publica poco después, así que se espera a que el outbox quede vacío en vez de mirarlo una vez.
    const drained = await waitFor(
      async () => {
        const rows = await stack.db.handle.db
          .select({ id: outboxEvents.id })
          .from(outboxEvents)
          .where(isNull(outboxEvents.publishedAt));
        return rows.length === 0 ? rows : undefined;
      },
      { timeoutMs: 15_000 },
    );
    expect(drained).toEqual([]);
  });
});
