import { eq, inArray, isNull } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus, ensureStreams } from "../core/bus";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import { createTestDatabase, type TestDatabase } from "../test/support/databases";
import { startNatsForTest, type TestNats } from "../test/support/stack";
import { auditInsert } from "./audit";
import { executeAll } from "./batch";
import { outboxInsert, publishQueued } from "./outbox";
import { auditLog, customers, outboxEvents } from "./schema";

describe.each(["postgres", "pglite"] as const)("executeAll on %s", (kind) => {
  let db: TestDatabase;
  const queries: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase(kind, (q) => queries.push(q));
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("writes several tables in one statement, in order, with references between them", async () => {
    const customerId = newId();
    const d = db.handle.db;
    queries.length = 0;
    const outbox = outboxInsert(d, [
      { subject: "integration.tasks.customer.created", type: "a", data: { n: 1 } },
      { subject: "integration.tasks.customer.created", type: "b", data: { n: 2 } },
    ]);
    await executeAll(d, [
      d.insert(customers).values({
        id: customerId,
        legalName: "Batch SA",
        taxId: `BATCH-${customerId}`,
        country: "MX",
        billingEmail: "batch@example.com",
      }),
      auditInsert(d, [
        { actor: "t", action: "first", entityType: "customer", entityId: customerId },
        { actor: "t", action: "second", entityType: "customer", entityId: customerId },
      ]),
      outbox.statement,
    ]);
    expect(queries).toHaveLength(1);
    const audit = await d
      .select()
      .from(auditLog)
      .where(eq(auditLog.entityId, customerId))
      .orderBy(auditLog.id);
    expect(audit.map((a) => a.action)).toEqual(["first", "second"]);
    const events = await d
      .select()
      .from(outboxEvents)
      .where(
        inArray(
          outboxEvents.id,
          outbox.queued.map((q) => q.envelope.id),
        ),
      )
      .orderBy(outboxEvents.seq);
    expect(events.map((e) => e.type)).toEqual(["a", "b"]);
  });

  it("is atomic: if one part fails nothing is written", async () => {
    const d = db.handle.db;
    const entityId = newId();
    await expect(
      executeAll(d, [
        auditInsert(d, [{ actor: "t", action: "lost", entityType: "customer", entityId }]),
        // El mismo id dos veces viola la clave primaria.
        d.insert(customers).values([
          {
            id: entityId,
            legalName: "A",
            taxId: `A-${entityId}`,
            country: "MX",
            billingEmail: "a@x.mx",
          },
          {
            id: entityId,
            legalName: "B",
            taxId: `B-${entityId}`,
            country: "MX",
            billingEmail: "b@x.mx",
          },
        ]),
      ]),
    ).rejects.toThrow();
    expect(await d.select().from(auditLog).where(eq(auditLog.entityId, entityId))).toEqual([]);
  });
});

describe("publishQueued marks concurrent publishes in shared batches", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let bus: Bus;
  const updates: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase("postgres", (q) => {
      if (q.startsWith('update "outbox_events"')) updates.push(q);
    });
    nats = await startNatsForTest();
    bus = await connectBus({ servers: nats.url, name: "batch-test", logger: silentLogger });
    await ensureStreams(bus);
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it("every event ends published with fewer UPDATEs than callers", async () => {
    const d = db.handle.db;
    const batches = Array.from({ length: 40 }, (_, i) =>
      outboxInsert(d, [
        { subject: "integration.tasks.customer.updated", type: "customer.updated", data: { i } },
      ]),
    );
    await executeAll(
      d,
      batches.map((b) => b.statement),
    );
    await Promise.all(batches.map((b) => publishQueued(d, bus, b.queued, silentLogger)));
    expect(await d.select().from(outboxEvents).where(isNull(outboxEvents.publishedAt))).toEqual([]);
    expect(updates.length).toBeGreaterThan(0);
    expect(updates.length).toBeLessThan(batches.length);
  });
});
