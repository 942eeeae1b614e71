import { eq, inArray } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EventEnvelope } from "../contracts/events";
import { type Bus, connectBus } from "../core/bus";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import {
  createPgliteTestDatabase,
  createPostgresTestDatabase,
  type TestDatabase,
} from "../test/support/databases";
import { captureLogs } from "../test/support/logs";
import { startBrokerForTest, type TestNats } from "../test/support/stack";
import {
  INLINE_PUBLISH_LIMIT,
  outboxInsert,
  PARK_AFTER_ATTEMPTS,
  publishQueued,
  RELAY_LOCK_ID,
  relayOnce,
} from "./outbox";
import { outboxEvents } from "./schema";

// El relay contra un nats-server real: un evento imposible de publicar no frena a los demás.
describe("outbox relay pass", () => {
  let nats: TestNats;
  let bus: Bus;
  let db: TestDatabase;

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("outbox-test"));
    db = await createPgliteTestDatabase();
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  const row = (subject: string) => {
    const id = newId();
    return {
      id,
      subject,
      correlationId: `corr-${id}`,
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
    // Cada línea del relay sobre ese evento lleva su correlación: la traza de la petición sigue.
    const { logger, lines } = captureLogs("outbox-parking");
    for (let i = 0; i < PARK_AFTER_ATTEMPTS; i++) {
      passes.push(await relayOnce(db.handle.db, bus, logger, { graceMs: 0 }));
    }
    const aboutPoison = lines.filter((l) => l.eventId === poison.id);
    expect(aboutPoison.map((l) => l.msg)).toEqual([
      ...Array(PARK_AFTER_ATTEMPTS - 1).fill("outbox relay publish failed"),
      "outbox event parked: publishing keeps failing while NATS is up",
    ]);
    for (const line of aboutPoison) expect(line.correlationId).toBe(poison.correlationId);
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

// Issue 4: un solo relay publica a la vez. Postgres real (PGlite tiene una sola conexión, ahí no
// hay dos sesiones que compitan) y un bus falso: lo que se mide es quién publica, no NATS.
describe("outbox relay lock on Postgres", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
  });
  afterAll(async () => db?.drop());

  /** Bus conectado que entrega cada publicación a `publish` (sin broker). */
  const fakeBus = (publish: (event: EventEnvelope) => Promise<void>): Bus =>
    ({
      isConnected: () => true,
      async publishEvent(_subject: string, event: EventEnvelope) {
        await publish(event);
        return { seq: 1, duplicate: false };
      },
    }) as unknown as Bus;

  /** Eventos pendientes ya fuera del periodo de gracia, en orden de `seq`. */
  async function pendingEvents(count: number): Promise<string[]> {
    const rows = Array.from({ length: count }, () => {
      const id = newId();
      return {
        id,
        subject: "billing.tasks.cycle",
        type: "test.relay_lock",
        payload: { id, type: "test.relay_lock", occurredAt: new Date().toISOString(), data: {} },
        createdAt: new Date(Date.now() - 60_000),
      };
    });
    await db.handle.db.insert(outboxEvents).values(rows);
    return rows.map((r) => r.id);
  }

  it("a second relay pass publishes nothing while another pass holds the lock, and publishes once it ends", async () => {
    const [firstId, secondId] = await pendingEvents(2);
    // La primera pasada se detiene dentro de publishEvent: ya tiene el lock y su transacción
    // sigue abierta (el evento aún figura sin publicar para las demás sesiones).
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered = () => {};
    const inPublish = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const heldPublished: string[] = [];
    const held = relayOnce(
      db.handle.db,
      fakeBus(async (event) => {
        entered();
        await gate;
        heldPublished.push(event.id);
      }),
      silentLogger,
      { graceMs: 0, batchSize: 1 },
    );
    const otherPublished: string[] = [];
    const otherBus = fakeBus(async (event) => {
      otherPublished.push(event.id);
    });
    try {
      await inPublish;
      // Otra conexión del pool, mientras la primera pasada sigue abierta.
      const during = await relayOnce(db.handle.db, otherBus, silentLogger, { graceMs: 0 });
      expect(during).toMatchObject({ locked: false, published: 0 });
      expect(otherPublished).toEqual([]);
    } finally {
      // Siempre se suelta: si no, la pasada retenida deja una conexión ocupada para siempre.
      release();
    }
    expect(await held).toMatchObject({ locked: true, published: 1, failed: false });
    expect(heldPublished).toEqual([firstId]);
    // Terminada la primera, la siguiente pasada toma el lock y publica lo que quedaba.
    const after = await relayOnce(db.handle.db, otherBus, silentLogger, { graceMs: 0 });
    expect(after).toMatchObject({ locked: true, published: 1, failed: false });
    expect(otherPublished).toEqual([secondId]);
  });

  it("skips the pass while another session (a relay in another process) holds the lock", async () => {
    const [id] = await pendingEvents(1);
    const published: string[] = [];
    const bus = fakeBus(async (event) => {
      published.push(event.id);
    });
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query("begin");
      await other.query("select pg_advisory_xact_lock($1)", [RELAY_LOCK_ID]);
      expect(await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 })).toMatchObject({
        locked: false,
        published: 0,
      });
      expect(published).toEqual([]);
      // El lock es de transacción: al confirmar la otra sesión queda libre.
      await other.query("commit");
    } finally {
      await other.end();
    }
    expect(await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 })).toMatchObject({
      locked: true,
      published: 1,
    });
    expect(published).toEqual([id]);
  });
});
