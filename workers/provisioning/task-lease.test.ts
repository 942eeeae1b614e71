import { and, eq, like, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventEnvelopeSchema, type ProvisioningTaskMessage } from "../../contracts/events";
import type { Bus } from "../../core/bus";
import { type BusProvider, createBusProvider } from "../../core/bus-provider";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import {
  createSecretBox,
  generateEncryptionKey,
  type SecretBox,
  secretContext,
} from "../../core/secret-box";
import { outboxEvents, provisioningTasks, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionRequestSchema } from "../../functions/routes/provisioning/schema";
import { requestCredentialRotation } from "../../functions/services/deprovisioning";
import { provisionTenant } from "../../functions/services/provisioning";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { demoProvisionBody } from "../../test/support/demo";
import { scramLogin, storedRoleVerifier } from "../../test/support/scram";
import { startBrokerForTest, type startNatsForTest, waitFor } from "../../test/support/stack";
import { type HandlerContext, type RunningWorker, startWorker } from "../runtime/consumer";
import { createPostgresDedicated, type DedicatedDatabases } from "./dedicated-databases";
import { createPostgresRegistry, type SharedTenantRegistry } from "./shared-registry";
import { provisioningWorker, TaskBusyError } from "./worker";

interface Gate {
  promise: Promise<void>;
  open(): void;
  fail(err: Error): void;
}

function gate(): Gate {
  let open = () => {};
  let fail: (err: Error) => void = () => {};
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

/** Las bases propias reales, con algunas operaciones reemplazadas (para detenerlas a mitad). */
function wrapDedicated(
  real: DedicatedDatabases,
  overrides: Partial<DedicatedDatabases>,
): DedicatedDatabases {
  return {
    connectionString: (id, password) => real.connectionString(id, password),
    create: (id, password, fence) => real.create(id, password, fence),
    applyBaseline: (url, product) => real.applyBaseline(url, product),
    setPassword: (id, password, fence) => real.setPassword(id, password, fence),
    disableLogin: (...ids) => real.disableLogin(...ids),
    drop: (id) => real.drop(id),
    exists: (id) => real.exists(id),
    adoptLegacyDatabases: () => real.adoptLegacyDatabases(),
    close: () => real.close(),
    ...overrides,
  };
}

// El lease de una tarea de aprovisionamiento contra Postgres y un nats-server reales: dos
// entregas de la misma tarea nunca ejecutan sus pasos a la vez.
describe("provisioning task lease", () => {
  let database: TestDatabase;
  let nats: Awaited<ReturnType<typeof startNatsForTest>>;
  let bus: Bus;
  let provider: BusProvider;
  let real: SharedTenantRegistry;
  /** Cada llamada al paso externo: instancia y cuándo empezó. */
  const calls: { tenantInstanceId: string; at: number }[] = [];
  /** Las próximas llamadas esperan, en orden, a estas compuertas. */
  const gates: Gate[] = [];
  let registry: SharedTenantRegistry;

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    await seedDemo(database.handle.db);
    ({ nats, bus } = await startBrokerForTest("task-lease-test"));
    provider = createBusProvider({ servers: nats.url, name: "task-lease-test-fn" }, silentLogger);
    real = createPostgresRegistry(database.url ?? "");
    registry = {
      register: async (productCode, tenant) => {
        calls.push({ tenantInstanceId: tenant.tenantInstanceId, at: Date.now() });
        const next = gates.shift();
        if (next) await next.promise;
        await real.register(productCode, tenant);
      },
      isRegistered: (p, id) => real.isRegistered(p, id),
      deactivate: (p, ids) => real.deactivate(p, ids),
      dropTenant: (p, id) => real.dropTenant(p, id),
      close: () => real.close(),
    };
  });
  afterAll(async () => {
    for (const g of gates.splice(0)) g.fail(new Error("test finished"));
    await real?.close();
    await provider?.close();
    await bus?.close();
    await nats?.dispose();
    await database?.drop();
  });

  const db = () => database.handle.db;
  const callsFor = (id: string) => calls.filter((c) => c.tenantInstanceId === id);

  const serviceContext = (correlationId: string) => ({
    db: db(),
    bus: provider,
    logger: silentLogger,
    actor: "test",
    correlationId,
    baseDomain: "test.local",
  });

  /**
   * ¿Entra el rol con la contraseña de la cadena guardada? El Postgres local entra con trust: se
   * comprueba contra el verificador SCRAM del rol.
   */
  async function storedConnectionLogsIn(box: SecretBox, tenantInstanceId: string) {
    const [instance] = await db()
      .select({ sealed: tenantInstances.connectionStringEncrypted })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, tenantInstanceId));
    const url = new URL(
      await box.decrypt(instance?.sealed ?? "", secretContext.connectionString(tenantInstanceId)),
    );
    const verifier = await storedRoleVerifier(database.url ?? "", url.username);
    return scramLogin(verifier, decodeURIComponent(url.password));
  }

  /**
   * El worker real con esas bases propias, lease de 600 ms: `run` es una entrega; `runToTheEnd`,
   * entregas nuevas hasta que una toma la tarea (una abandonada la retiene hasta que vence).
   */
  function enterpriseRunner(dedicated: DedicatedDatabases, box: SecretBox) {
    const def = provisioningWorker({
      db: db(),
      bus,
      registry,
      failureRate: 0,
      leaseMs: 600,
      dedicated,
      secretBox: box,
    });
    const run = (data: ProvisioningTaskMessage, deliveryCount: number, signal: AbortSignal) =>
      def.handle({
        data,
        envelope: {
          id: newId(),
          type: "provisioning.requested",
          occurredAt: new Date().toISOString(),
          correlationId: newId(),
          data,
        },
        subject: `provisioning.tasks.${data.kind}`,
        deliveryCount,
        logger: silentLogger,
        heartbeat: () => {},
        signal,
      });
    const runToTheEnd = (data: ProvisioningTaskMessage) =>
      waitFor(
        async () => {
          try {
            await run(data, 2, new AbortController().signal);
            return true;
          } catch (err) {
            if (err instanceof TaskBusyError) return undefined;
            throw err;
          }
        },
        { timeoutMs: 10_000 },
      );
    return { run, runToTheEnd };
  }

  async function newTask(code: string, overrides: { databaseTier?: "enterprise" } = {}) {
    const correlationId = newId();
    const base = await demoProvisionBody(db(), code, overrides);
    const body = provisionRequestSchema.parse({ ...base, instanceCode: code, correlationId });
    const { response } = await provisionTenant(serviceContext(correlationId), body);
    return { ...response, correlationId };
  }

  async function taskRow(taskId: string) {
    const [row] = await db()
      .select()
      .from(provisioningTasks)
      .where(eq(provisioningTasks.id, taskId));
    if (!row) throw new Error(`task ${taskId} not found`);
    return row;
  }

  /** El mismo evento de la tarea publicado otra vez con otro id (relay y función a destiempo). */
  async function publishDuplicate(correlationId: string) {
    const [row] = await db()
      .select({ subject: outboxEvents.subject, payload: outboxEvents.payload })
      .from(outboxEvents)
      .where(
        and(
          eq(outboxEvents.correlationId, correlationId),
          like(outboxEvents.subject, "provisioning.tasks.%"),
        ),
      );
    if (!row) throw new Error("task event not found in the outbox");
    const duplicate = { ...eventEnvelopeSchema.parse(row.payload), id: newId() };
    await bus.publishEvent(row.subject, duplicate);
    return duplicate.id;
  }

  /** El worker real, con el resultado de cada entrega y los acks por "ya procesado" a la vista. */
  function observedWorker(name: string, leaseMs: number) {
    const def = provisioningWorker({ db: db(), bus, registry, failureRate: 0, leaseMs });
    const outcomes: { eventId: string; delivery: number; error?: string }[] = [];
    const acknowledged: string[] = [];
    const contexts: HandlerContext<ProvisioningTaskMessage>[] = [];
    return {
      outcomes,
      acknowledged,
      contexts,
      def: {
        ...def,
        // Consumer propio por prueba: los eventos de otras pruebas llegan ya terminados.
        name,
        async handle(ctx: HandlerContext<ProvisioningTaskMessage>) {
          contexts.push(ctx);
          const base = { eventId: ctx.envelope.id, delivery: ctx.deliveryCount };
          try {
            await def.handle(ctx);
            outcomes.push(base);
          } catch (err) {
            outcomes.push({ ...base, error: err instanceof Error ? err.name : String(err) });
            throw err;
          }
        },
        alreadyProcessed: async (
          envelope: Parameters<NonNullable<typeof def.alreadyProcessed>>[0],
          data: ProvisioningTaskMessage,
        ) => {
          const done = (await def.alreadyProcessed?.(envelope, data)) ?? false;
          if (done) acknowledged.push(envelope.id);
          return done;
        },
      },
    };
  }

  it("runs the external step once when a duplicate event overlaps, and acknowledges the duplicate once the task finished", async () => {
    // Lease corto para que el duplicado no espere mucho, pero no tanto como para vencer (y que el
    // duplicado tome la tarea) mientras la primera entrega confirma en una máquina cargada.
    const observed = observedWorker("lease-overlap-worker", 2_000);
    let worker: RunningWorker | undefined;
    const held = gate();
    gates.push(held);
    try {
      worker = await startWorker(observed.def, {
        bus,
        logger: silentLogger,
        concurrency: 2,
        ackWaitMs: 1_000,
      });
      const task = await newTask("lease-overlap");
      // La primera entrega está dentro del paso externo, bloqueada.
      await waitFor(async () => (callsFor(task.tenantInstanceId).length > 0 ? true : undefined));
      const duplicateId = await publishDuplicate(task.correlationId);
      const busy = await waitFor(async () =>
        observed.outcomes.find((o) => o.eventId === duplicateId),
      );
      // El duplicado esperó un lease, vio la tarea tomada y pidió reintento sin tocarla.
      expect(busy).toMatchObject({ delivery: 1, error: "TaskBusyError" });
      expect(callsFor(task.tenantInstanceId)).toHaveLength(1);
      const during = await taskRow(task.taskId);
      expect(during.status).toBe("running");
      expect(during.leaseUntil).not.toBeNull();

      held.open();
      await waitFor(async () => (observed.acknowledged.includes(duplicateId) ? true : undefined));
      expect(callsFor(task.tenantInstanceId)).toHaveLength(1);
      expect(observed.outcomes.filter((o) => o.eventId === duplicateId && !o.error)).toEqual([]);
      const after = await taskRow(task.taskId);
      expect(after).toMatchObject({ status: "succeeded", leaseUntil: null, lastError: null });
    } finally {
      held.open();
      await worker?.stop();
    }
  }, 30_000);

  it("lets a handler abandoned by the timeout lose its lease, and a later delivery take the task once it lapsed", async () => {
    const leaseMs = 1_500;
    const observed = observedWorker("lease-timeout-worker", leaseMs);
    let worker: RunningWorker | undefined;
    // La primera llamada al paso externo no responde nunca (hasta el final de la prueba).
    const hung = gate();
    gates.push(hung);
    try {
      worker = await startWorker(observed.def, {
        bus,
        logger: silentLogger,
        concurrency: 1,
        ackWaitMs: 1_000,
        handlerTimeoutMs: 1_200,
      });
      const task = await newTask("lease-timeout");
      const first = await waitFor(async () => observed.contexts[0]);
      let abortedAt = 0;
      first.signal.addEventListener("abort", () => {
        abortedAt = Date.now();
      });
      await waitFor(async () => (abortedAt > 0 ? true : undefined), { timeoutMs: 5_000 });
      // Abandonado, el handler deja de prorrogar: el lease no se mueve hasta vencer.
      await new Promise((r) => setTimeout(r, 100));
      const lapsesAt = (await taskRow(task.taskId)).leaseUntil;
      expect(lapsesAt).toBeInstanceOf(Date);
      await new Promise((r) => setTimeout(r, leaseMs / 3 + 100));
      expect((await taskRow(task.taskId)).leaseUntil).toEqual(lapsesAt);
      expect(callsFor(task.tenantInstanceId)).toHaveLength(1);

      const done = await waitFor(
        async () => {
          const row = await taskRow(task.taskId);
          return row.status === "succeeded" ? row : undefined;
        },
        { timeoutMs: 15_000 },
      );
      const [, second] = callsFor(task.tenantInstanceId);
      // La reentrega tomó la tarea solo cuando venció el lease del handler abandonado.
      expect(second?.at).toBeGreaterThanOrEqual(lapsesAt?.getTime() ?? Number.POSITIVE_INFINITY);
      expect(callsFor(task.tenantInstanceId)).toHaveLength(2);
      expect(done).toMatchObject({ leaseUntil: null, lastError: null });
      const [instance] = await db()
        .select({ status: tenantInstances.status })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, task.tenantInstanceId));
      expect(instance?.status).toBe("active");
    } finally {
      hung.fail(new Error("hung call released at the end of the test"));
      await worker?.stop();
    }
  }, 30_000);

  /**
   * Una ejecución viva de la tarea, detenida en su paso externo (tiene el lease), y el aviso de
   * que un duplicado de su mensaje agotó las entregas.
   */
  const liveRunAndDeadDuplicate = async (code: string, leaseMs: number) => {
    const def = provisioningWorker({ db: db(), bus, registry, failureRate: 0, leaseMs });
    const held = gate();
    gates.push(held);
    const task = await newTask(code);
    const data: ProvisioningTaskMessage = {
      taskId: task.taskId,
      tenantInstanceId: task.tenantInstanceId,
      kind: "provision",
    };
    const envelope = () => ({
      id: newId(),
      type: "provisioning.requested",
      occurredAt: new Date().toISOString(),
      correlationId: task.correlationId,
      data,
    });
    const running = def.handle({
      data,
      envelope: envelope(),
      subject: "provisioning.tasks.provision",
      deliveryCount: 1,
      logger: silentLogger,
      heartbeat: () => {},
      signal: new AbortController().signal,
    });
    await waitFor(async () => (callsFor(task.tenantInstanceId).length > 0 ? true : undefined));
    const deadDuplicate = {
      envelope: envelope(),
      subject: "provisioning.tasks.provision",
      streamSequence: 1,
      deliveries: 5,
      error: "provisioning task is running in another delivery",
      permanent: false,
    };
    const finish = async () => {
      held.open();
      await running;
    };
    return { def, task, data, deadDuplicate, finish };
  };

  it("stops waiting for a held lease when the runtime abandons the dead-letter hook", async () => {
    // Un lease largo: sin la señal, el hook esperaría a que venza (hasta WORKER_ACK_WAIT_MS).
    const run = await liveRunAndDeadDuplicate("lease-dlq-abort", 60_000);
    try {
      // El runtime deja de esperar el hook (plazo de drenado): el hook corta su espera y lanza.
      const abandon = new AbortController();
      const hook = run.def.onDeadLetter?.(run.deadDuplicate, run.data, abandon.signal);
      setTimeout(() => abandon.abort(new Error("drain deadline")), 200);
      // Por la señal, no por otra cosa (p. ej. un fallo de la base).
      await expect(hook).rejects.toMatchObject({ name: "AbortError" });
      expect(await taskRow(run.task.taskId)).toMatchObject({ status: "running", finishedAt: null });
    } finally {
      await run.finish();
    }
  });

  it("does not dead-letter a task whose lease another live run holds when only a duplicate message died", async () => {
    const run = await liveRunAndDeadDuplicate("lease-dlq", 600);
    try {
      // Un duplicado agotó sus entregas mientras la primera ejecución sigue viva.
      await run.def.onDeadLetter?.(run.deadDuplicate, run.data);
      expect(await taskRow(run.task.taskId)).toMatchObject({ status: "running", finishedAt: null });
      const [instance] = await db()
        .select({ status: tenantInstances.status })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, run.task.tenantInstanceId));
      expect(instance?.status).toBe("provisioning");
    } finally {
      await run.finish();
    }
    expect((await taskRow(run.task.taskId)).status).toBe("succeeded");
  }, 30_000);

  it("keeps the stored Enterprise connection string valid when an abandoned run reaches ALTER ROLE late", async () => {
    const real = createPostgresDedicated(database.url ?? "");
    const box = await createSecretBox(JSON.stringify([generateEncryptionKey("lease")]));
    // La primera ejecución se queda colgada justo antes de tocar el rol (conexión lenta, GC…).
    const held = gate();
    let creates = 0;
    const dedicated = wrapDedicated(real, {
      create: async (code, password, fence) => {
        creates += 1;
        if (creates === 1) await held.promise;
        return real.create(code, password, fence);
      },
    });
    const { run, runToTheEnd } = enterpriseRunner(dedicated, box);
    const task = await newTask("lease-enterprise", { databaseTier: "enterprise" });
    const data: ProvisioningTaskMessage = {
      taskId: task.taskId,
      tenantInstanceId: task.tenantInstanceId,
      kind: "provision",
    };
    try {
      const timedOut = new AbortController();
      const abandoned = run(data, 1, timedOut.signal).then(
        () => undefined,
        (err: unknown) => err,
      );
      await waitFor(async () => (creates > 0 ? true : undefined));
      // El runtime abandona el handler por timeout: deja de prorrogar y otra entrega lo reemplaza.
      timedOut.abort();
      await runToTheEnd(data);
      expect((await taskRow(task.taskId)).status).toBe("succeeded");

      // La ejecución abandonada llega tarde al ALTER ROLE y después ve que perdió el lease.
      held.open();
      expect(await abandoned).toMatchObject({ name: "TaskLeaseLostError" });
      expect(creates).toBe(2);

      // La contraseña de la cadena guardada es la que el rol acepta.
      expect(await storedConnectionLogsIn(box, task.tenantInstanceId)).toBe(true);
    } finally {
      held.open();
      await real.drop(task.tenantInstanceId).catch(() => {});
      await real.close();
    }
  }, 30_000);

  it("does not put an older rotation's password back on the role when its abandoned run reaches ALTER ROLE after a newer rotation", async () => {
    const real = createPostgresDedicated(database.url ?? "");
    const box = await createSecretBox(JSON.stringify([generateEncryptionKey("rotation")]));
    // La primera rotación se queda colgada justo después de su última comprobación del lease y
    // antes de que el ALTER ROLE llegue al servidor (conexión lenta, GC…).
    const held = gate();
    let passwordsSet = 0;
    const dedicated = wrapDedicated(real, {
      setPassword: async (id, password, fence) => {
        passwordsSet += 1;
        if (passwordsSet === 1) await held.promise;
        return real.setPassword(id, password, fence);
      },
    });
    const { run, runToTheEnd } = enterpriseRunner(dedicated, box);
    const rotation = async () => {
      // Cada pedido con su correlación: con la misma sería el mismo pedido (idempotencia).
      const { response } = await requestCredentialRotation(
        serviceContext(newId()),
        task.tenantInstanceId,
      );
      const data: ProvisioningTaskMessage = {
        taskId: response.taskId,
        tenantInstanceId: task.tenantInstanceId,
        kind: "rotate_credentials",
      };
      return data;
    };
    const task = await newTask("lease-rotation", { databaseTier: "enterprise" });
    try {
      await runToTheEnd({
        taskId: task.taskId,
        tenantInstanceId: task.tenantInstanceId,
        kind: "provision",
      });
      const first = await rotation();
      const timedOut = new AbortController();
      const abandoned = run(first, 1, timedOut.signal).then(
        () => undefined,
        (err: unknown) => err,
      );
      await waitFor(async () => (passwordsSet > 0 ? true : undefined));
      // El runtime abandona el handler por timeout; otra entrega termina la primera rotación y
      // después un operador pide otra, que también termina.
      timedOut.abort();
      await runToTheEnd(first);
      expect((await taskRow(first.taskId)).status).toBe("succeeded");
      const second = await rotation();
      await runToTheEnd(second);
      expect((await taskRow(second.taskId)).status).toBe("succeeded");

      // Ahora la primera ejecución llega a su ALTER ROLE: no debe poner su contraseña.
      held.open();
      expect(await abandoned).toMatchObject({ name: "TaskLeaseLostError" });
      expect(passwordsSet).toBe(3);
      expect(await storedConnectionLogsIn(box, task.tenantInstanceId)).toBe(true);
    } finally {
      held.open();
      await real.drop(task.tenantInstanceId).catch(() => {});
      await real.close();
    }
  }, 30_000);

  it("does not commit a transactional step, nor finish the task, once another run took the lease", async () => {
    const observed = observedWorker("lease-fence-worker", 5_000);
    let worker: RunningWorker | undefined;
    // Otra ejecución toma la tarea justo cuando esta marca hecho su paso externo: lo simula un
    // trigger que cambia el lease_until en esa misma sentencia.
    await db().execute(sql`
      create or replace function test_steal_lease() returns trigger language plpgsql as $$
      begin
        if NEW.status = 'succeeded' and NEW.name = 'register_tenant' then
          update provisioning_tasks set lease_until = now() + interval '1 hour' where id = NEW.task_id;
        end if;
        return null;
      end $$`);
    await db().execute(sql`
      create trigger test_steal_lease after update on provisioning_task_steps
      for each row execute function test_steal_lease()`);
    let taskId = "";
    try {
      worker = await startWorker(observed.def, { bus, logger: silentLogger, concurrency: 1 });
      const task = await newTask("lease-fence");
      taskId = task.taskId;
      const lost = await waitFor(async () => observed.outcomes.find((o) => o.error));
      expect(lost.error).toBe("TaskLeaseLostError");
      await worker.stop({ drainTimeoutMs: 1_000 });
      worker = undefined;
      // Ni la activación ni la bienvenida de esta ejecución se confirmaron; la tarea sigue en
      // manos de la otra.
      const [instance] = await db()
        .select({ status: tenantInstances.status })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, task.tenantInstanceId));
      expect(instance?.status).toBe("provisioning");
      const welcome = await db()
        .select()
        .from(outboxEvents)
        .where(
          and(
            eq(outboxEvents.correlationId, task.correlationId),
            eq(outboxEvents.type, "notification.welcome_requested"),
          ),
        );
      expect(welcome).toEqual([]);
      expect((await taskRow(task.taskId)).status).toBe("running");
    } finally {
      await worker?.stop({ drainTimeoutMs: 1_000 });
      await db().execute(sql`drop trigger if exists test_steal_lease on provisioning_task_steps`);
      // Que ninguna prueba posterior espere a la tarea robada.
      if (taskId) {
        await db()
          .update(provisioningTasks)
          .set({ status: "dead_lettered", leaseUntil: null })
          .where(eq(provisioningTasks.id, taskId));
      }
    }
  }, 30_000);
});
