import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Bus } from "../../core/bus";
import { fixedBusProvider } from "../../core/bus-provider";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createDeadLetterStore } from "../../db/dead-letters";
import { dlqEntries, provisioningTasks } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionRequestSchema } from "../../functions/routes/provisioning/schema";
import { provisionTenant } from "../../functions/services/provisioning";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { demoProvisionBody } from "../../test/support/demo";
import { captureLogs } from "../../test/support/logs";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { startWorker } from "../runtime/consumer";
import { PermanentError } from "../runtime/errors";
import type { SharedTenantRegistry } from "./shared-registry";
import { PROVISIONING_WORKER, provisioningWorker } from "./worker";

// Las líneas que escribe el hook de DLQ del worker de aprovisionamiento son del mensaje: llevan su
// correlación, su evento, su intento y la tarea, como las del handler (y sin claves repetidas).
describe("provisioning dead-letter hook log lines", () => {
  let database: TestDatabase;
  let nats: TestNats;
  let bus: Bus;

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    await seedDemo(database.handle.db);
    ({ nats, bus } = await startBrokerForTest("dead-letter-logs"));
  });

  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
    await database?.drop();
  });

  const db = () => database.handle.db;

  /** El registro compartido rechaza al tenant: el paso externo falla sin remedio (DLQ directa). */
  const rejectingRegistry: SharedTenantRegistry = {
    async register() {
      throw new PermanentError("the shared registry rejects this tenant (injected)");
    },
    async isRegistered() {
      return false;
    },
    async deactivate() {
      return 0;
    },
    async dropTenant() {
      return { rowsDeleted: 0 };
    },
    async close() {},
  };

  /** Los eventos que publica el worker no llegan a NATS: quedan para el relay (y se registra). */
  const unreachableBus = (): Bus => ({
    ...bus,
    async publishEvent() {
      throw new Error("message bus unavailable (injected)");
    },
  });

  async function newTask(code: string, publishWith: Bus | undefined) {
    const correlationId = newId();
    const body = provisionRequestSchema.parse({
      ...(await demoProvisionBody(db(), code)),
      instanceCode: code,
      correlationId,
    });
    const { response } = await provisionTenant(
      {
        db: db(),
        bus: fixedBusProvider(publishWith),
        logger: silentLogger,
        actor: "test",
        correlationId,
        baseDomain: "test.local",
      },
      body,
    );
    return { ...response, correlationId };
  }

  it("logs the hook's lines of a dead-lettered task with the message's context", async () => {
    const { logger, lines } = captureLogs();
    const worker = await startWorker(
      provisioningWorker({
        db: db(),
        bus: unreachableBus(),
        registry: rejectingRegistry,
        failureRate: 0,
        random: () => 1,
        // Sin el logger del mensaje, el hook escribía con este (sin intento ni evento).
        logger,
      }),
      { bus, logger, deadLetters: createDeadLetterStore(db()), concurrency: 1 },
    );
    try {
      const task = await newTask("dlq-logs", bus);
      const deferred = await waitFor(
        async () => lines.find((l) => l.msg === "event publish deferred to outbox relay"),
        { timeoutMs: 20_000 },
      );
      await waitFor(async () => lines.find((l) => l.msg === "message dead-lettered"));
      const [entry] = await db()
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.correlationId, task.correlationId));
      expect(entry?.eventId).toBeTruthy();
      const context = {
        worker: PROVISIONING_WORKER,
        correlationId: task.correlationId,
        // El evento del mensaje muerto, no el que no se pudo publicar (ese va como eventEventId).
        eventId: entry?.eventId,
        attempt: 1,
        taskId: task.taskId,
        tenantInstanceId: task.tenantInstanceId,
        streamSequence: entry?.streamSequence,
      };
      expect(deferred).toMatchObject(context);
      const mine = lines.filter((l) => l.msg !== "worker started" && l.msg !== "worker stopped");
      expect(mine.length).toBeGreaterThan(2);
      for (const line of mine) expect(line).toMatchObject(context);
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("logs with the message's logger when the dead message leaves the task to another live run", async () => {
    const { logger, lines } = captureLogs();
    // El worker de la prueba anterior ya paró: este mensaje no se publica (lo lleva la prueba).
    const task = await newTask("dlq-logs-held", undefined);
    // Otra ejecución viva tiene la tarea, con su lease muy lejos de vencer.
    await db()
      .update(provisioningTasks)
      .set({ status: "running", leaseUntil: sql`now() + interval '1 hour'` })
      .where(eq(provisioningTasks.id, task.taskId));
    const def = provisioningWorker({
      db: db(),
      bus,
      registry: rejectingRegistry,
      failureRate: 0,
      leaseMs: 100,
      logger: silentLogger,
    });
    const data = {
      taskId: task.taskId,
      tenantInstanceId: task.tenantInstanceId,
      kind: "provision" as const,
    };
    const envelope = {
      id: newId(),
      type: "provisioning.provision_requested",
      occurredAt: new Date().toISOString(),
      correlationId: task.correlationId,
      data,
    };
    // Como lo arma el runtime: posición, intento, sobre y logFields (ya con taskId).
    const messageLog = logger.child({
      worker: PROVISIONING_WORKER,
      subject: "provisioning.tasks.provision",
      streamSequence: 42,
      attempt: 5,
      correlationId: envelope.correlationId,
      eventId: envelope.id,
      ...def.logFields?.(data),
    });
    const handled = await def.onDeadLetter?.(
      {
        envelope,
        subject: "provisioning.tasks.provision",
        streamSequence: 42,
        deliveries: 5,
        error: "worker stopped responding on its last delivery (MAX_DELIVERIES advisory)",
        permanent: false,
      },
      data,
      new AbortController().signal,
      messageLog,
    );
    expect(handled).toBeUndefined();
    const left = lines.find(
      (l) =>
        l.msg ===
        "dead-lettered message left its task alone: another live run holds the task lease",
    );
    // Una sola vez cada clave (captureLogs falla con claves repetidas) y el contexto del mensaje.
    expect(left).toMatchObject({
      worker: PROVISIONING_WORKER,
      streamSequence: 42,
      attempt: 5,
      correlationId: task.correlationId,
      eventId: envelope.id,
      taskId: task.taskId,
      tenantInstanceId: task.tenantInstanceId,
    });
    expect(left).not.toHaveProperty("eventTaskId");
  }, 30_000);
});
