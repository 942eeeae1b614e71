import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus } from "../core/bus";
import { silentLogger } from "../core/logger";
import { createDb } from "../db/client";
import { enqueueEvent, RELAY_LOCK_ID, relayOnce } from "../db/outbox";
import { outboxEvents } from "../db/schema";
import { type DbHandle, rowsOf } from "../db/types";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { captureLogs } from "../test/support/logs";
import { startBrokerForTest, type TestNats, waitFor } from "../test/support/stack";
import { startTcpProxy, type TcpProxy } from "../test/support/tcp-proxy";
import { startOutboxRelay } from "./relay";

// Un relay cuyo enlace con Postgres enmudece a mitad de pasada (partición sin RST) no deja el
// candado del relay retenido: Postgres corta su sesión ociosa en la transacción y otro relay
// publica; y el lazo del proceso afectado no se cuelga en esa pasada.
describe("outbox relay whose Postgres link goes silent mid-pass", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let bus: Bus;
  const proxies: TcpProxy[] = [];
  const stalled: DbHandle[] = [];
  const buses: Bus[] = [];

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    ({ nats, bus } = await startBrokerForTest("relay-healthy"));
  });

  afterAll(async () => {
    for (const p of proxies) await p.close();
    for (const h of stalled) await h.close().catch(() => {});
    for (const b of [...buses, bus]) await b?.close();
    await nats?.dispose();
    await db?.drop();
  });

  /** Relay "A": base y broker detrás de proxies que la prueba puede enmudecer. */
  async function relayBehindProxies() {
    const pgProxy = await startTcpProxy(Number(new URL(db.url ?? "").port));
    const natsProxy = await startTcpProxy(Number(new URL(nats.url).port));
    proxies.push(pgProxy, natsProxy);
    const url = new URL(db.url ?? "");
    url.port = String(pgProxy.port);
    const handle = await createDb({ url: url.toString() });
    stalled.push(handle);
    const aBus = await connectBus({
      servers: `nats://127.0.0.1:${natsProxy.port}`,
      name: "relay-partitioned",
    });
    buses.push(aBus);
    return { handle, aBus, pgProxy, natsProxy };
  }

  async function queueEvent(period: string) {
    const queued = await db.handle.db.transaction((tx) =>
      enqueueEvent(tx, {
        subject: "billing.tasks.cycle",
        type: "billing.cycle_triggered",
        data: { period },
      }),
    );
    return queued.envelope.id;
  }

  const relayLockHeld = async () =>
    rowsOf<{ n: number }>(
      await db.handle.db.execute(
        sql`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = ${RELAY_LOCK_ID} and granted`,
      ),
    )[0]?.n === 1;

  const publishedAt = async (id: string) =>
    (await db.handle.db.select().from(outboxEvents).where(eq(outboxEvents.id, id)))[0]
      ?.publishedAt ?? undefined;

  it("frees the relay lock for another relay once the silent session idles out", async () => {
    const id = await queueEvent("2026-01");
    const a = await relayBehindProxies();
    // A toma el candado y publica; el broker tarda (su ack retenido) y la transacción sigue abierta.
    a.natsProxy.hold();
    void relayOnce(a.handle.db, a.aBus, silentLogger, { graceMs: 0, stallTimeoutMs: 1_000 }).catch(
      () => {},
    );
    await waitFor(async () => ((await relayLockHeld()) ? true : undefined));
    // Ahora enmudece su enlace con Postgres y el broker contesta: A queda esperando a la base.
    a.pgProxy.hold();
    a.natsProxy.release();
    // Otro relay (otro proceso) publica en cuanto Postgres corta la sesión de A.
    const published = await waitFor(
      async () => {
        await relayOnce(db.handle.db, bus, silentLogger, { graceMs: 0 });
        return (await publishedAt(id)) ?? undefined;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(published).toBeInstanceOf(Date);
  }, 60_000);

  it("abandons a stalled pass so the relay loop goes on and stops", async () => {
    const a = await relayBehindProxies();
    a.pgProxy.hold();
    const { logger, lines } = captureLogs("relay-stall");
    const relay = startOutboxRelay({
      db: a.handle.db,
      bus: a.aBus,
      logger,
      intervalMs: 50,
      graceMs: 0,
      passTimeoutMs: 500,
    });
    await waitFor(async () =>
      lines.some((l) => l.msg === "outbox relay pass stalled; abandoned") ? true : undefined,
    );
    // Con la pasada colgada, parar no espera a la red.
    await relay.stop();
    expect(
      lines.filter((l) => l.msg === "outbox relay pass stalled; abandoned").length,
    ).toBeGreaterThan(0);
  }, 60_000);
});
