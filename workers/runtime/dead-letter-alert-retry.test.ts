import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { streams, subjects } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createDeadLetterStore } from "../../db/dead-letters";
import { createProcessedStore } from "../../db/processed";
import { dlqEntries } from "../../db/schema";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { type RunningWorker, startWorker } from "./consumer";
import { PermanentError } from "./errors";
import { createWorkerMetrics } from "./metrics";

// El aviso a operaciones es el último paso de la DLQ. Si su publicación falla (NATS lento un
// momento), el mensaje queda sin ack y su reentrega completa la DLQ sin ejecutar el handler otra
// vez: antes ya estaba marcado como procesado y la reentrega se confirmaba sin aviso ni métrica.
describe("dead letter whose operator alert fails for a moment", () => {
  let nats: TestNats;
  let bus: Bus;
  let db: TestDatabase;
  let worker: RunningWorker;
  let alertFailures = 0;
  let handled = 0;
  const metrics = createWorkerMetrics();

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("dead-letter-alert-retry"));
    db = await createPgliteTestDatabase();
    // El bus real, salvo las tres primeras publicaciones del aviso.
    const flaky = new Proxy(bus, {
      get(target, prop, receiver) {
        if (prop === "publishEvent") {
          return async (subject: string, event: unknown) => {
            if (subject === subjects.deadLetteredNotification && alertFailures < 3) {
              alertFailures++;
              throw new Error("nats: timeout (simulated)");
            }
            return target.publishEvent(subject, event as never);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    worker = await startWorker(
      {
        name: "alert-retry-worker",
        domain: "billing",
        filterSubject: "billing.tasks.>",
        schema: z.object({ n: z.number() }),
        // Solo la primera vez: si la reentrega volviera a ejecutarlo, acabaría "procesado" con su
        // entrada de DLQ ya guardada y sin aviso.
        async handle() {
          handled++;
          if (handled === 1) throw new PermanentError("rejected");
        },
      },
      {
        bus: flaky,
        logger: silentLogger,
        metrics,
        processed: createProcessedStore(db.handle.db),
        deadLetters: createDeadLetterStore(db.handle.db),
        concurrency: 1,
        ackWaitMs: 2_000,
      },
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it("alerts operators and counts it once the broker takes the alert", async () => {
    const event = {
      id: newId(),
      type: "billing.cycle",
      occurredAt: new Date().toISOString(),
      correlationId: "alert-retry",
      data: { n: 1 },
    };
    await bus.js.publish("billing.tasks.cycle", JSON.stringify(event));
    const jsm = await bus.jsm();
    const alerts = await waitFor(
      async () => {
        const info = await jsm.streams.info(streams.notifications.name);
        return info.state.messages > 0 ? info.state.messages : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(alertFailures).toBe(3);
    expect(alerts).toBe(1);
    expect(handled).toBe(1);
    expect(await db.handle.db.select().from(dlqEntries)).toHaveLength(1);
    const dead = await metrics.deadLettered.get();
    expect(dead.values.find((v) => v.labels.worker === "alert-retry-worker")?.value).toBe(1);
  }, 30_000);
});
