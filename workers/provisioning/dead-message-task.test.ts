import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams } from "../../contracts/streams";
import { type Bus, connectBus, ensureStreams } from "../../core/bus";
import { fixedBusProvider } from "../../core/bus-provider";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createDeadLetterStore } from "../../db/dead-letters";
import { createProcessedStore } from "../../db/processed";
import { dlqEntries, provisioningTasks, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionRequestSchema } from "../../functions/routes/provisioning/schema";
import { replayDeadLetter } from "../../functions/services/dlq";
import { provisionTenant } from "../../functions/services/provisioning";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { demoProvisionBody } from "../../test/support/demo";
import { startNatsForTest, type TestNats, waitFor } from "../../test/support/stack";
import { startTcpProxy, type TcpProxy } from "../../test/support/tcp-proxy";
import { type RunningWorker, startWorker } from "../runtime/consumer";
import { createPostgresRegistry, type SharedTenantRegistry } from "./shared-registry";
import { provisioningWorker } from "./worker";

// La ejecución A tiene la tarea (lease renovado por Postgres) pero su enlace con NATS enmudece:
// JetStream reentrega el MISMO mensaje a B, que agota las entregas (tarea ocupada) y lo lleva a la
// DLQ dejando la tarea a A. Si luego A falla, la tarea no puede volver a `queued`: ya no hay
// mensaje que la lleve. Queda en la DLQ (reprocesable), no atascada para siempre.
describe("a live run whose message was dead-lettered meanwhile", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let proxy: TcpProxy;
  let busA: Bus;
  let busB: Bus;
  const workers: RunningWorker[] = [];
  let registry: ReturnType<typeof createPostgresRegistry>;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    nats = await startNatsForTest();
    proxy = await startTcpProxy(Number(new URL(nats.url).port));
    busB = await connectBus({ servers: nats.url, name: "run-b" });
    await ensureStreams(busB);
    busA = await connectBus({ servers: `nats://127.0.0.1:${proxy.port}`, name: "run-a" });
    registry = createPostgresRegistry(db.url ?? "");
  });

  afterAll(async () => {
    proxy?.release();
    for (const w of workers) await w.stop({ drainTimeoutMs: 500 }).catch(() => {});
    await busA?.close();
    await busB?.close();
    await proxy?.close();
    await registry?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it("ends dead-lettered (and replayable) when that run then fails, instead of queued forever", async () => {
    const calls: string[] = [];
    let failA!: (err: Error) => void;
    const gate = new Promise<never>((_resolve, reject) => {
      failA = reject;
    });
    gate.catch(() => {});
    // A se queda dentro de register_tenant hasta que la prueba lo hace fallar; B usa el registro real.
    const runA: SharedTenantRegistry = {
      ...registry,
      async register(productCode, tenant) {
        calls.push("A");
        await gate;
        await registry.register(productCode, tenant);
      },
    };
    const options = {
      logger: silentLogger,
      processed: createProcessedStore(db.handle.db),
      deadLetters: createDeadLetterStore(db.handle.db),
      concurrency: 1,
      ackWaitMs: 2_000,
    };
    const worker = (bus: Bus, reg: SharedTenantRegistry) =>
      startWorker(
        provisioningWorker({
          db: db.handle.db,
          bus,
          registry: reg,
          failureRate: 0,
          leaseMs: 2_000,
        }),
        { ...options, bus },
      );
    workers.push(await worker(busA, runA));

    const correlationId = newId();
    const ctx = {
      db: db.handle.db,
      bus: fixedBusProvider(busB),
      logger: silentLogger,
      actor: "test",
      correlationId,
      baseDomain: "test.local",
    };
    const body = provisionRequestSchema.parse({
      ...(await demoProvisionBody(db.handle.db, "dead-message")),
      correlationId,
    });
    const { response } = await provisionTenant(ctx, body);
    await waitFor(async () => (calls.length > 0 ? true : undefined));
    // Partición entre A y NATS (sin RST): sus latidos y su ack no llegan; su base sigue bien.
    proxy.hold();
    workers.push(await worker(busB, registry));

    // B agota las entregas del mismo mensaje, lo lleva a la DLQ y lo termina.
    const jsm = await busB.jsm();
    const entry = await waitFor(
      async () => {
        const [e] = await db.handle.db.select().from(dlqEntries);
        const info = await jsm.consumers.info(streams.provisioning.name, "provisioning-worker");
        return e && info.num_pending === 0 && info.num_ack_pending === 0 ? e : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const taskOf = async () =>
      (
        await db.handle.db
          .select()
          .from(provisioningTasks)
          .where(eq(provisioningTasks.id, response.taskId))
      )[0];
    expect((await taskOf())?.status).toBe("running");

    // Ahora el paso de A falla (transitorio): su mensaje ya no existe.
    failA(new Error("shared database briefly unavailable (injected)"));
    const task = await waitFor(
      async () => {
        const t = await taskOf();
        return t && t.status !== "running" ? t : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(task.status).toBe("dead_lettered");
    const [instance] = await db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, response.tenantInstanceId));
    expect(instance?.status).toBe("failed");

    // Y el operador lo reprocesa: B lo termina.
    await replayDeadLetter({ ...ctx, correlationId: newId() }, entry.id);
    const done = await waitFor(
      async () => {
        const t = await taskOf();
        return t?.status === "succeeded" ? t : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(done.status).toBe("succeeded");
  }, 120_000);
});
