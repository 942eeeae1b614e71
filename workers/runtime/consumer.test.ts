import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { headers, streams } from "../../contracts/streams";
import { type Bus, connectBus, ensureStreams } from "../../core/bus";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createProcessedStore } from "../../db/processed";
import type { LocalNats } from "../../infra/nats/local-server";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { startNatsForTest, waitFor } from "../../test/support/stack";
import { type RunningWorker, startWorker } from "./consumer";

// El runtime de consumo contra un nats-server real: idempotencia y errores permanentes.
describe("worker runtime", () => {
  let nats: LocalNats & { dir: string };
  let bus: Bus;
  let db: TestDatabase;
  let worker: RunningWorker;
  const handled: string[] = [];

  beforeAll(async () => {
    nats = await startNatsForTest();
    bus = await connectBus({ servers: nats.url, name: "runtime-test" });
    await ensureStreams(bus);
    db = await createPgliteTestDatabase();
    worker = await startWorker(
      {
        name: "runtime-test-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.>",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          handled.push(`${ctx.envelope.correlationId}:${ctx.data.n}`);
        },
      },
      { bus, logger: silentLogger, processed: createProcessedStore(db.handle.db), concurrency: 2 },
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await bus?.close();
    await nats?.stop();
    if (nats) rmSync(nats.dir, { recursive: true, force: true });
    await db?.drop();
  });

  const envelope = (correlationId: string, data: Record<string, unknown>) => ({
    id: newId(),
    type: "test.event",
    occurredAt: new Date().toISOString(),
    correlationId,
    data,
  });

  it("processes an event once even when it is delivered twice", async () => {
    const event = envelope("corr-a", { n: 1 });
    // Dos publicaciones del mismo evento con Nats-Msg-Id distintos: llegan ambas al consumer.
    await bus.js.publish("notifications.tasks.test", JSON.stringify(event), { msgID: "copy-1" });
    await bus.js.publish("notifications.tasks.test", JSON.stringify(event), { msgID: "copy-2" });
    // Mismo correlation id pero otro evento: se procesa.
    await bus.publishEvent("notifications.tasks.test", envelope("corr-a", { n: 2 }));
    await waitFor(async () => (handled.includes("corr-a:2") ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    expect(handled.filter((h) => h === "corr-a:1")).toHaveLength(1);
  });

  it("sends a payload that fails its schema straight to the DLQ, without retries", async () => {
    await bus.publishEvent("notifications.tasks.test", envelope("corr-bad", { n: "not a number" }));
    const jsm = await bus.jsm();
    const info = await waitFor(async () => {
      const i = await jsm.streams.info(streams.notifications.name, {
        subjects_filter: "notifications.dlq",
      });
      return i.state.subjects?.["notifications.dlq"] ? i : undefined;
    });
    expect(info.state.subjects).toEqual({ "notifications.dlq": 1 });
    const dlq = await jsm.streams.getMessage(streams.notifications.name, {
      last_by_subj: "notifications.dlq",
    });
    expect(dlq?.header.get(headers.deliveries)).toBe("1");
    expect(dlq?.header.get(headers.errorKind)).toBe("permanent");
    expect(dlq?.header.get(headers.correlationId)).toBe("corr-bad");
    expect(handled.some((h) => h.startsWith("corr-bad"))).toBe(false);
  });
});
