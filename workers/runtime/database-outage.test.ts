import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { createDb, type DbHandle } from "../../db/client";
import { createDeadLetterStore } from "../../db/dead-letters";
import { createProcessedStore } from "../../db/processed";
import { dlqEntries } from "../../db/schema";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { captureLogs } from "../../test/support/logs";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { startTcpProxy, type TcpProxy } from "../../test/support/tcp-proxy";
import { type RunningWorker, startWorker } from "./consumer";

// Un reinicio o failover de Postgres (segundos) no es un fallo del mensaje: el worker lo retiene y
// lo reintenta en el lugar, sin gastar entregas, y no lo manda a la DLQ. Postgres y nats-server
// reales; el proxy TCP corta las conexiones del worker como un reinicio.
describe("a worker while Postgres restarts", () => {
  let nats: TestNats;
  let bus: Bus;
  let database: TestDatabase;
  let proxy: TcpProxy;
  let proxied: DbHandle;
  let worker: RunningWorker;
  const logs = captureLogs("database-outage");
  const handled: { id: string; deliveryCount: number }[] = [];

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("database-outage"));
    database = await createPostgresTestDatabase();
    const url = new URL(database.url ?? "");
    proxy = await startTcpProxy(Number(url.port || 5432));
    url.port = String(proxy.port);
    proxied = await createDb({ url: url.toString() });
    worker = await startWorker(
      {
        name: "database-outage-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.>",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          // El trabajo también usa la base.
          await proxied.db.execute(sql`select 1`);
          handled.push({ id: ctx.envelope.id, deliveryCount: ctx.deliveryCount });
        },
      },
      {
        bus,
        logger: logs.logger,
        processed: createProcessedStore(proxied.db),
        deadLetters: createDeadLetterStore(proxied.db),
        concurrency: 2,
        ackWaitMs: 2_000,
      },
    );
  });

  afterAll(async () => {
    proxy?.up();
    await worker?.stop();
    await bus?.close();
    await nats?.dispose();
    await proxied?.close();
    await proxy?.close();
    await database?.drop();
  });

  it("holds a message through an outage longer than the retry budget and runs it once the database is back", async () => {
    proxy.down();
    const id = newId();
    await bus.publishEvent("notifications.tasks.outage", {
      id,
      type: "test.event",
      occurredAt: new Date().toISOString(),
      correlationId: "outage",
      data: { n: 1 },
    });
    // Los cinco intentos con su espera (0,5 + 1 + 2 + 4 s) caben en 7,5 s: la caída dura más.
    await new Promise((resolve) => setTimeout(resolve, 9_000));
    expect(handled).toEqual([]);
    proxy.up();
    await waitFor(async () => (handled.length > 0 ? true : undefined), { timeoutMs: 20_000 });
    expect(handled).toEqual([{ id, deliveryCount: 1 }]);
    expect(await database.handle.db.select().from(dlqEntries)).toEqual([]);
    // Para el operador: una línea al empezar a esperar, no una por intento.
    const waiting = logs.lines.filter((l) => l.msg === "database unavailable; holding the message");
    expect(waiting).toHaveLength(1);
    expect(waiting[0]).toMatchObject({ level: "warn", eventId: id });
    expect(logs.lines.some((l) => l.msg === "message failed; will retry")).toBe(false);
  }, 40_000);
});
