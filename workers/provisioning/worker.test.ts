import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProvisioningTaskMessage } from "../../contracts/events";
import type { Bus } from "../../core/bus";
import { type BusProvider, createBusProvider } from "../../core/bus-provider";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createSecretBox, generateEncryptionKey } from "../../core/secret-box";
import {
  outboxEvents,
  provisioningTaskSteps,
  provisioningTasks,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionRequestSchema } from "../../functions/routes/provisioning/schema";
import { requestFeatureUpdate } from "../../functions/services/deprovisioning";
import { provisionTenant } from "../../functions/services/provisioning";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { demoProvisionBody } from "../../test/support/demo";
import { captureLogs } from "../../test/support/logs";
import { startBrokerForTest, type startNatsForTest } from "../../test/support/stack";
import type { HandlerContext } from "../runtime/consumer";
import { PermanentError } from "../runtime/errors";
import { createPgliteDedicated } from "./dedicated-databases";
import { createPostgresRegistry } from "./shared-registry";
import { provisioningWorker } from "./worker";

// El handler del ProvisioningWorker llamado directamente (sin consumer), contra Postgres y un
// nats-server reales: lo que decide al empezar una entrega y cuántos viajes a la base cuesta.
describe("provisioning worker handler", () => {
  let database: TestDatabase;
  let nats: Awaited<ReturnType<typeof startNatsForTest>>;
  let bus: Bus;
  let provider: BusProvider;
  const queries: string[] = [];

  beforeAll(async () => {
    database = await createPostgresTestDatabase((q) => queries.push(q));
    await seedDemo(database.handle.db);
    ({ nats, bus } = await startBrokerForTest("worker-handler-test"));
    provider = createBusProvider(
      { servers: nats.url, name: "worker-handler-test-fn" },
      silentLogger,
    );
  });
  afterAll(async () => {
    await provider?.close();
    await bus?.close();
    await nats?.dispose();
    await database?.drop();
  });

  const db = () => database.handle.db;
  const worker = (failureRate = 0) =>
    provisioningWorker({
      db: db(),
      bus,
      registry: createPostgresRegistry(database.url ?? ""),
      failureRate,
      random: () => 0,
    });

  const serviceContext = () => ({
    db: db(),
    bus: provider,
    logger: silentLogger,
    actor: "test",
    correlationId: newId(),
    baseDomain: "test.local",
  });

  async function newTask(code: string) {
    const base = await demoProvisionBody(db(), code);
    const body = provisionRequestSchema.parse({ ...base, instanceCode: code });
    const { response } = await provisionTenant(serviceContext(), body);
    return response;
  }

  function delivery(data: ProvisioningTaskMessage, deliveryCount = 1) {
    return {
      data,
      envelope: {
        id: newId(),
        type: "provisioning.requested",
        occurredAt: new Date().toISOString(),
        correlationId: null,
        data,
      },
      subject: `provisioning.tasks.${data.kind}`,
      deliveryCount,
      logger: silentLogger,
      heartbeat: () => {},
      signal: new AbortController().signal,
    } satisfies HandlerContext<ProvisioningTaskMessage>;
  }

  it("provisions a standard tenant in a fixed number of statements, one of them to start", async () => {
    const task = await newTask("handler-ok");
    queries.length = 0;
    await worker().handle(
      delivery(
        { taskId: task.taskId, tenantInstanceId: task.tenantInstanceId, kind: "provision" },
        2,
      ),
    );
    const handled = [...queries];
    const [row] = await db()
      .select()
      .from(provisioningTasks)
      .where(eq(provisioningTasks.id, task.taskId));
    expect(row).toMatchObject({ status: "succeeded", attempts: 2 });
    const [instance] = await db()
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, task.tenantInstanceId));
    expect(instance?.status).toBe("active");
    // Lo que irá al broker lleva solo ids: nada derivado del nombre legal (tenantCode, subdominio).
    const welcome = (await db().select().from(outboxEvents)).filter(
      (e) => e.type === "notification.welcome_requested",
    );
    const mine = welcome.map((e) => (e.payload as { data: Record<string, unknown> }).data);
    expect(mine.filter((d) => d.tenantInstanceId === task.tenantInstanceId)).toEqual([
      { tenantInstanceId: task.tenantInstanceId, customerId: expect.any(String) },
    ]);
    // Marcar la tarea, leer la instancia y los pasos hechos: una sola sentencia.
    const starts = handled.filter((q) =>
      /^with "started" as \(update "provisioning_tasks"/.test(q),
    );
    expect(starts).toHaveLength(1);
    expect(handled.filter((q) => /"provisioning_task_steps"/.test(q) && /^select/.test(q))).toEqual(
      [],
    );
    // Sin contar el registro en la base compartida del producto (otro pool): inicio, 2 marcas del
    // paso externo, begin, el bloqueo del lease, el de la suscripción (antes que la instancia: el
    // orden de la API), 1 lectura y 2 escrituras de los pasos transaccionales, commit y la marca
    // del outbox publicado. Antes eran 13.
    expect(handled.length).toBeLessThanOrEqual(11);
  });

  it("asks whether a task is finished only on redeliveries; a first delivery of a finished task is acknowledged by the handler", async () => {
    const task = await newTask("handler-seen");
    const data = {
      taskId: task.taskId,
      tenantInstanceId: task.tenantInstanceId,
      kind: "provision" as const,
    };
    const def = worker();
    await def.handle(delivery(data));
    const envelope = delivery(data).envelope;
    queries.length = 0;
    expect(await def.alreadyProcessed?.(envelope, data, 1)).toBe(false);
    expect(queries).toEqual([]);
    expect(await def.alreadyProcessed?.(envelope, data, 2)).toBe(true);
    // El mismo evento publicado otra vez llega como primera entrega: la toma ve la tarea
    // terminada y el handler vuelve sin repetir pasos.
    queries.length = 0;
    await def.handle(delivery(data));
    expect(queries.filter((q) => /^(insert|update)/.test(q))).toEqual([]);
  });

  it("skips steps already completed by an earlier delivery", async () => {
    const task = await newTask("handler-resume");
    // Una entrega anterior completó el paso externo; con failureRate 1 fallaría si se repitiera.
    await db().insert(provisioningTaskSteps).values({
      taskId: task.taskId,
      name: "register_tenant",
      position: 0,
      status: "succeeded",
      attempts: 1,
      finishedAt: new Date(),
    });
    await worker(1).handle(
      delivery({ taskId: task.taskId, tenantInstanceId: task.tenantInstanceId, kind: "provision" }),
    );
    const steps = await db()
      .select({ name: provisioningTaskSteps.name, attempts: provisioningTaskSteps.attempts })
      .from(provisioningTaskSteps)
      .where(eq(provisioningTaskSteps.taskId, task.taskId))
      .orderBy(provisioningTaskSteps.position);
    expect(steps).toEqual([
      { name: "register_tenant", attempts: 1 },
      { name: "activate", attempts: 1 },
      { name: "request_welcome_notification", attempts: 1 },
    ]);
  });

  it("injects PROVISIONING_FAILURE_RATE into the Enterprise tier's external step too", async () => {
    const body = provisionRequestSchema.parse(
      await demoProvisionBody(db(), "handler-ent-fail", { databaseTier: "enterprise" }),
    );
    const { response: task } = await provisionTenant(serviceContext(), body);
    const dir = mkdtempSync(join(tmpdir(), "farutech-ent-fail-"));
    try {
      const failing = provisioningWorker({
        db: db(),
        bus,
        registry: createPostgresRegistry(database.url ?? ""),
        failureRate: 1,
        random: () => 0,
        dedicated: createPgliteDedicated(dir),
        secretBox: await createSecretBox(JSON.stringify([generateEncryptionKey("k1")])),
      });
      const data = {
        taskId: task.taskId,
        tenantInstanceId: task.tenantInstanceId,
        kind: "provision" as const,
      };
      // Transitorio (no PermanentError): el runtime lo reintenta con su política.
      const { logger, lines } = captureLogs("enterprise-failure");
      const failure = await failing
        .handle({ ...delivery(data), logger })
        .catch((err: unknown) => err);
      // Operaciones ve qué paso falló sin consultar la tabla de pasos.
      expect(lines).toContainEqual(
        expect.objectContaining({
          msg: "provisioning step failed",
          step: "create_database",
          error: expect.stringContaining("simulated transient failure"),
        }),
      );
      expect(failure).toBeInstanceOf(Error);
      expect(failure).not.toBeInstanceOf(PermanentError);
      expect((failure as Error).message).toContain("simulated transient failure");
      // Falló antes de tocar nada: sin base propia y sin cadena de conexión guardada.
      expect(readdirSync(dir)).toEqual([]);
      const [instance] = await db()
        .select({ sealed: tenantInstances.connectionStringEncrypted })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, task.tenantInstanceId));
      expect(instance?.sealed).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects as permanent an unknown task and a message that does not match its task", async () => {
    const task = await newTask("handler-mismatch");
    await expect(
      worker().handle(
        delivery({ taskId: newId(), tenantInstanceId: task.tenantInstanceId, kind: "provision" }),
      ),
    ).rejects.toThrow(PermanentError);
    await expect(
      worker().handle(
        delivery({ taskId: task.taskId, tenantInstanceId: newId(), kind: "provision" }),
      ),
    ).rejects.toThrow(/does not match provisioning task/);
    await expect(
      worker().handle(
        delivery({
          taskId: task.taskId,
          tenantInstanceId: task.tenantInstanceId,
          kind: "deprovision",
        }),
      ),
    ).rejects.toThrow(PermanentError);
  });

  it("keeps the newest feature request when the worker applies two of them out of order", async () => {
    const task = await newTask("handler-order");
    const id = task.tenantInstanceId;
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    const older = await requestFeatureUpdate(serviceContext(), id, {
      max_users: 100,
      storage_gb: 5,
    });
    // created_at tiene milisegundos: el segundo pedido es estrictamente posterior.
    await new Promise((r) => setTimeout(r, 5));
    const newer = await requestFeatureUpdate(serviceContext(), id, { max_users: 200 });
    const apply = (taskId: string) =>
      worker().handle(delivery({ taskId, tenantInstanceId: id, kind: "update_features" }));
    // El más nuevo llega primero (otro proceso, o el viejo estaba reintentando).
    await apply(newer.response.taskId);
    await apply(older.response.taskId);

    const rows = await db()
      .select({
        limitName: subscriptionFeatureOverrides.limitName,
        value: subscriptionFeatureOverrides.value,
      })
      .from(subscriptionFeatureOverrides)
      .innerJoin(subscriptions, eq(subscriptions.id, subscriptionFeatureOverrides.subscriptionId))
      .where(eq(subscriptions.tenantInstanceId, id))
      .orderBy(subscriptionFeatureOverrides.limitName);
    // max_users: el pedido más nuevo; storage_gb: solo el viejo lo nombra, así que se aplica.
    expect(rows).toEqual([
      { limitName: "max_users", value: 200 },
      { limitName: "storage_gb", value: 5 },
    ]);
    const statuses = await db()
      .select({ status: provisioningTasks.status })
      .from(provisioningTasks)
      .where(eq(provisioningTasks.tenantInstanceId, id));
    expect(statuses.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
  });

  // Sin pausa entre pedidos: la instancia bloqueada los pone en fila y cada sello va al menos 1 ms
  // después del anterior (created_at se lee en milisegundos: un empate dejaría ganar al último
  // que el worker aplique, no al último aceptado).
  it("stamps concurrent feature updates apart in acceptance order; applied in reverse, the last accepted wins", async () => {
    const task = await newTask("handler-concurrent-order");
    const id = task.tenantInstanceId;
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    const values = Array.from({ length: 8 }, (_, i) => 100 + i);
    await Promise.all(
      values.map((value) => requestFeatureUpdate(serviceContext(), id, { max_users: value })),
    );
    const tasks = await db()
      .select({
        id: provisioningTasks.id,
        createdAt: provisioningTasks.createdAt,
        payload: provisioningTasks.payload,
      })
      .from(provisioningTasks)
      .where(
        and(
          eq(provisioningTasks.tenantInstanceId, id),
          eq(provisioningTasks.kind, "update_features"),
        ),
      )
      .orderBy(provisioningTasks.createdAt);
    expect(tasks).toHaveLength(values.length);
    expect(new Set(tasks.map((t) => t.createdAt.getTime())).size).toBe(values.length);
    for (const t of [...tasks].reverse()) {
      await worker().handle(
        delivery({ taskId: t.id, tenantInstanceId: id, kind: "update_features" }),
      );
    }
    const lastAccepted = tasks.at(-1)?.payload as { features: { max_users: number } };
    const [row] = await db()
      .select({ value: subscriptionFeatureOverrides.value })
      .from(subscriptionFeatureOverrides)
      .innerJoin(subscriptions, eq(subscriptions.id, subscriptionFeatureOverrides.subscriptionId))
      .where(
        and(
          eq(subscriptions.tenantInstanceId, id),
          eq(subscriptionFeatureOverrides.limitName, "max_users"),
        ),
      );
    expect(row?.value).toBe(lastAccepted.features.max_users);
  });
});
