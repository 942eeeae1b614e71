import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { readControlPlaneBacklog } from "../../db/backlog";
import { dlqEntries, outboxEvents } from "../../db/schema";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { createWorkerMetrics } from "./metrics";

// Lo que un operador necesita ver del plano de control en /metrics: cuánto espera el relay y
// cuánto hay en la DLQ sin reprocesar (la suma de dead_lettered_total no es una profundidad).
describe("control plane metrics", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createPostgresTestDatabase();
  });
  afterAll(async () => db?.drop());

  const event = (minutesAgo: number, extra: Partial<typeof outboxEvents.$inferInsert> = {}) => ({
    id: newId(),
    subject: "provisioning.tasks.provision",
    type: "provisioning.requested",
    payload: {},
    createdAt: new Date(Date.now() - minutesAgo * 60_000),
    ...extra,
  });
  const deadLetter = (replayedAt: Date | null) => ({
    domain: "provisioning",
    stream: "PROVISIONING",
    streamSequence: Math.floor(Math.random() * 1e9),
    messageKey: newId(),
    subject: "provisioning.tasks.provision",
    rawPayload: "{}",
    error: "boom",
    errorKind: "permanent",
    deliveries: 1,
    replayedAt,
  });

  it("exports the relay's lag, parked events and unreplayed DLQ entries per domain", async () => {
    await db.handle.db
      .insert(outboxEvents)
      .values([
        event(3),
        event(1),
        event(10, { parkedAt: new Date() }),
        event(30, { publishedAt: new Date() }),
      ]);
    await db.handle.db.insert(dlqEntries).values([deadLetter(null), deadLetter(new Date())]);
    const metrics = createWorkerMetrics();
    metrics.trackControlPlane(() => readControlPlaneBacklog(db.handle.db));
    const text = await metrics.registry.metrics();
    expect(text).toContain('farutech_outbox_events{state="unpublished"} 2\n');
    expect(text).toContain('farutech_outbox_events{state="parked"} 1\n');
    const age = Number(
      /^farutech_outbox_oldest_event_age_seconds\{state="unpublished"\} (\S+)$/m.exec(text)?.[1],
    );
    expect(age).toBeGreaterThanOrEqual(180);
    expect(age).toBeLessThan(240);
    expect(text).toContain('farutech_dlq_entries_unreplayed{domain="provisioning"} 1\n');
    expect(text).toContain('farutech_dlq_entries_unreplayed{domain="billing"} 0\n');
  });

  it("drops the series when the database cannot be read, instead of showing an old value", async () => {
    const metrics = createWorkerMetrics();
    let fail = false;
    metrics.trackControlPlane(async () => {
      if (fail) throw new Error("database down");
      return readControlPlaneBacklog(db.handle.db);
    });
    expect(await metrics.registry.metrics()).toMatch(/^farutech_outbox_events\{/m);
    fail = true;
    const text = await metrics.registry.metrics();
    expect(text).not.toMatch(/^farutech_outbox_events\{/m);
    expect(text).not.toMatch(/^farutech_outbox_oldest_event_age_seconds\{/m);
    expect(text).not.toMatch(/farutech_dlq_entries_unreplayed\{/);
  });
});
