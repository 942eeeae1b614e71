import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import { silentLogger } from "../../../core/logger";
import {
  auditLog,
  dlqEntries,
  outboxEvents,
  provisioningTasks,
  tenantInstances,
} from "../../../db/schema";
import { type AdminHarness, offlineBus, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { replayDeadLetter } from "../../services/dlq";
import { insertInstance, newCustomer } from "../subscriptions/test-fixtures";

type Kind = "provision" | "deprovision" | "update_features";

// Reglas del replay sobre la base real (sin broker: el mensaje nuevo queda en el outbox).
describe.each(["postgres", "pglite"] as const)("DLQ replay on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let customerId: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    customerId = (await newCustomer(h, admin)).id;
  });
  afterAll(async () => h?.stop());

  /** Una tarea muerta en la DLQ, como la deja el worker tras el último intento. */
  async function deadTask(
    taskKind: Kind,
    instanceStatus: "failed" | "decommissioned",
    task: { status: "dead_lettered" | "queued" | "running"; leaseUntil?: Date } = {
      status: "dead_lettered",
    },
  ) {
    const db = h.db.handle.db;
    const instanceId = await insertInstance(db, {
      customerId,
      productCode: "FARUTECH_VET",
      status: instanceStatus,
    });
    const taskId = newId();
    const correlationId = `dlq-${taskId}`;
    await db.insert(provisioningTasks).values({
      id: taskId,
      tenantInstanceId: instanceId,
      kind: taskKind,
      status: task.status,
      leaseUntil: task.leaseUntil ?? null,
      correlationId,
      requestHash: "x",
      response: {},
      attempts: 5,
    });
    const envelope = {
      id: newId(),
      type: `provisioning.${taskKind}`,
      occurredAt: new Date().toISOString(),
      correlationId,
      data: { taskId, tenantInstanceId: instanceId, kind: taskKind },
    };
    const [entry] = await db
      .insert(dlqEntries)
      .values({
        domain: "provisioning",
        stream: "PROVISIONING",
        streamSequence: Math.floor(Math.random() * 1e9),
        messageKey: envelope.id,
        subject: `provisioning.tasks.${taskKind}`,
        eventId: envelope.id,
        eventType: envelope.type,
        correlationId,
        envelope,
        rawPayload: JSON.stringify(envelope),
        error: "injected",
        errorKind: "transient",
        deliveries: 5,
      })
      .returning();
    if (!entry) throw new Error("no DLQ entry");
    return { entryId: entry.id, taskId, instanceId, correlationId };
  }

  const replay = (id: string) => h.request("POST", `/api/dlq/${id}/replay`, { token: admin });
  const republished = async (correlationId: string) =>
    (
      await h.db.handle.db
        .select({ id: outboxEvents.id })
        .from(outboxEvents)
        .where(
          and(
            eq(outboxEvents.correlationId, correlationId),
            // El replay también avisa del cambio de estado de la instancia; aquí cuentan las tareas.
            sql`coalesce(${outboxEvents.payload}->'data'->>'reason', '') <> 'dlq.replayed'`,
          ),
        )
    ).length;

  it("replays a dead task once; a second replay while it is queued is a 409", async () => {
    const dead = await deadTask("provision", "failed");
    expect((await replay(dead.entryId)).status).toBe(202);
    const [task] = await h.db.handle.db
      .select({ status: provisioningTasks.status })
      .from(provisioningTasks)
      .where(eq(provisioningTasks.id, dead.taskId));
    expect(task?.status).toBe("queued");
    const [instance] = await h.db.handle.db
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, dead.instanceId));
    expect(instance?.status).toBe("provisioning");

    expectProblem(await replay(dead.entryId), 409, "conflict");
    expect(await republished(dead.correlationId)).toBe(1);
  });

  // Un worker de la versión anterior (durante un despliegue) no reconoce el mensaje: lo manda a la
  // DLQ por su esquema sin tocar la tarea, que queda `queued` sin lease. Antes, el replay lo
  // rechazaba (409) y la tarea quedaba en curso para siempre, bloqueando a la instancia.
  it("replays the message of a task left queued, with no live lease, by a worker that could not read it", async () => {
    const stuck = await deadTask("update_features", "failed", { status: "queued" });
    expect((await replay(stuck.entryId)).status).toBe(202);
    expect(await republished(stuck.correlationId)).toBe(1);
    // Con su lease vigente la tarea corre en algún worker: no se publica otra copia.
    const running = await deadTask("update_features", "failed", {
      status: "running",
      leaseUntil: new Date(Date.now() + 60_000),
    });
    expectProblem(await replay(running.entryId), 409, "conflict");
    expect(await republished(running.correlationId)).toBe(0);
  });

  /** Una entrada muerta de otro worker (correo, webhook, factura): sin tarea de provisioning. */
  async function deadMessage(domain: "notifications" | "integration" | "billing") {
    const spec = {
      notifications: ["NOTIFICATIONS", "notifications.tasks.welcome", "notification.welcome"],
      integration: [
        "INTEGRATION",
        "integration.tasks.entitlements_changed",
        "entitlements.changed",
      ],
      billing: ["BILLING", "billing.tasks.cycle", "billing.cycle_requested"],
    } as const;
    const [stream, subject, type] = spec[domain];
    const correlationId = `dlq-${newId()}`;
    const envelope = {
      id: newId(),
      type,
      occurredAt: new Date().toISOString(),
      correlationId,
      data: { tenantInstanceId: newId(), customerId: newId(), tenantCode: "t-1" },
    };
    const [entry] = await h.db.handle.db
      .insert(dlqEntries)
      .values({
        domain,
        stream,
        streamSequence: Math.floor(Math.random() * 1e9),
        messageKey: envelope.id,
        subject,
        eventId: envelope.id,
        eventType: type,
        correlationId,
        envelope,
        rawPayload: JSON.stringify(envelope),
        error: "smtp down",
        errorKind: "transient",
        deliveries: 5,
      })
      .returning();
    if (!entry) throw new Error("no DLQ entry");
    return { entryId: entry.id, correlationId };
  }

  it.each(["notifications", "integration", "billing"] as const)(
    "replays a %s entry once: of two simultaneous replays one is a 409, and so is a later one",
    async (domain) => {
      const dead = await deadMessage(domain);
      const both = await Promise.all([replay(dead.entryId), replay(dead.entryId)]);
      expect(both.map((r) => r.status).sort()).toEqual([202, 409]);
      const loser = both.find((r) => r.status === 409);
      if (!loser) throw new Error("no 409");
      expectProblem(loser, 409, "conflict");
      expectProblem(await replay(dead.entryId), 409, "conflict");
      // Un solo mensaje nuevo: el correo o el webhook no sale dos veces.
      expect(await republished(dead.correlationId)).toBe(1);
      const [entry] = await h.db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.id, dead.entryId));
      expect(entry?.replayCount).toBe(1);
      const audits = await h.db.handle.db
        .select({ id: auditLog.id })
        .from(auditLog)
        .where(and(eq(auditLog.entityId, dead.entryId), eq(auditLog.action, "dlq.replayed")));
      expect(audits).toHaveLength(1);
    },
  );

  it("rejects an empty correlationId filter (400) instead of listing every entry", async () => {
    const res = await h.request("GET", "/api/dlq?correlationId=", { token: admin });
    expectProblem(res, 400, "validation_failed");
    expect((res.body as { errors: { path: string }[] }).errors[0]?.path).toBe(
      "query.correlationId",
    );
  });

  it("gives one entry a strong ETag that changes when it is replayed", async () => {
    const dead = await deadMessage("notifications");
    const get = () => h.request("GET", `/api/dlq/${dead.entryId}`, { token: admin });
    const before = await get();
    expect(before.status).toBe(200);
    const etag = before.headers.get("etag");
    expect(etag).toMatch(/^"[\x21\x23-\x7e]+"$/);
    expect((await get()).headers.get("etag")).toBe(etag);
    expect((await replay(dead.entryId)).status).toBe(202);
    const after = await get();
    expect(after.body).toMatchObject({ replayCount: 1 });
    expect(after.headers.get("etag")).not.toBe(etag);
  });

  it("the CLI path (replayDeadLetter) is once-only too", async () => {
    const dead = await deadMessage("notifications");
    const ctx = {
      db: h.db.handle.db,
      bus: offlineBus,
      logger: silentLogger,
      actor: "cli:tester",
      correlationId: newId(),
      baseDomain: "farutech.test",
    };
    const outcomes = await Promise.allSettled([
      replayDeadLetter(ctx, dead.entryId),
      replayDeadLetter(ctx, dead.entryId),
    ]);
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    const rejected = outcomes.find((o) => o.status === "rejected");
    expect(rejected?.status === "rejected" && rejected.reason).toMatchObject({ code: "conflict" });
    await expect(replayDeadLetter(ctx, dead.entryId)).rejects.toMatchObject({ code: "conflict" });
    expect(await republished(dead.correlationId)).toBe(1);
  });

  it("refuses to replay a provision or feature update of a decommissioned instance, not its deprovision", async () => {
    for (const taskKind of ["provision", "update_features"] as const) {
      const dead = await deadTask(taskKind, "decommissioned");
      expectProblem(await replay(dead.entryId), 409, "conflict");
      expect(await republished(dead.correlationId)).toBe(0);
    }
    const deprovision = await deadTask("deprovision", "decommissioned");
    expect((await replay(deprovision.entryId)).status).toBe(202);
    expect(await republished(deprovision.correlationId)).toBe(1);
  });

  it("refuses to replay a dead provision while a deprovision of its instance is pending", async () => {
    const dead = await deadTask("provision", "failed");
    const gone = await h.request<{ taskId: string }>(
      "DELETE",
      `/api/provisioning/${dead.instanceId}?purge=true`,
      { token: admin },
    );
    expect(gone.status).toBe(202);
    const res = await replay(dead.entryId);
    expectProblem(res, 409, "conflict");
    expect((res.body as { deprovisionTaskId?: string }).deprovisionTaskId).toBe(gone.body.taskId);
    expect(await republished(dead.correlationId)).toBe(0);
    const [instance] = await h.db.handle.db
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, dead.instanceId));
    expect(instance?.status).not.toBe("provisioning");
  });
});
