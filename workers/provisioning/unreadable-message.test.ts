import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus, ensureStreams } from "../../core/bus";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createDeadLetterStore } from "../../db/dead-letters";
import { createProcessedStore } from "../../db/processed";
import { auditLog, dlqEntries, provisioningTasks, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { startNatsForTest, type TestNats, waitFor } from "../../test/support/stack";
import { type RunningWorker, startWorker } from "../runtime/consumer";
import { createPostgresRegistry } from "./shared-registry";
import { provisioningWorker } from "./worker";

// Durante un despliegue, un worker de la versión anterior recibe una tarea de un tipo que no
// conoce: su esquema la rechaza y va a la DLQ sin que el handler corra. Sin marcarla, la tarea
// quedaba `queued` para siempre (en curso para la API, que bloquea otras operaciones).
describe("a provisioning message this worker cannot read", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let bus: Bus;
  let worker: RunningWorker;
  let registry: ReturnType<typeof createPostgresRegistry>;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    nats = await startNatsForTest();
    bus = await connectBus({ servers: nats.url, name: "unreadable" });
    await ensureStreams(bus);
    registry = createPostgresRegistry(db.url ?? "");
    worker = await startWorker(
      provisioningWorker({ db: db.handle.db, bus, registry, failureRate: 0 }),
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
    await worker?.stop({ drainTimeoutMs: 500 }).catch(() => {});
    await bus?.close();
    await registry?.close();
    await nats?.dispose();
    await db?.drop();
  });

  const queuedTask = async (tenantInstanceId: string) => {
    const id = newId();
    await db.handle.db.insert(provisioningTasks).values({
      id,
      tenantInstanceId,
      kind: "update_features",
      status: "queued",
      correlationId: `unreadable-${id}`,
      requestHash: "x",
      response: {},
      payload: { features: {} },
    });
    return id;
  };
  const publishUnknownKind = (taskId: string, tenantInstanceId: string) =>
    bus.publishEvent("provisioning.tasks.from_a_newer_version", {
      id: newId(),
      type: "provisioning.from_a_newer_version_requested",
      occurredAt: new Date().toISOString(),
      correlationId: `unreadable-${taskId}`,
      data: { taskId, tenantInstanceId, kind: "from_a_newer_version" },
    });
  const statusOf = async (taskId: string) =>
    (
      await db.handle.db
        .select({ status: provisioningTasks.status })
        .from(provisioningTasks)
        .where(eq(provisioningTasks.id, taskId))
    )[0]?.status;

  it("marks the task it names dead-lettered (replayable), and leaves another instance's task alone", async () => {
    const [a, b] = await db.handle.db.select().from(tenantInstances).limit(2);
    if (!a || !b) throw new Error("demo data missing");
    const taskId = await queuedTask(a.id);
    await publishUnknownKind(taskId, a.id);
    await waitFor(async () => ((await statusOf(taskId)) === "dead_lettered" ? true : undefined), {
      timeoutMs: 15_000,
    });
    const [entry] = await db.handle.db
      .select()
      .from(dlqEntries)
      .where(eq(dlqEntries.correlationId, `unreadable-${taskId}`));
    expect(entry?.errorKind).toBe("permanent");
    const audits = await db.handle.db
      .select({ action: auditLog.action })
      .from(auditLog)
      .where(eq(auditLog.entityId, taskId));
    expect(audits.map((x) => x.action)).toContain("provisioning_task.dead_lettered");
    // Una tarea de features muerta no deja fallida la instancia.
    const [instance] = await db.handle.db
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, a.id));
    expect(instance?.status).toBe(a.status);

    // Un mensaje que nombra la tarea con otra instancia no la toca.
    const other = await queuedTask(a.id);
    await publishUnknownKind(other, b.id);
    await waitFor(
      async () => {
        const [e] = await db.handle.db
          .select({ id: dlqEntries.id })
          .from(dlqEntries)
          .where(eq(dlqEntries.correlationId, `unreadable-${other}`));
        return e;
      },
      { timeoutMs: 15_000 },
    );
    expect(await statusOf(other)).toBe("queued");
  }, 60_000);
});
