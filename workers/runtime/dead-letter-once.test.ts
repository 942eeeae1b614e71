import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { streams } from "../../contracts/streams";
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

// Un mensaje que fue a la DLQ no vuelve a ejecutarse si JetStream lo entrega otra vez (consumer
// borrado y recreado, que relee el stream): la DLQ ya lo lleva y su reproceso usa otro id de evento.
describe("a dead-lettered message delivered again", () => {
  let nats: TestNats;
  let bus: Bus;
  let db: TestDatabase;
  let worker: RunningWorker;
  const handled: string[] = [];

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("dead-letter-once"));
    db = await createPgliteTestDatabase();
    worker = await startWorker(
      {
        name: "dead-letter-once-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.>",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          handled.push(ctx.envelope.id);
          throw new PermanentError("the receiving system rejects it");
        },
      },
      {
        bus,
        logger: silentLogger,
        processed: createProcessedStore(db.handle.db),
        deadLetters: createDeadLetterStore(db.handle.db),
        concurrency: 1,
      },
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it("is acknowledged without running its handler again", async () => {
    const event = {
      id: newId(),
      type: "test.event",
      occurredAt: new Date().toISOString(),
      correlationId: "dead-once",
      data: { n: 1 },
    };
    await bus.js.publish("notifications.tasks.test", JSON.stringify(event), { msgID: "first" });
    await waitFor(async () =>
      (await db.handle.db.select().from(dlqEntries)).length ? true : undefined,
    );
    // La misma entrega otra vez (como la relectura de un consumer recreado).
    await bus.js.publish("notifications.tasks.test", JSON.stringify(event), { msgID: "again" });
    const jsm = await bus.jsm();
    await waitFor(async () => {
      const i = await jsm.consumers.info(streams.notifications.name, "dead-letter-once-worker");
      return i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.stream_seq >= 2
        ? true
        : undefined;
    });
    expect(handled).toEqual([event.id]);
    expect(await db.handle.db.select().from(dlqEntries)).toHaveLength(1);
  });
});
