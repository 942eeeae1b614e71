import { and, eq, inArray, isNull, sql } from "drizzle-orm";
import {
  type EventEnvelope,
  eventEnvelopeSchema,
  type ProvisioningTaskMessage,
  provisioningTaskMessageSchema,
} from "../../contracts/events";
import { AppError } from "../../core/errors";
import {
  auditLog,
  dlqEntries,
  provisioningTasks,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import { rowsOf, type Tx } from "../../db/types";
import { notFound } from "./concurrency";
import { entitlementsChanged } from "./entitlement-events";
import { mutate, type ServiceContext } from "./mutation";
import { taskInFlight } from "./tenant-instances";

export type DlqEntryRow = typeof dlqEntries.$inferSelect;

/**
 * Replay de un mensaje muerto: se vuelve a publicar (vía outbox) en su subject original, con la
 * misma correlación y un id de evento nuevo, así JetStream le da un presupuesto de entregas nuevo.
 * Cada entrada se reprocesa una sola vez: con un id nuevo, JetStream no deduplica un segundo
 * replay y los correos o webhooks saldrían otra vez. Si vuelve a morir, llega como entrada nueva.
 */
export async function replayDeadLetter(ctx: ServiceContext, id: string): Promise<DlqEntryRow> {
  return (await replay(ctx, id)).entry;
}

async function replay(ctx: ServiceContext, id: string): Promise<{ entry: DlqEntryRow }> {
  const [found] = await ctx.db.select().from(dlqEntries).where(eq(dlqEntries.id, id));
  if (!found) throw notFound("DLQ entry", id);
  const parsed = eventEnvelopeSchema.safeParse(found.envelope);
  if (!parsed.success) {
    throw new AppError(
      "unprocessable",
      "This message is not a valid event envelope and cannot be replayed",
    );
  }
  const original: EventEnvelope = parsed.data;
  // La auditoría y el evento conservan la correlación original del mensaje.
  const replayCtx = { ...ctx, correlationId: original.correlationId ?? ctx.correlationId };
  return mutate(replayCtx, async (tx) => {
    // Compare-and-set sobre replayed_at: de dos replays simultáneos, el segundo espera el bloqueo
    // de la fila, reevalúa la condición y no actualiza nada; si el primero se revierte, sigue.
    const [entry] = await tx
      .update(dlqEntries)
      .set({ replayCount: sql`${dlqEntries.replayCount} + 1`, replayedAt: sql`now()` })
      .where(and(eq(dlqEntries.id, id), isNull(dlqEntries.replayedAt)))
      .returning();
    if (!entry) throw await alreadyReplayed(tx, id);
    const task = provisioningTaskMessageSchema.safeParse(original.data);
    const statusChanged: string[] = [];
    if (found.domain === "provisioning" && task.success) {
      await assertReplayable(tx, task.data);
      // La tarea vuelve a la cola; la instancia que quedó failed vuelve a provisioning.
      const [requeued] = await tx
        .update(provisioningTasks)
        .set({ status: "queued", finishedAt: null, updatedAt: sql`now()` })
        .where(
          and(
            eq(provisioningTasks.id, task.data.taskId),
            inArray(provisioningTasks.status, ["dead_lettered", "failed"]),
          ),
        )
        .returning({ kind: provisioningTasks.kind });
      // Solo la provisión devuelve la instancia a provisioning: con otra tarea nadie la
      // terminaría y quedaría en provisioning para siempre.
      const moved =
        requeued?.kind !== "provision"
          ? []
          : await tx
              .update(tenantInstances)
              .set({
                status: "provisioning",
                rowVersion: sql`${tenantInstances.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(
                and(
                  eq(tenantInstances.id, task.data.tenantInstanceId),
                  eq(tenantInstances.status, "failed"),
                ),
              )
              .returning({ id: tenantInstances.id });
      statusChanged.push(...moved.map((m) => m.id));
    }
    return {
      result: { entry },
      audit: [
        {
          action: "dlq.replayed",
          entityType: "dlq_entry",
          entityId: id,
          before: { replayCount: entry.replayCount - 1 },
          after: {
            replayCount: entry.replayCount,
            subject: found.subject,
            eventType: original.type,
          },
        },
      ],
      events: [
        { subject: found.subject, type: original.type, data: original.data },
        // El estado de la instancia forma parte de sus entitlements.
        ...entitlementsChanged(statusChanged, "dlq.replayed"),
      ],
    };
  });
}

/** 409 si la entrada ya se reprocesó (404 si la borraron entretanto). */
async function alreadyReplayed(tx: Tx, id: string): Promise<AppError> {
  const [current] = await tx
    .select({ replayedAt: dlqEntries.replayedAt })
    .from(dlqEntries)
    .where(eq(dlqEntries.id, id));
  if (!current?.replayedAt) return notFound("DLQ entry", id);
  const replayedAt = current.replayedAt.toISOString();
  return new AppError(
    "conflict",
    `DLQ entry ${id} was already replayed at ${replayedAt}; a message that dies again gets a new entry`,
    { extra: { replayedAt } },
  );
}

/**
 * Solo una tarea que sigue muerta se reprocesa: un segundo replay (o uno de una tarea ya
 * terminada) correría el trabajo dos veces, y una instancia dada de baja no vuelve a crearse ni a
 * cambiar de features (repetir la baja sí es inocuo). También una `queued` sin lease vigente: la
 * deja así un worker de otra versión que no pudo leer su mensaje (lo manda a la DLQ sin tocarla);
 * si además tuviera otro mensaje vivo, el lease hace que corra una sola vez.
 */
async function assertReplayable(tx: Tx, message: ProvisioningTaskMessage): Promise<void> {
  const [current] = await tx
    .select({
      status: provisioningTasks.status,
      kind: provisioningTasks.kind,
      leaseFree: sql<boolean>`(${provisioningTasks.leaseUntil} is null or ${provisioningTasks.leaseUntil} < now())`,
    })
    .from(provisioningTasks)
    .where(eq(provisioningTasks.id, message.taskId))
    .for("update");
  if (!current) return;
  const stuck = current.status === "queued" && current.leaseFree;
  if (current.status !== "dead_lettered" && current.status !== "failed" && !stuck) {
    throw new AppError(
      "conflict",
      `Provisioning task ${message.taskId} is ${current.status}; only a dead-lettered task (or a queued one no worker holds) can be replayed`,
      { extra: { taskStatus: current.status } },
    );
  }
  if (current.kind === "update_features") await refuseIfOverridesRemovedSince(tx, message);
  if (current.kind !== "deprovision") {
    // Con una baja pedida o terminada, reprocesar el alta o las features correría contra una
    // instancia que está por desaparecer o ya no está (y una base creada tras el purge no se
    // borraría nunca). El estado se lee con la fila bloqueada: así este replay queda ordenado con
    // el DELETE y con el worker que la da de baja, que también la bloquean.
    const [instance] = await tx
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, message.tenantInstanceId))
      .for("update");
    if (instance?.status === "decommissioned") {
      throw new AppError(
        "conflict",
        `Tenant instance ${message.tenantInstanceId} is decommissioned; its ${current.kind} task cannot be replayed`,
        { extra: { taskStatus: current.status, instanceStatus: instance.status } },
      );
    }
    const deprovision = await taskInFlight(tx, message.tenantInstanceId, ["deprovision"]);
    if (deprovision) {
      throw new AppError(
        "conflict",
        `Tenant instance ${message.tenantInstanceId} is being deprovisioned (task ${deprovision.id}); its ${current.kind} task cannot be replayed`,
        { extra: { taskStatus: current.status, deprovisionTaskId: deprovision.id } },
      );
    }
  }
}

/**
 * Un PUT de features viejo no resucita un override borrado después de aceptarlo. El worker ordena
 * los valores por `requested_at` contra la fila vigente, pero un borrado no deja fila con la que
 * comparar: aplicar la tarea la volvería a crear. Mientras la tarea está en curso la API no deja
 * borrar (refuseWhileFeaturesPending); muerta sí, así que se comprueba aquí, con el audit del
 * borrado (se escribe en la misma transacción). Se rechaza entera: un operador manda un PUT nuevo
 * con lo que debe regir ahora.
 */
async function refuseIfOverridesRemovedSince(
  tx: Tx,
  message: ProvisioningTaskMessage,
): Promise<void> {
  const [task] = await tx
    .select({ createdAt: provisioningTasks.createdAt, payload: provisioningTasks.payload })
    .from(provisioningTasks)
    .where(eq(provisioningTasks.id, message.taskId));
  const features = (task?.payload as { features?: Record<string, unknown> } | null)?.features;
  if (!task || !features) return;
  // Como los guarda el worker: features en mayúsculas, límites en minúsculas.
  const keys = new Set(
    Object.entries(features).map(([key, value]) =>
      typeof value === "boolean" ? `feature:${key.toUpperCase()}` : `limit:${key.toLowerCase()}`,
    ),
  );
  // Un override es de un límite (limitName) o de una feature (featureCode), nunca de los dos.
  const removed = rowsOf<{ key: string }>(
    await tx.execute(sql`
      select distinct coalesce('limit:' || (a.before->>'limitName'),
                               'feature:' || (a.before->>'featureCode')) as key
        from ${subscriptions} s
        join ${auditLog} a on a.entity_type = 'subscription' and a.entity_id = s.id::text
       where s.tenant_instance_id = ${message.tenantInstanceId}
         and a.action = 'subscription.override_removed'
         and a.occurred_at >= ${task.createdAt.toISOString()}::timestamptz`),
  ).filter((row) => keys.has(row.key));
  if (removed.length === 0) return;
  const names = removed.map((row) => row.key.replace(/^(feature|limit):/, ""));
  throw new AppError(
    "conflict",
    `Override(s) ${names.join(", ")} were removed after feature update task ${message.taskId} was accepted; replaying it would bring them back. Send a new PUT /api/provisioning/${message.tenantInstanceId}/features with what should apply now`,
    { extra: { removedOverrides: names } },
  );
}

export function toDlqEntry(e: DlqEntryRow) {
  return {
    id: e.id,
    domain: e.domain,
    stream: e.stream,
    streamSequence: e.streamSequence,
    subject: e.subject,
    eventId: e.eventId,
    eventType: e.eventType,
    correlationId: e.correlationId,
    error: e.error,
    errorKind: e.errorKind === "permanent" ? ("permanent" as const) : ("transient" as const),
    deliveries: e.deliveries,
    payload: e.envelope ?? e.rawPayload,
    replayCount: e.replayCount,
    replayedAt: e.replayedAt ? e.replayedAt.toISOString() : null,
    createdAt: e.createdAt.toISOString(),
  };
}
