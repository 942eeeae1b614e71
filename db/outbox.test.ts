import { rmSync } from "node:fs";
import { eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus, ensureStreams } from "../core/bus";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import type { LocalNats } from "../infra/nats/local-server";
import { createPgliteTestDatabase, type TestDatabase } from "../test/support/databases";
import { startNatsForTest } from "../test/support/stack";
import {
  INLINE_PUBLISH_LIMIT,
  outboxInsert,
  PARK_AFTER_ATTEMPTS,
  publishQueued,
  relayOnce,
} from "./outbox";
import { outboxEvents } from "./schema";

// El relay contra un nats-server real: un evento imposible de publicar no frena a los demás.
describe("outbox relay pass", () => {
  let nats: LocalNats & { dir: string };
  let bus: Bus;
  let db: TestDatabase;

  beforeAll(async () => {
    nats = await startNatsForTest();
    bus = await connectBus({ servers: nats.url, name: "outbox-test" });
    await ensureStreams(bus);
    db = await createPgliteTestDatabase();
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.stop();
    if (nats) rmSync(nats.dir, { recursive: true, force: true });
    await db?.drop();
  });

  const row = (subject: string) => {
    const id = newId();
    return {
      id,
      subject,
      type: "test.event",
      payload: { id, type: "test.event", occurredAt: new Date().toISOString(), data: {} },
      // En el pasado: con graceMs 0, una pasada en el mismo milisegundo del insert no lo vería
      // (created_at < now()) y no contaría su intento.
      createdAt: new Date(Date.now() - 60_000),
    };
  };

  it("publishes at most INLINE_PUBLISH_LIMIT events in the request and leaves the rest to the relay", async () => {
    const events = Array.from({ length: INLINE_PUBLISH_LIMIT + 30 }, (_, i) => ({
      subject: "billing.tasks.cycle",
      type: "test.inline_limit",
      correlationId: null,
      data: { n: i },
    }));
    const { statement, queued } = outboxInsert(db.handle.db, events);
    await statement;
    expect(await publishQueued(db.handle.db, bus, queued, silentLogger)).toBe(INLINE_PUBLISH_LIMIT);
    const ids = queued.map((q) => q.envelope.id);
    const unpublished = async () =>
      (
        await db.handle.db
          .select({ id: outboxEvents.id, publishedAt: outboxEvents.publishedAt })
          .from(outboxEvents)
          .where(inArray(outboxEvents.id, ids))
      ).filter((r) => r.publishedAt === null);
    // Los que quedaron son los últimos, y el relay los publica en su pasada.
    expect((await unpublished()).map((r) => r.id).sort()).toEqual(
      ids.slice(INLINE_PUBLISH_LIMIT).sort(),
    );
    expect(await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 })).toMatchObject({
      published: 30,
      failed: false,
    });
    expect(await unpublished()).toEqual([]);
  });

  it("parks an event no stream accepts after repeated failures and publishes the ones behind it", async () => {
    // Ningún stream captura `nowhere.>`: JetStream lo rechaza aunque esté sano.
    const poison = row("nowhere.tasks.lost");
    const behind = row("billing.tasks.cycle");
    await db.handle.db.insert(outboxEvents).values([poison, behind]);
    const passes = [];
    for (let i = 0; i < PARK_AFTER_ATTEMPTS; i++) {
      passes.push(await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 }));
    }
    // Mientras no se aparta, el de atrás espera (orden); al apartarlo, sale en la misma pasada.
    expect(passes.map((p) => p.failed)).toEqual([true, true, true, true, false]);
    expect(passes.at(-1)).toMatchObject({ parked: 1, published: 1 });
    const rows = await db.handle.db
      .select()
      .from(outboxEvents)
      .where(inArray(outboxEvents.id, [poison.id, behind.id]));
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(poison.id)).toMatchObject({
      attempts: PARK_AFTER_ATTEMPTS,
      publishedAt: null,
      parkedAt: expect.any(Date),
    });
    expect(byId.get(poison.id)?.lastError).toBeTruthy();
    expect(byId.get(behind.id)?.publishedAt).toBeInstanceOf(Date);
    // Apartado: las pasadas siguientes ya no lo intentan.
    expect(await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 })).toMatchObject({
      failed: false,
      published: 0,
      parked: 0,
    });
  });

  it("does not open a transaction nor count attempts while NATS is disconnected", async () => {
    const waiting = row("billing.tasks.cycle");
    await db.handle.db.insert(outboxEvents).values(waiting);
    const down = await connectBus({ servers: nats.url, name: "outbox-test-down" });
    await down.close();
    const result = await relayOnce(db.handle.db, down, silentLogger, { graceMs: 0 });
    expect(result).toMatchObject({ failed: true, published: 0 });
    const [after] = await db.handle.db
      .select()
      .from(outboxEvents)
      .where(eq(outboxEvents.id, waiting.id));
    expect(after).toMatchObject({ attempts: 0, lastError: null, publishedAt: null });
    expect((await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 })).published).toBe(1);
  });

  it("retries a parked event later and publishes it once its stream is back", async () => {
    // Sin stream para `limbo.>` (como un stream recreado o en elección de líder): se aparta.
    const stranded = row("limbo.tasks.waiting");
    await db.handle.db.insert(outboxEvents).values(stranded);
    for (let i = 0; i < PARK_AFTER_ATTEMPTS; i++) {
      await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 });
    }
    const parkedRow = async () => {
      const [r] = await db.handle.db
        .select()
        .from(outboxEvents)
        .where(eq(outboxEvents.id, stranded.id));
      return r;
    };
    const parked = await parkedRow();
    expect(parked?.parkedAt).toBeInstanceOf(Date);

    // Vencido el plazo, se reintenta; si sigue fallando queda apartado con el plazo renovado.
    const retried = await relayOnce(db.handle.db, bus, silentLogger, {
      graceMs: 0,
      parkedRetryMs: 0,
    });
    expect(retried).toMatchObject({ failed: false, unparked: 0 });
    const still = await parkedRow();
    expect(still).toMatchObject({ publishedAt: null, attempts: PARK_AFTER_ATTEMPTS + 1 });
    expect(still?.parkedAt?.getTime()).toBeGreaterThan(parked?.parkedAt?.getTime() ?? 0);

    // El stream vuelve: la siguiente pasada lo publica y deja de estar apartado.
    const jsm = await bus.jsm();
    await jsm.streams.add({ name: "LIMBO", subjects: ["limbo.>"] });
    const recovered = await relayOnce(db.handle.db, bus, silentLogger, {
      graceMs: 0,
      parkedRetryMs: 0,
    });
    expect(recovered).toMatchObject({ failed: false });
    expect(recovered.unparked).toBeGreaterThanOrEqual(1);
    expect(await parkedRow()).toMatchObject({
      publishedAt: expect.any(Date),
      parkedAt: null,
      lastError: null,
    });
    expect((await jsm.streams.info("LIMBO")).state.messages).toBe(1);
  });
});
