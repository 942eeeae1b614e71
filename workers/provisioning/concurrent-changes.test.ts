import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProvisioningTaskMessage } from "../../contracts/events";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { createDeadLetterStore } from "../../db/dead-letters";
import {
  auditLog,
  customers,
  dlqEntries,
  provisioningTasks,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionRequestSchema } from "../../functions/routes/provisioning/schema";
import { softDeleteWithin } from "../../functions/services/customers";
import { requestDeprovision, requestFeatureUpdate } from "../../functions/services/deprovisioning";
import { replayDeadLetter } from "../../functions/services/dlq";
import { removeOverride } from "../../functions/services/overrides";
import { provisionTenant } from "../../functions/services/provisioning";
import { loadSubscription } from "../../functions/services/subscriptions";
import { assertInstanceLive } from "../../functions/services/tenant-instances";
import { offlineBus } from "../../test/support/admin";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { demoProvisionBody } from "../../test/support/demo";
import { lockWaiters } from "../../test/support/lock-waiters";
import { startBrokerForTest, type startNatsForTest } from "../../test/support/stack";
import type { HandlerContext } from "../runtime/consumer";
import { createPostgresRegistry, type SharedTenantRegistry } from "./shared-registry";
import { provisioningWorker } from "./worker";

// El worker frente a cambios de la API que llegan mientras trabaja: un borrado de cliente, un
// PUT de features, una baja. Handler llamado directamente (sin consumer), contra Postgres y un
// nats-server reales.
describe("provisioning worker and concurrent admin changes", () => {
  let database: TestDatabase;
  let registry: SharedTenantRegistry;
  let nats: Awaited<ReturnType<typeof startNatsForTest>>;
  let bus: Bus;

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    await seedDemo(database.handle.db);
    registry = createPostgresRegistry(database.url ?? "");
    ({ nats, bus } = await startBrokerForTest("concurrent-changes-test"));
  });
  afterAll(async () => {
    await registry?.close();
    await bus?.close();
    await nats?.dispose();
    await database?.drop();
  });

  const db = () => database.handle.db;
  const worker = () =>
    provisioningWorker({ db: db(), bus, registry, failureRate: 0, random: () => 1 });
  const service = () => ({
    db: db(),
    bus: offlineBus,
    logger: silentLogger,
    actor: "test",
    correlationId: newId(),
    baseDomain: "test.local",
  });
  async function newTask(code: string) {
    const body = provisionRequestSchema.parse({
      ...(await demoProvisionBody(db(), code)),
      instanceCode: code,
    });
    return (await provisionTenant(service(), body)).response;
  }
  function delivery(data: ProvisioningTaskMessage) {
    return {
      data,
      envelope: {
        id: newId(),
        type: `provisioning.${data.kind}_requested`,
        occurredAt: new Date().toISOString(),
        correlationId: null,
        data,
      },
      subject: `provisioning.tasks.${data.kind}`,
      deliveryCount: 1,
      logger: silentLogger,
      heartbeat: () => {},
      signal: new AbortController().signal,
    } satisfies HandlerContext<ProvisioningTaskMessage>;
  }
  /** Lo que hace el runtime con un mensaje muerto: avisa al worker y guarda la entrada. */
  async function deadLetter(data: ProvisioningTaskMessage): Promise<string> {
    const envelope = {
      id: newId(),
      type: `provisioning.${data.kind}_requested`,
      occurredAt: new Date().toISOString(),
      correlationId: null,
      data,
    };
    const error = "overrides no longer match the catalog (23503)";
    const subject = `provisioning.tasks.${data.kind}`;
    await worker().onDeadLetter?.(
      { envelope, subject, streamSequence: 1, deliveries: 5, error, permanent: true },
      data,
    );
    await createDeadLetterStore(db()).record({
      domain: "provisioning",
      stream: "PROVISIONING",
      streamSequence: 1,
      messageKey: envelope.id,
      subject,
      eventId: envelope.id,
      eventType: envelope.type,
      correlationId: null,
      envelope,
      rawPayload: JSON.stringify(envelope),
      error,
      errorKind: "permanent",
      deliveries: 5,
    });
    const [entry] = await db().select().from(dlqEntries).where(eq(dlqEntries.eventId, envelope.id));
    return entry?.id ?? "";
  }

  /**
   * PATCH /api/subscriptions/{id} bloquea la suscripción y luego la instancia; el worker arranca
   * entre los dos pasos. Sin el mismo orden de bloqueo, Postgres aborta uno por deadlock.
   */
  async function raceSubscriptionPatch(tenantInstanceId: string, work: () => Promise<void>) {
    const [subscription] = await db()
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(eq(subscriptions.tenantInstanceId, tenantInstanceId));
    let handled: Promise<unknown> | undefined;
    const admin = await db()
      .transaction(async (tx) => {
        expect(
          await loadSubscription(tx, subscription?.id ?? "", { forUpdate: true }),
        ).toBeDefined();
        handled = work().then(
          () => "ok",
          (err: unknown) => err,
        );
        expect(await lockWaiters(database.url)).toBeGreaterThan(0);
        await assertInstanceLive(tx, tenantInstanceId, "its subscription cannot change");
        return "ok";
      })
      .catch((err: unknown) => err);
    return { admin, worker: await handled };
  }

  async function state(tenantInstanceId: string) {
    const [row] = await db()
      .select({ instance: tenantInstances.status, subscription: subscriptions.status })
      .from(tenantInstances)
      .innerJoin(subscriptions, eq(subscriptions.tenantInstanceId, tenantInstances.id))
      .where(eq(tenantInstances.id, tenantInstanceId));
    return row;
  }
  async function taskStatus(taskId: string) {
    const [row] = await db()
      .select({ status: provisioningTasks.status })
      .from(provisioningTasks)
      .where(eq(provisioningTasks.id, taskId));
    return row?.status;
  }

  it("a dead-lettered feature update leaves a provisioning instance alone, and its replay too", async () => {
    const task = await newTask("dlq-features");
    const id = task.tenantInstanceId;
    const update = await requestFeatureUpdate(service(), id, { max_users: 50 });
    const entry = await deadLetter({
      taskId: update.response.taskId,
      tenantInstanceId: id,
      kind: "update_features",
    });
    expect(await taskStatus(update.response.taskId)).toBe("dead_lettered");
    expect(await state(id)).toEqual({ instance: "provisioning", subscription: "pending" });

    // La provisión sigue y termina: la instancia queda activa.
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    expect(await state(id)).toEqual({ instance: "active", subscription: "active" });
    await replayDeadLetter(service(), entry);
    expect(await taskStatus(update.response.taskId)).toBe("queued");
    expect(await state(id)).toEqual({ instance: "active", subscription: "active" });
  });

  it("replaying a feature update leaves a failed instance failed; replaying its provision resumes it", async () => {
    const task = await newTask("dlq-both");
    const id = task.tenantInstanceId;
    const update = await requestFeatureUpdate(service(), id, { max_users: 60 });
    const provisionEntry = await deadLetter({
      taskId: task.taskId,
      tenantInstanceId: id,
      kind: "provision",
    });
    const updateEntry = await deadLetter({
      taskId: update.response.taskId,
      tenantInstanceId: id,
      kind: "update_features",
    });
    expect(await state(id)).toEqual({ instance: "failed", subscription: "pending" });
    // Sin tarea de provisión en cola, nadie sacaría la instancia de provisioning.
    await replayDeadLetter(service(), updateEntry);
    expect(await state(id)).toEqual({ instance: "failed", subscription: "pending" });
    await replayDeadLetter(service(), provisionEntry);
    expect(await taskStatus(task.taskId)).toBe("queued");
    expect(await state(id)).toEqual({ instance: "provisioning", subscription: "pending" });
  });

  it("refuses a replay whose instance is decommissioned while the replay waits for its lock", async () => {
    const task = await newTask("replay-vs-decommission");
    const id = task.tenantInstanceId;
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    const update = await requestFeatureUpdate(service(), id, { max_users: 40 });
    const entry = await deadLetter({
      taskId: update.response.taskId,
      tenantInstanceId: id,
      kind: "update_features",
    });
    // Otra transacción tiene la instancia bloqueada y la deja dada de baja, como una baja que
    // termina justo cuando el replay ya leyó la instancia y espera su bloqueo.
    let replayed: Promise<unknown> | undefined;
    await db().transaction(async (tx) => {
      await tx
        .select({ id: tenantInstances.id })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, id))
        .for("update");
      replayed = replayDeadLetter(service(), entry).then(
        () => "replayed",
        (err: unknown) => err,
      );
      expect(await lockWaiters(database.url)).toBeGreaterThan(0);
      await tx
        .update(tenantInstances)
        .set({ status: "decommissioned" })
        .where(eq(tenantInstances.id, id));
    });
    expect(await replayed).toMatchObject({
      code: "conflict",
      message: expect.stringContaining("decommissioned"),
    });
    expect(await taskStatus(update.response.taskId)).toBe("dead_lettered");
  });

  async function overridesOf(tenantInstanceId: string) {
    const [sub] = await db()
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(eq(subscriptions.tenantInstanceId, tenantInstanceId));
    if (!sub) throw new Error("instance without subscription");
    const rows = await db()
      .select()
      .from(subscriptionFeatureOverrides)
      .where(eq(subscriptionFeatureOverrides.subscriptionId, sub.id));
    return { subscriptionId: sub.id, rows };
  }

  it("refuses to replay a feature update that would bring back an override removed after it", async () => {
    const task = await newTask("replay-after-removal");
    const id = task.tenantInstanceId;
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    const first = await requestFeatureUpdate(service(), id, {
      max_users: 20,
      ADVANCED_REPORTS: true,
    });
    await worker().handle(
      delivery({ taskId: first.response.taskId, tenantInstanceId: id, kind: "update_features" }),
    );
    // Un PUT posterior muere; después el operador borra el override de max_users (ya no hay
    // tarea en curso que lo impida).
    const stale = await requestFeatureUpdate(service(), id, { max_users: 50 });
    const message = {
      taskId: stale.response.taskId,
      tenantInstanceId: id,
      kind: "update_features" as const,
    };
    const entry = await deadLetter(message);
    const { subscriptionId, rows } = await overridesOf(id);
    const maxUsers = rows.find((r) => r.limitName === "max_users");
    if (!maxUsers) throw new Error("max_users override missing");
    await removeOverride(service(), subscriptionId, maxUsers.id, undefined);

    await expect(replayDeadLetter(service(), entry)).rejects.toMatchObject({
      code: "conflict",
      message: expect.stringContaining("max_users"),
    });
    expect(await taskStatus(stale.response.taskId)).toBe("dead_lettered");
    const [unreplayed] = await db().select().from(dlqEntries).where(eq(dlqEntries.id, entry));
    expect(unreplayed?.replayedAt).toBeNull();
    expect((await overridesOf(id)).rows.map((r) => r.featureCode ?? r.limitName)).toEqual([
      "ADVANCED_REPORTS",
    ]);

    // Borrar otro override (no uno que la tarea toca) no impide reprocesarla.
    const other = await requestFeatureUpdate(service(), id, { max_users: 70 });
    const otherEntry = await deadLetter({ ...message, taskId: other.response.taskId });
    const reports = (await overridesOf(id)).rows.find((r) => r.featureCode === "ADVANCED_REPORTS");
    if (!reports) throw new Error("ADVANCED_REPORTS override missing");
    await removeOverride(service(), subscriptionId, reports.id, undefined);
    await replayDeadLetter(service(), otherEntry);
    expect(await taskStatus(other.response.taskId)).toBe("queued");
  });

  it("does not apply a feature update accepted before a deprovision that finished first", async () => {
    const task = await newTask("features-then-delete");
    const id = task.tenantInstanceId;
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    const update = await requestFeatureUpdate(service(), id, { max_users: 77 });
    const removal = await requestDeprovision(service(), id, { purge: false }, undefined);
    await worker().handle(
      delivery({ taskId: removal.response.taskId, tenantInstanceId: id, kind: "deprovision" }),
    );
    await worker().handle(
      delivery({ taskId: update.response.taskId, tenantInstanceId: id, kind: "update_features" }),
    );
    expect(await taskStatus(update.response.taskId)).toBe("succeeded");
    expect(await state(id)).toEqual({ instance: "decommissioned", subscription: "cancelled" });
    const [subscription] = await db()
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(eq(subscriptions.tenantInstanceId, id));
    const overrides = await db()
      .select({ limitName: subscriptionFeatureOverrides.limitName })
      .from(subscriptionFeatureOverrides)
      .where(eq(subscriptionFeatureOverrides.subscriptionId, subscription?.id ?? ""));
    expect(overrides).toEqual([]);
    const skipped = await db()
      .select({ after: auditLog.after })
      .from(auditLog)
      .where(
        and(
          eq(auditLog.entityId, id),
          eq(auditLog.action, "tenant_instance.features_update_skipped"),
        ),
      );
    expect(skipped).toEqual([
      { after: { taskId: update.response.taskId, reason: "instance decommissioned" } },
    ]);
  });
  it("applies a feature update while the subscription is being patched, without a deadlock", async () => {
    const task = await newTask("lock-order-features");
    const id = task.tenantInstanceId;
    await worker().handle(
      delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
    );
    const update = await requestFeatureUpdate(service(), id, { max_users: 50 });
    const outcome = await raceSubscriptionPatch(id, () =>
      worker().handle(
        delivery({ taskId: update.response.taskId, tenantInstanceId: id, kind: "update_features" }),
      ),
    );
    expect(outcome).toEqual({ admin: "ok", worker: "ok" });
    expect(await taskStatus(update.response.taskId)).toBe("succeeded");
  });

  it("activates while the subscription is being patched, without a deadlock", async () => {
    const task = await newTask("lock-order-activate");
    const id = task.tenantInstanceId;
    const outcome = await raceSubscriptionPatch(id, () =>
      worker().handle(delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" })),
    );
    expect(outcome).toEqual({ admin: "ok", worker: "ok" });
    expect(await state(id)).toEqual({ instance: "active", subscription: "active" });
  });

  // El último: borra el cliente de la demo que usan los demás.
  it("does not activate an instance whose customer is deleted while the worker activates it", async () => {
    const task = await newTask("race-delete");
    const id = task.tenantInstanceId;
    const [instance] = await db().select().from(tenantInstances).where(eq(tenantInstances.id, id));
    let handled: Promise<void> | undefined;
    // DELETE /api/customers/{id}: suspende sus instancias en una transacción que sigue abierta
    // mientras el worker llega a `activate` y espera su bloqueo.
    await db().transaction(async (tx) => {
      const [customer] = await tx
        .select()
        .from(customers)
        .where(eq(customers.id, instance?.customerId ?? ""))
        .for("update");
      if (!customer) throw new Error("customer not found");
      expect((await softDeleteWithin(tx, customer)).suspendedInstanceIds).toContain(id);
      handled = worker().handle(
        delivery({ taskId: task.taskId, tenantInstanceId: id, kind: "provision" }),
      );
      expect(await lockWaiters(database.url)).toBeGreaterThan(0);
    });
    await handled;
    expect(await taskStatus(task.taskId)).toBe("succeeded");
    expect(await state(id)).toEqual({ instance: "suspended", subscription: "pending" });
    const skipped = await db()
      .select({ action: auditLog.action })
      .from(auditLog)
      .where(
        and(eq(auditLog.entityId, id), eq(auditLog.action, "tenant_instance.activation_skipped")),
      );
    expect(skipped).toHaveLength(1);
  });
});
