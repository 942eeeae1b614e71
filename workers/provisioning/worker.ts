import { and, eq, inArray, ne, notInArray, type SQLWrapper, sql } from "drizzle-orm";
import { z } from "zod";
import {
  type ProvisioningTaskMessage,
  provisioningTaskMessageSchema,
} from "../../contracts/events";
import { domainEventSubject, subjects } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId } from "../../core/ids";
import { type Logger, silentLogger } from "../../core/logger";
import type { SecretBox } from "../../core/secret-box";
import { type AuditEntry, auditInsert, writeAudit } from "../../db/audit";
import { executeAll } from "../../db/batch";
import {
  enqueueEvent,
  type NewEvent,
  outboxInsert,
  publishQueued,
  type QueuedEvent,
} from "../../db/outbox";
import {
  customers,
  products,
  provisioningTaskSteps,
  provisioningTasks,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import type { Database, Tx } from "../../db/types";
import type { HandlerContext, WorkerDefinition } from "../runtime/consumer";
import { errorMessage, PermanentError } from "../runtime/errors";
import type { DedicatedDatabases } from "./dedicated-databases";
import type { SharedTenantRegistry } from "./shared-registry";
import { dropTenantData } from "./tenant-data";

export const PROVISIONING_WORKER = "provisioning-worker";
const ACTOR = "worker:provisioning";

export interface ProvisioningWorkerDeps {
  db: Database;
  bus: Bus;
  registry: SharedTenantRegistry;
  /** Fracción de fallos transitorios inyectados en el paso externo (simulación del seed). */
  failureRate: number;
  /** Tier Enterprise: bases propias y cifrado de su cadena de conexión. */
  dedicated?: DedicatedDatabases;
  secretBox?: SecretBox;
  /** Para avisos fuera del contexto de un mensaje (p. ej. al publicar tras la DLQ). */
  logger?: Logger;
  /** Latencia simulada del paso externo (ms), como la simulación de ProvisionDatabase() del seed. */
  externalDelayMs?: number;
  random?: () => number;
}

interface TaskContext {
  taskId: string;
  tenantInstanceId: string;
  correlationId: string;
  /** provisioning_tasks.payload: datos propios del tipo de tarea. */
  payload: unknown;
  /** Cuándo se aceptó la petición (provisioning_tasks.created_at): ordena los update_features. */
  requestedAt: Date;
  /**
   * La instancia leída al empezar la entrega. Solo sus datos inmutables (id, códigos, cliente,
   * producto, tier) valen para los pasos; el estado o la cadena de conexión se releen.
   */
  snapshot: InstanceRow;
}

type InstanceRow = Awaited<ReturnType<typeof loadInstance>>;

/**
 * Lo que un paso transaccional quiere escribir: el runner lo ejecuta, con la auditoría, el outbox
 * y la marca del paso, en una sola sentencia dentro de la transacción del paso.
 */
interface StepWrites {
  statements?: SQLWrapper[];
  audit?: Omit<AuditEntry, "actor" | "correlationId">[];
  events?: Omit<NewEvent, "correlationId">[];
}

type Step =
  | { name: string; kind: "external"; run(task: TaskContext): Promise<void> }
  | { name: string; kind: "transactional"; run(tx: Tx, task: TaskContext): Promise<StepWrites> };

async function loadInstance(db: Database | Tx, tenantInstanceId: string) {
  const [row] = await db
    .select({
      instance: tenantInstances,
      productCode: products.code,
      customerName: customers.legalName,
    })
    .from(tenantInstances)
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
    .where(eq(tenantInstances.id, tenantInstanceId));
  if (!row) throw new PermanentError(`tenant instance ${tenantInstanceId} does not exist`);
  return row;
}

function enterpriseSteps(deps: ProvisioningWorkerDeps): Step[] {
  const need = () => {
    if (!deps.dedicated || !deps.secretBox) {
      throw new PermanentError("Enterprise provisioning needs ENCRYPTION_KEYS in the workers");
    }
    return { dedicated: deps.dedicated, box: deps.secretBox };
  };
  return [
    {
      // Crear base y rol y guardar la cadena cifrada van juntos: un reintento genera una
      // contraseña nueva y la guarda, así la cadena almacenada siempre sirve.
      name: "create_database",
      kind: "external",
      async run(task) {
        const { dedicated, box } = need();
        const { instance } = task.snapshot;
        const connectionString = await dedicated.create(instance.tenantCode);
        await deps.db
          .update(tenantInstances)
          .set({
            connectionStringEncrypted: await box.encrypt(connectionString),
            encryptionKeyId: box.activeKeyId,
            updatedAt: sql`now()`,
          })
          .where(eq(tenantInstances.id, instance.id));
      },
    },
    {
      name: "apply_schema",
      kind: "external",
      async run(task) {
        const { dedicated, box } = need();
        const { instance, productCode } = await loadInstance(deps.db, task.tenantInstanceId);
        if (!instance.connectionStringEncrypted) throw new Error("connection string missing");
        await dedicated.applyBaseline(
          await box.decrypt(instance.connectionStringEncrypted),
          productCode,
        );
      },
    },
  ];
}

function provisionSteps(deps: ProvisioningWorkerDeps, tier: "standard" | "enterprise"): Step[] {
  const random = deps.random ?? Math.random;
  const [, ...common] = standardProvisionSteps(deps, random);
  return tier === "enterprise"
    ? [...enterpriseSteps(deps), ...common]
    : standardProvisionSteps(deps, random);
}

function standardProvisionSteps(deps: ProvisioningWorkerDeps, random: () => number): Step[] {
  return [
    {
      name: "register_tenant",
      kind: "external",
      async run(task) {
        const { instance, productCode } = task.snapshot;
        // Simulación de ProvisionDatabase() del seed: fallos transitorios configurables.
        if (deps.externalDelayMs) await new Promise((r) => setTimeout(r, deps.externalDelayMs));
        if (deps.failureRate > 0 && random() < deps.failureRate) {
          throw new Error("simulated transient failure in the external provisioning step");
        }
        await deps.registry.register(productCode, {
          tenantInstanceId: instance.id,
          tenantCode: instance.tenantCode,
          customerId: instance.customerId,
        });
      },
    },
    {
      name: "activate",
      kind: "transactional",
      async run(tx, task) {
        const { instance } = await loadInstance(tx, task.tenantInstanceId);
        // Solo se activa lo que sigue en provisioning: si mientras tanto se suspendió (p. ej. el
        // cliente fue borrado) o se dio de baja, el worker no lo revive.
        if (instance.status !== "provisioning" && instance.status !== "active") {
          return {
            audit: [
              {
                action: "tenant_instance.activation_skipped",
                entityType: "tenant_instance",
                entityId: instance.id,
                before: { status: instance.status },
                after: { status: instance.status },
              },
            ],
          };
        }
        return {
          statements: [
            tx
              .update(tenantInstances)
              .set({
                status: "active",
                rowVersion: sql`${tenantInstances.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(eq(tenantInstances.id, instance.id)),
            tx
              .update(subscriptions)
              .set({
                status: "active",
                rowVersion: sql`${subscriptions.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(
                and(
                  eq(subscriptions.tenantInstanceId, instance.id),
                  eq(subscriptions.status, "pending"),
                ),
              ),
          ],
          audit: [
            {
              action: "tenant_instance.activated",
              entityType: "tenant_instance",
              entityId: instance.id,
              before: { status: instance.status },
              after: { status: "active" },
            },
          ],
          events: [entitlementsEvent(task, "activated")],
        };
      },
    },
    {
      name: "request_welcome_notification",
      kind: "transactional",
      async run(tx, task) {
        const { instance } = await loadInstance(tx, task.tenantInstanceId);
        // Sin activación no hay bienvenida.
        if (instance.status !== "active") return {};
        return {
          events: [
            {
              subject: subjects.welcomeNotification,
              type: "notification.welcome_requested",
              data: {
                tenantInstanceId: instance.id,
                customerId: instance.customerId,
                tenantCode: instance.tenantCode,
              },
            },
          ],
        };
      },
    },
  ];
}

function entitlementsEvent(task: TaskContext, reason: string): Omit<NewEvent, "correlationId"> {
  return {
    subject: subjects.entitlementsChanged,
    type: "entitlements.changed",
    data: { tenantInstanceId: task.tenantInstanceId, reason },
  };
}

const deprovisionPayloadSchema = z
  .object({
    purge: z.boolean().default(false),
    // Instancia ya dada de baja: solo se borran sus datos (purge adelantado).
    dataOnly: z.boolean().default(false),
  })
  .nullable();

function deprovisionSteps(deps: ProvisioningWorkerDeps, payload: unknown): Step[] {
  const parsed = deprovisionPayloadSchema.safeParse(payload ?? null);
  // Con purge los datos se borran ya; sin él, la pasada de mantenimiento al vencer la retención.
  const dropStep: Step = {
    name: "drop_tenant_data",
    kind: "external",
    async run(task) {
      await dropTenantData(deps, task.tenantInstanceId, {
        actor: ACTOR,
        reason: "purge",
        correlationId: task.correlationId,
        taskId: task.taskId,
      });
    },
  };
  if (parsed.success && parsed.data?.dataOnly) return [dropStep];
  return [
    {
      name: "suspend_instance",
      kind: "transactional",
      async run(tx, task) {
        const { instance } = await loadInstance(tx, task.tenantInstanceId);
        // Primero se corta el acceso: los entitlements se apagan antes de tocar datos.
        return {
          statements: [
            tx
              .update(tenantInstances)
              .set({
                status: "suspended",
                rowVersion: sql`${tenantInstances.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(
                and(
                  eq(tenantInstances.id, instance.id),
                  ne(tenantInstances.status, "decommissioned"),
                ),
              ),
            tx
              .update(subscriptions)
              .set({
                status: "suspended",
                rowVersion: sql`${subscriptions.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(
                and(
                  eq(subscriptions.tenantInstanceId, instance.id),
                  inArray(subscriptions.status, ["pending", "active"]),
                ),
              ),
          ],
          audit: [
            {
              action: "tenant_instance.suspended",
              entityType: "tenant_instance",
              entityId: instance.id,
              before: { status: instance.status },
              after: { status: "suspended", taskId: task.taskId },
            },
          ],
          events: [entitlementsEvent(task, "deprovision_suspended")],
        };
      },
    },
    {
      name: "decommission",
      kind: "transactional",
      async run(tx, task) {
        const { instance } = await loadInstance(tx, task.tenantInstanceId);
        const payload = deprovisionPayloadSchema.safeParse(task.payload ?? null);
        if (!payload.success) throw new PermanentError("deprovision payload is invalid");
        const purge = payload.data?.purge ?? false;
        return {
          statements: [
            tx
              .update(tenantInstances)
              .set({
                status: "decommissioned",
                // La retención de datos cuenta desde la primera baja.
                decommissionedAt: sql`coalesce(${tenantInstances.decommissionedAt}, now())`,
                rowVersion: sql`${tenantInstances.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(eq(tenantInstances.id, instance.id)),
            tx
              .update(subscriptions)
              .set({
                status: "cancelled",
                rowVersion: sql`${subscriptions.rowVersion} + 1`,
                updatedAt: sql`now()`,
              })
              .where(
                and(
                  eq(subscriptions.tenantInstanceId, instance.id),
                  ne(subscriptions.status, "cancelled"),
                ),
              ),
          ],
          audit: [
            {
              action: "tenant_instance.decommissioned",
              entityType: "tenant_instance",
              entityId: instance.id,
              before: { status: instance.status },
              after: { status: "decommissioned", taskId: task.taskId, purgeRequested: purge },
            },
          ],
          events: [
            {
              subject: domainEventSubject("tenant_instance", "decommissioned"),
              type: "tenant_instance.decommissioned",
              data: { tenantInstanceId: instance.id, purgeRequested: purge },
            },
            entitlementsEvent(task, "decommissioned"),
          ],
        };
      },
    },
    ...(parsed.success && parsed.data?.purge ? [dropStep] : []),
  ];
}

const featuresPayloadSchema = z.object({
  features: z.record(
    z.string().min(1),
    z.union([z.boolean(), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]),
  ),
});

function updateFeatureSteps(): Step[] {
  return [
    {
      name: "apply_overrides",
      kind: "transactional",
      async run(tx, task) {
        const payload = featuresPayloadSchema.safeParse(task.payload);
        if (!payload.success) throw new PermanentError("update_features payload is invalid");
        const [subscription] = await tx
          .select()
          .from(subscriptions)
          .where(eq(subscriptions.tenantInstanceId, task.tenantInstanceId));
        if (!subscription) {
          throw new PermanentError(`tenant instance ${task.tenantInstanceId} has no subscription`);
        }
        const entries = Object.entries(payload.data.features);
        const base = {
          subscriptionId: subscription.id,
          productId: subscription.productId,
          requestedAt: task.requestedAt,
        };
        const toggles = entries.flatMap(([code, v]) =>
          typeof v === "boolean"
            ? [
                {
                  ...base,
                  id: newId(),
                  featureCode: code.toUpperCase(),
                  overrideType: v ? ("enable" as const) : ("disable" as const),
                },
              ]
            : [],
        );
        const limits = entries.flatMap(([name, v]) =>
          typeof v === "number"
            ? [{ ...base, id: newId(), limitName: name.toLowerCase(), value: v }]
            : [],
        );
        const o = subscriptionFeatureOverrides;
        // Dos PUT seguidos pueden aplicarse en otro orden (concurrencia, reintentos): cada clave
        // guarda cuándo se pidió su valor y solo un pedido igual o más nuevo la reemplaza.
        const newerOrSame = sql`${o.requestedAt} <= excluded.requested_at`;
        try {
          // Upsert: lo que el mapa no nombra se queda como estaba.
          if (toggles.length > 0) {
            await tx
              .insert(o)
              .values(toggles)
              .onConflictDoUpdate({
                target: [o.subscriptionId, o.featureCode],
                set: {
                  overrideType: sql`excluded.override_type`,
                  requestedAt: sql`excluded.requested_at`,
                },
                setWhere: newerOrSame,
              });
          }
          if (limits.length > 0) {
            await tx
              .insert(o)
              .values(limits)
              .onConflictDoUpdate({
                target: [o.subscriptionId, o.limitName],
                set: { value: sql`excluded.value`, requestedAt: sql`excluded.requested_at` },
                setWhere: newerOrSame,
              });
          }
        } catch (err) {
          // Una feature o límite que ya no existe en el catálogo no se arregla reintentando.
          const code = pgErrorCode(err);
          if (code === "23503" || code === "23514") {
            throw new PermanentError(`overrides no longer match the catalog (${code})`);
          }
          throw err;
        }
        return {
          statements: [
            tx
              .update(subscriptions)
              .set({ rowVersion: sql`${subscriptions.rowVersion} + 1`, updatedAt: sql`now()` })
              .where(eq(subscriptions.id, subscription.id)),
          ],
          audit: [
            {
              action: "subscription.overrides_updated",
              entityType: "subscription",
              entityId: subscription.id,
              after: {
                tenantInstanceId: task.tenantInstanceId,
                taskId: task.taskId,
                ...payload.data,
              },
            },
          ],
          events: [entitlementsEvent(task, "features_updated")],
        };
      },
    },
  ];
}

function stepsFor(
  kind: ProvisioningTaskMessage["kind"],
  deps: ProvisioningWorkerDeps,
  tier: "standard" | "enterprise",
  payload: unknown,
): Step[] {
  switch (kind) {
    case "provision":
      return provisionSteps(deps, tier);
    case "deprovision":
      return deprovisionSteps(deps, payload);
    case "update_features":
      return updateFeatureSteps();
  }
}

/**
 * Marca la tarea en curso y lee en la misma sentencia su instancia y los pasos ya hechos: un viaje
 * a la base al empezar cada entrega, no tres (con Neon cada viaje son milisegundos).
 */
async function startTask(db: Database, taskId: string, deliveryCount: number) {
  const started = db.$with("started").as(
    db
      .update(provisioningTasks)
      .set({
        status: "running",
        attempts: deliveryCount,
        startedAt: sql`coalesce(${provisioningTasks.startedAt}, now())`,
        updatedAt: sql`now()`,
      })
      .where(eq(provisioningTasks.id, taskId))
      .returning({
        correlationId: provisioningTasks.correlationId,
        kind: provisioningTasks.kind,
        payload: provisioningTasks.payload,
        tenantInstanceId: provisioningTasks.tenantInstanceId,
        createdAt: provisioningTasks.createdAt,
      }),
  );
  const [row] = await db
    .with(started)
    .select({
      correlationId: started.correlationId,
      kind: started.kind,
      payload: started.payload,
      tenantInstanceId: started.tenantInstanceId,
      createdAt: started.createdAt,
      instance: tenantInstances,
      productCode: products.code,
      customerName: customers.legalName,
      done: sql<string[]>`(select coalesce(json_agg(${provisioningTaskSteps.name}), '[]'::json)
        from ${provisioningTaskSteps}
        where ${provisioningTaskSteps.taskId} = ${taskId}
          and ${provisioningTaskSteps.status} = 'succeeded')`,
    })
    .from(started)
    .leftJoin(tenantInstances, eq(tenantInstances.id, started.tenantInstanceId))
    .leftJoin(products, eq(products.id, tenantInstances.productId))
    .leftJoin(customers, eq(customers.id, tenantInstances.customerId));
  return row;
}

/** Upsert de la fila del paso; `attempt` suma un intento (inicio de un paso externo o fin de uno transaccional). */
function stepRecord(
  db: Database | Tx,
  taskId: string,
  name: string,
  position: number,
  status: "running" | "succeeded" | "failed",
  options: { attempt: boolean; error?: string },
) {
  const finished = status === "running" ? null : sql`now()`;
  return db
    .insert(provisioningTaskSteps)
    .values({
      taskId,
      name,
      position,
      status,
      finishedAt: finished,
      error: options.error ?? null,
    })
    .onConflictDoUpdate({
      target: [provisioningTaskSteps.taskId, provisioningTaskSteps.name],
      set: {
        status,
        ...(options.attempt
          ? { attempts: sql`${provisioningTaskSteps.attempts} + 1`, startedAt: sql`now()` }
          : {}),
        finishedAt: finished,
        error: options.error ?? null,
      },
    });
}

/** Escribe lo que pidió un paso transaccional junto con su marca de éxito, en una sentencia. */
async function applyStepWrites(
  tx: Tx,
  task: TaskContext,
  step: Step,
  position: number,
  writes: StepWrites,
  extra: SQLWrapper[],
): Promise<QueuedEvent[]> {
  const statements: SQLWrapper[] = [...(writes.statements ?? [])];
  if (writes.audit?.length) {
    statements.push(
      auditInsert(
        tx,
        writes.audit.map((a) => ({ ...a, actor: ACTOR, correlationId: task.correlationId })),
      ),
    );
  }
  let events: QueuedEvent[] = [];
  if (writes.events?.length) {
    const outbox = outboxInsert(
      tx,
      writes.events.map((e) => ({ ...e, correlationId: task.correlationId })),
    );
    statements.push(outbox.statement);
    events = outbox.queued;
  }
  statements.push(stepRecord(tx, task.taskId, step.name, position, "succeeded", { attempt: true }));
  await executeAll(tx, [...statements, ...extra]);
  return events;
}

/**
 * Cada paso es idempotente y queda registrado: tras una caída se saltan los ya hechos.
 * Los pasos transaccionales seguidos comparten una transacción (un commit, no uno por paso), y si
 * son los últimos, `finish` (la tarea como terminada) va en ella. Devuelve si `finish` ya se aplicó.
 */
async function runSteps(
  deps: ProvisioningWorkerDeps,
  steps: Step[],
  task: TaskContext,
  ctx: HandlerContext<ProvisioningTaskMessage>,
  finish: (db: Database | Tx) => SQLWrapper,
  done: ReadonlySet<string>,
): Promise<boolean> {
  const pending = [...steps.entries()].filter(([, step]) => {
    if (!done.has(step.name)) return true;
    ctx.logger.debug({ step: step.name }, "step already completed; skipping");
    return false;
  });
  let finished = false;
  for (let i = 0; i < pending.length; ) {
    const first = pending[i];
    if (!first) break;
    const [position, step] = first;
    ctx.heartbeat();
    if (step.kind === "external") {
      // Un paso externo marca su inicio antes de actuar: si el worker muere, queda "running"
      // con su intento contado.
      await stepRecord(deps.db, task.taskId, step.name, position, "running", { attempt: true });
      try {
        await step.run(task);
        await stepRecord(deps.db, task.taskId, step.name, position, "succeeded", {
          attempt: false,
        });
      } catch (err) {
        await stepRecord(deps.db, task.taskId, step.name, position, "failed", {
          attempt: false,
          error: errorMessage(err),
        }).catch(() => {});
        throw err;
      }
      ctx.logger.info({ step: step.name }, "step completed");
      i++;
      continue;
    }
    let group = 0;
    while (pending[i + group]?.[1].kind === "transactional") group++;
    const batch = pending.slice(i, i + group);
    const last = i + group === pending.length;
    let current = first;
    try {
      // Efecto, auditoría, eventos y marca de cada paso se confirman juntos: nunca a medias.
      const queued = await deps.db.transaction(async (tx) => {
        const events: QueuedEvent[] = [];
        for (const [n, entry] of batch.entries()) {
          current = entry;
          const [pos, s] = entry;
          if (s.kind !== "transactional") continue;
          const extra = last && n === batch.length - 1 ? [finish(tx)] : [];
          events.push(...(await applyStepWrites(tx, task, s, pos, await s.run(tx, task), extra)));
        }
        return events;
      });
      finished = last;
      await publishQueued(deps.db, deps.bus, queued, ctx.logger);
    } catch (err) {
      const [pos, s] = current;
      await stepRecord(deps.db, task.taskId, s.name, pos, "failed", {
        attempt: true,
        error: errorMessage(err),
      }).catch(() => {});
      throw err;
    }
    for (const [, s] of batch) ctx.logger.info({ step: s.name }, "step completed");
    i += group;
  }
  return finished;
}

export function provisioningWorker(
  deps: ProvisioningWorkerDeps,
): WorkerDefinition<ProvisioningTaskMessage> {
  return {
    name: PROVISIONING_WORKER,
    domain: "provisioning",
    filterSubject: "provisioning.tasks.>",
    schema: provisioningTaskMessageSchema,
    logFields: (data) => ({ taskId: data.taskId, tenantInstanceId: data.tenantInstanceId }),
    async alreadyProcessed(_envelope, data) {
      const [task] = await deps.db
        .select({ status: provisioningTasks.status })
        .from(provisioningTasks)
        .where(eq(provisioningTasks.id, data.taskId));
      return task?.status === "succeeded" || task?.status === "dead_lettered";
    },
    async handle(ctx) {
      const { taskId, tenantInstanceId, kind } = ctx.data;
      const task = await startTask(deps.db, taskId, ctx.deliveryCount);
      if (!task) throw new PermanentError(`provisioning task ${taskId} does not exist`);
      if (task.kind !== kind || task.tenantInstanceId !== tenantInstanceId) {
        throw new PermanentError(`message does not match provisioning task ${taskId}`);
      }
      const { instance, productCode, customerName } = task;
      if (!instance || productCode === null || customerName === null) {
        throw new PermanentError(`tenant instance ${tenantInstanceId} does not exist`);
      }
      const finish = (db: Database | Tx) =>
        db
          .update(provisioningTasks)
          .set({
            status: "succeeded",
            lastError: null,
            finishedAt: sql`now()`,
            updatedAt: sql`now()`,
          })
          .where(eq(provisioningTasks.id, taskId));
      const finished = await runSteps(
        deps,
        stepsFor(task.kind, deps, instance.databaseTier, task.payload),
        {
          taskId,
          tenantInstanceId,
          correlationId: task.correlationId,
          payload: task.payload,
          requestedAt: task.createdAt,
          snapshot: { instance, productCode, customerName },
        },
        ctx,
        finish,
        new Set(task.done),
      );
      if (!finished) await finish(deps.db);
      ctx.logger.info("provisioning task succeeded");
    },
    async onRetry(ctx, error) {
      await deps.db
        .update(provisioningTasks)
        .set({ status: "queued", lastError: error, updatedAt: sql`now()` })
        .where(eq(provisioningTasks.id, ctx.data.taskId));
    },
    async onDeadLetter(info, data) {
      if (!data) return;
      const alert = await deps.db.transaction(async (tx) => {
        // Una tarea terminada (o ya en la DLQ) no cambia: ni instancia fallida ni segundo aviso.
        const marked = await tx
          .update(provisioningTasks)
          .set({
            status: "dead_lettered",
            attempts: info.deliveries,
            lastError: info.error,
            finishedAt: sql`now()`,
            updatedAt: sql`now()`,
          })
          .where(
            and(
              eq(provisioningTasks.id, data.taskId),
              notInArray(provisioningTasks.status, ["succeeded", "dead_lettered"]),
            ),
          )
          .returning({ id: provisioningTasks.id });
        if (marked.length === 0) return undefined;
        await tx
          .update(tenantInstances)
          .set({ status: "failed", updatedAt: sql`now()` })
          .where(
            and(
              eq(tenantInstances.id, data.tenantInstanceId),
              eq(tenantInstances.status, "provisioning"),
            ),
          );
        await writeAudit(tx, {
          actor: ACTOR,
          action: "provisioning_task.dead_lettered",
          entityType: "provisioning_task",
          entityId: data.taskId,
          after: { error: info.error, deliveries: info.deliveries },
          correlationId: info.envelope?.correlationId ?? null,
        });
        // Operaciones recibe un aviso (NotificationWorker) en la misma transacción.
        return enqueueEvent(tx, {
          subject: subjects.provisioningFailedNotification,
          type: "notification.provisioning_failed",
          correlationId: info.envelope?.correlationId ?? null,
          data: {
            taskId: data.taskId,
            tenantInstanceId: data.tenantInstanceId,
            error: info.error,
            deliveries: info.deliveries,
          },
        });
      });
      if (alert) await publishQueued(deps.db, deps.bus, [alert], deps.logger ?? silentLogger);
    },
  };
}
