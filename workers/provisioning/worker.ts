import { setTimeout as delay } from "node:timers/promises";
import {
  and,
  eq,
  inArray,
  isNull,
  lt,
  ne,
  notInArray,
  or,
  type SQL,
  type SQLWrapper,
  sql,
} from "drizzle-orm";
import { z } from "zod";
import {
  type EventEnvelope,
  type ProvisioningTaskMessage,
  provisioningTaskMessageSchema,
} from "../../contracts/events";
import { domainEventSubject, subjects } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId, randomToken } from "../../core/ids";
import { eventFields, type Logger, silentLogger } from "../../core/logger";
import { type SecretBox, secretContext } from "../../core/secret-box";
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
  dlqEntries,
  products,
  provisioningTaskSteps,
  provisioningTasks,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import type { Database, Tx } from "../../db/types";
import type { DeadLetterInfo, HandlerContext, WorkerDefinition } from "../runtime/consumer";
import { errorMessage, PermanentError } from "../runtime/errors";
import type { DedicatedDatabases, RoleFence } from "./dedicated-databases";
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
  /** Respaldo del hook de DLQ cuando no recibe el logger del mensaje (llamado fuera del runtime). */
  logger?: Logger;
  /** Latencia simulada del paso externo (ms), como la simulación de ProvisionDatabase() del seed. */
  externalDelayMs?: number;
  random?: () => number;
  /**
   * Duración del lease de una tarea en curso (ms): el ack wait de los workers (WORKER_ACK_WAIT_MS),
   * así vence a la par que la entrega de un proceso que dejó de responder.
   */
  leaseMs?: number;
}

const DEFAULT_LEASE_MS = 30_000;
/** Holgura tras el vencimiento de un lease ajeno antes de volver a intentar tomarlo. */
const LEASE_SLACK_MS = 50;
const FINISHED_STATUSES: ("succeeded" | "dead_lettered")[] = ["succeeded", "dead_lettered"];

/** Otra ejecución tiene la tarea con su lease vigente: la entrega se reintenta más tarde. */
export class TaskBusyError extends Error {
  override name = "TaskBusyError";
}

/** Esta ejecución ya no tiene la tarea (su lease venció o lo tomó otra): no sigue con los pasos. */
export class TaskLeaseLostError extends Error {
  override name = "TaskLeaseLostError";
}

const leaseExpiry = (leaseMs: number) => sql`now() + make_interval(secs => ${leaseMs / 1000})`;

/** Nadie ejecuta la tarea: no está en curso, o su lease está vacío o vencido. */
const leaseFree = () =>
  or(
    ne(provisioningTasks.status, "running"),
    isNull(provisioningTasks.leaseUntil),
    lt(provisioningTasks.leaseUntil, sql`now()`),
  );

/** Milisegundos que le quedan al lease de la fila (negativo si venció, null si no hay). */
const leaseRemainingMs = () =>
  sql<
    number | null
  >`(extract(epoch from ${provisioningTasks.leaseUntil} - now()) * 1000)::float8`.mapWith(Number);

/**
 * El lease de una ejecución. Su lease_until la identifica: las sentencias que solo valen si la
 * tarea sigue siendo suya lo comparan, y por eso se serializan con la prórroga, que lo cambia.
 */
class TaskLease {
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private lost = false;
  private current: Date;
  /** Vencimiento según el reloj local, contado desde que se pidió la prórroga: conservador. */
  private localExpiry: number;

  constructor(
    private readonly db: Database,
    readonly taskId: string,
    readonly leaseMs: number,
    claimed: { until: Date; requestedAt: number },
    private readonly ctx: HandlerContext<ProvisioningTaskMessage>,
  ) {
    this.current = claimed.until;
    this.localExpiry = claimed.requestedAt + leaseMs;
    this.timer = setInterval(
      () => {
        this.renew().catch((err: unknown) =>
          ctx.logger.warn({ err }, "renewing the provisioning task lease failed"),
        );
      },
      Math.max(10, Math.floor(leaseMs / 3)),
    );
    this.timer.unref();
    // Un handler abandonado por el runtime deja vencer su lease: otra entrega toma la tarea.
    ctx.signal.addEventListener("abort", () => this.stopRenewing(), { once: true });
  }

  get until(): Date {
    return this.current;
  }

  /** Corre `fn` con el lease_until vigente, sin una prórroga en medio. */
  withToken<T>(fn: (until: Date) => Promise<T>): Promise<T> {
    const next = this.queue.then(() => fn(this.current));
    this.queue = next.catch(() => {});
    return next;
  }

  /** Sentencia que prorroga el lease si sigue siendo de esta ejecución. */
  renewal(until: Date) {
    const t = provisioningTasks;
    return this.db
      .update(t)
      .set({ leaseUntil: leaseExpiry(this.leaseMs) })
      .where(and(eq(t.id, this.taskId), eq(t.status, "running"), eq(t.leaseUntil, until)))
      .returning({ leaseUntil: t.leaseUntil });
  }

  /** Condición SQL: la tarea sigue siendo de esta ejecución. */
  owns(until: Date): SQL {
    const t = provisioningTasks;
    return sql`exists (select 1 from ${t} where ${and(eq(t.id, this.taskId), eq(t.leaseUntil, until))})`;
  }

  /**
   * Valla para un cambio de rol (ver RoleFence): bloquea la fila de la tarea si sigue siendo de
   * esta ejecución. Otra entrega que quiera tomarla (o nuestra prórroga) espera al commit, así que
   * el rol no cambia después de que otra ejecución siguió adelante; `check()` antes del paso no
   * basta, el ALTER ROLE puede llegar al servidor mucho después.
   */
  fence(): RoleFence {
    return (client) =>
      this.withToken(async (until) => {
        const { rowCount } = await client.query(
          "select 1 from provisioning_tasks where id = $1 and lease_until = $2::timestamptz for update",
          [this.taskId, until.toISOString()],
        );
        if (!rowCount) {
          this.lose();
          throw new TaskLeaseLostError(`provisioning task ${this.taskId} lost its lease`);
        }
      });
  }

  /** Registra el resultado de una prórroga pedida en `requestedAt` (null: el lease ya no es suyo). */
  renewed(until: Date | null, requestedAt: number): void {
    if (!until) {
      this.lose();
      return;
    }
    this.current = until;
    this.localExpiry = requestedAt + this.leaseMs;
  }

  lose(): void {
    if (this.lost) return;
    this.lost = true;
    this.stopRenewing();
    this.ctx.logger.warn("provisioning task lease lost; this delivery stops");
  }

  /** Antes de cada paso: no se sigue sin el lease (abortado, perdido o vencido sin prorrogar). */
  check(): void {
    this.ctx.signal.throwIfAborted();
    if (this.lost || Date.now() >= this.localExpiry) {
      throw new TaskLeaseLostError(
        `provisioning task ${this.taskId} is no longer leased to this delivery`,
      );
    }
  }

  async renew(): Promise<void> {
    await this.withToken(async (until) => {
      if (this.lost || this.ctx.signal.aborted) return;
      const requestedAt = Date.now();
      const [row] = await this.renewal(until);
      this.renewed(row?.leaseUntil ?? null, requestedAt);
    });
  }

  stopRenewing(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Deja de prorrogar y espera la prórroga en curso: después `until` ya no cambia. */
  async stop(): Promise<void> {
    this.stopRenewing();
    await this.queue;
  }
}

interface TaskContext {
  taskId: string;
  tenantInstanceId: string;
  correlationId: string;
  /** provisioning_tasks.payload: datos propios del tipo de tarea. */
  payload: unknown;
  /** Cuándo se aceptó la petición (provisioning_tasks.created_at): ordena los update_features. */
  requestedAt: Date;
  lease: TaskLease;
  /**
   * La instancia leída al empezar la entrega. Solo sus datos inmutables (id, códigos, cliente,
   * producto, tier) valen para los pasos; el estado o la cadena de conexión se releen.
   */
  snapshot: InstanceRow;
  /**
   * Lo que decidió el paso `activate` en esta entrega (dentro de la transacción que comparte con
   * la bienvenida): así la bienvenida no relee la instancia. Sin valor, se relee.
   */
  activeAfterActivate?: boolean;
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

async function loadInstance(db: Database | Tx, tenantInstanceId: string, lock = false) {
  const query = db
    .select({
      instance: tenantInstances,
      productCode: products.code,
      customerName: customers.legalName,
    })
    .from(tenantInstances)
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
    .where(eq(tenantInstances.id, tenantInstanceId));
  const [row] = lock ? await query.for("update", { of: tenantInstances }) : await query;
  if (!row) throw new PermanentError(`tenant instance ${tenantInstanceId} does not exist`);
  return row;
}

/**
 * La instancia y su suscripción, bloqueadas hasta el commit (decidir y escribir sobre el mismo
 * estado). La suscripción primero: el mismo orden que la API (PATCH de suscripción: suscripción y
 * luego instancia) y que la baja; al revés, los dos se esperaban y Postgres abortaba uno por
 * deadlock. NO KEY UPDATE: no choca con el KEY SHARE de la FK de un override nuevo.
 */
async function loadInstanceLocked(tx: Tx, tenantInstanceId: string) {
  const [subscription] = await tx
    .select()
    .from(subscriptions)
    .where(eq(subscriptions.tenantInstanceId, tenantInstanceId))
    .for("no key update");
  return { ...(await loadInstance(tx, tenantInstanceId, true)), subscription };
}

/** La contraseña de una cadena de conexión guardada ("" si no lleva, como las de PGlite). */
function passwordOf(connectionString: string): string {
  try {
    return decodeURIComponent(new URL(connectionString).password);
  } catch {
    return "";
  }
}

/** Lo que necesitan los pasos de bases propias (Enterprise). */
function enterpriseNeeds(deps: ProvisioningWorkerDeps) {
  if (!deps.dedicated || !deps.secretBox) {
    throw new PermanentError("Enterprise provisioning needs ENCRYPTION_KEYS in the workers");
  }
  return { dedicated: deps.dedicated, box: deps.secretBox };
}

function enterpriseSteps(deps: ProvisioningWorkerDeps, random: () => number): Step[] {
  const need = () => enterpriseNeeds(deps);
  return [
    {
      // La contraseña se fija una sola vez, bajo el lease y antes de tocar el rol: un reintento, o
      // una ejecución abandonada que llega tarde al ALTER ROLE, pone la misma contraseña que la
      // cadena guardada, así esta siempre sirve.
      name: "create_database",
      kind: "external",
      async run(task) {
        const { dedicated, box } = need();
        await simulateProvisionDatabase(deps, random);
        const { instance } = task.snapshot;
        const context = secretContext.connectionString(instance.id);
        const candidate = await box.encrypt(
          dedicated.connectionString(instance.id, randomToken(24)),
          context,
        );
        const [stored] = await task.lease.withToken((until) =>
          deps.db
            .update(tenantInstances)
            .set({
              connectionStringEncrypted: sql`coalesce(${tenantInstances.connectionStringEncrypted}, ${candidate})`,
              encryptionKeyId: sql`case when ${tenantInstances.connectionStringEncrypted} is null then ${box.activeKeyId} else ${tenantInstances.encryptionKeyId} end`,
              updatedAt: sql`now()`,
            })
            .where(and(eq(tenantInstances.id, instance.id), task.lease.owns(until)))
            .returning({ sealed: tenantInstances.connectionStringEncrypted }),
        );
        if (!stored?.sealed) {
          task.lease.lose();
          throw new TaskLeaseLostError(`provisioning task ${task.taskId} lost its lease`);
        }
        const password = passwordOf(await box.decrypt(stored.sealed, context));
        await dedicated.create(instance.id, password, task.lease.fence());
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
          await box.decrypt(
            instance.connectionStringEncrypted,
            secretContext.connectionString(instance.id),
          ),
          productCode,
        );
      },
    },
  ];
}

/**
 * Simulación de ProvisionDatabase() del seed (PROVISIONING_FAILURE_RATE, demora configurable):
 * al empezar el primer paso externo de cada tier, antes de tocar nada.
 */
async function simulateProvisionDatabase(
  deps: ProvisioningWorkerDeps,
  random: () => number,
): Promise<void> {
  if (deps.externalDelayMs) await new Promise((r) => setTimeout(r, deps.externalDelayMs));
  if (deps.failureRate > 0 && random() < deps.failureRate) {
    throw new Error("simulated transient failure in the external provisioning step");
  }
}

function provisionSteps(deps: ProvisioningWorkerDeps, tier: "standard" | "enterprise"): Step[] {
  const random = deps.random ?? Math.random;
  const [, ...common] = standardProvisionSteps(deps, random);
  return tier === "enterprise"
    ? [...enterpriseSteps(deps, random), ...common]
    : standardProvisionSteps(deps, random);
}

function standardProvisionSteps(deps: ProvisioningWorkerDeps, random: () => number): Step[] {
  return [
    {
      name: "register_tenant",
      kind: "external",
      async run(task) {
        const { instance, productCode } = task.snapshot;
        await simulateProvisionDatabase(deps, random);
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
        // Con la fila bloqueada: un borrado de cliente que la suspende a la vez o termina antes
        // (y esta lectura lo ve) o espera a este commit; sin bloqueo, el UPDATE de abajo pisaba
        // su suspensión y la instancia de un cliente borrado quedaba activa.
        const { instance } = await loadInstanceLocked(tx, task.tenantInstanceId);
        // Solo se activa lo que sigue en provisioning: si mientras tanto se suspendió (p. ej. el
        // cliente fue borrado) o se dio de baja, el worker no lo revive.
        task.activeAfterActivate =
          instance.status === "provisioning" || instance.status === "active";
        if (!task.activeAfterActivate) {
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
        // Sin activación no hay bienvenida. Tras `activate` en la misma transacción se sabe ya; si
        // esta entrega retoma la tarea después de él, se relee.
        const active =
          task.activeAfterActivate ??
          (await loadInstance(tx, task.tenantInstanceId)).instance.status === "active";
        if (!active) return {};
        const instance = task.snapshot.instance;
        return {
          events: [
            {
              subject: subjects.welcomeNotification,
              type: "notification.welcome_requested",
              // Solo ids: lo que va al broker queda en JetStream hasta 30 días y el borrado GDPR no
              // llega allí. El worker de notificaciones lee el resto de la base.
              data: { tenantInstanceId: instance.id, customerId: instance.customerId },
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

function deprovisionSteps(
  deps: ProvisioningWorkerDeps,
  tier: "standard" | "enterprise",
  payload: unknown,
): Step[] {
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
    ...(parsed.success && parsed.data?.purge
      ? [dropStep]
      : tier === "enterprise"
        ? [disableLoginStep(deps)]
        : [disableAccessStep(deps)]),
  ];
}

/**
 * Enterprise dado de baja sin purge: sus datos esperan a la retención, pero las credenciales de
 * la app hija dejan de servir ya (una instancia dada de baja no vuelve a estar en servicio).
 */
function disableLoginStep(deps: ProvisioningWorkerDeps): Step {
  return {
    name: "disable_tenant_login",
    kind: "external",
    async run(task) {
      if (!deps.dedicated) {
        throw new PermanentError("Enterprise deprovisioning needs the dedicated databases");
      }
      await deps.dedicated.disableLogin(task.tenantInstanceId);
    },
  };
}

/**
 * Standard dado de baja sin purge: sus filas esperan a la retención en la base compartida, pero la
 * app hija deja de verlas ya (política restrictiva sobre `farutech_tenants.deactivated_at`), como
 * el rol Enterprise sin LOGIN.
 */
function disableAccessStep(deps: ProvisioningWorkerDeps): Step {
  return {
    name: "disable_tenant_access",
    kind: "external",
    async run(task) {
      await deps.registry.deactivate(task.snapshot.productCode, [task.tenantInstanceId]);
    },
  };
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
        // Un PUT aceptado antes de la baja no se aplica después: la API ya no cambia nada de una
        // instancia dada de baja (409) y el worker tampoco. Bloqueada, la baja no cruza este paso.
        const { instance, subscription } = await loadInstanceLocked(tx, task.tenantInstanceId);
        if (instance.status === "decommissioned") {
          return {
            audit: [
              {
                action: "tenant_instance.features_update_skipped",
                entityType: "tenant_instance",
                entityId: instance.id,
                before: { status: instance.status },
                after: { taskId: task.taskId, reason: "instance decommissioned" },
              },
            ],
          };
        }
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

/** Una instancia cuyo rol sigue en uso: ni en provisión ni dada de baja (o sin datos). */
const rotatable = (instance: InstanceRow["instance"]) =>
  (instance.status === "active" || instance.status === "suspended") && !instance.dataDroppedAt;

/**
 * Contraseña nueva para el rol de una base Enterprise. La cadena nueva se fija primero, bajo el
 * lease y una sola vez (un reintento o una ejecución tardía pone la misma al rol); luego se pone
 * al rol, y al final reemplaza a la guardada, con su auditoría, en una transacción. Si entretanto
 * la instancia se dio de baja, la rotación no toca el rol y termina sin guardar nada.
 */
function rotateCredentialSteps(deps: ProvisioningWorkerDeps): Step[] {
  const need = () => enterpriseNeeds(deps);
  return [
    {
      name: "prepare_password",
      kind: "external",
      async run(task) {
        const { dedicated, box } = need();
        // El estado actual, no el de la foto de la entrega (solo vale para lo inmutable).
        const { instance } = await loadInstance(deps.db, task.tenantInstanceId);
        if (instance.databaseTier !== "enterprise") {
          throw new PermanentError(`tenant instance ${instance.id} has no database role to rotate`);
        }
        if (!rotatable(instance)) return;
        const candidate = await box.encrypt(
          dedicated.connectionString(instance.id, randomToken(24)),
          secretContext.pendingConnectionString(instance.id),
        );
        const t = tenantInstances;
        const [stored] = await task.lease.withToken((until) =>
          deps.db
            .update(t)
            .set({
              pendingConnectionStringEncrypted: sql`coalesce(${t.pendingConnectionStringEncrypted}, ${candidate})`,
            })
            .where(and(eq(t.id, instance.id), task.lease.owns(until)))
            .returning({ pending: t.pendingConnectionStringEncrypted }),
        );
        if (!stored?.pending) {
          task.lease.lose();
          throw new TaskLeaseLostError(`provisioning task ${task.taskId} lost its lease`);
        }
      },
    },
    {
      name: "set_password",
      kind: "external",
      async run(task) {
        const { dedicated, box } = need();
        const { instance } = await loadInstance(deps.db, task.tenantInstanceId);
        if (!instance.pendingConnectionStringEncrypted || !rotatable(instance)) return;
        const pending = await box.decrypt(
          instance.pendingConnectionStringEncrypted,
          secretContext.pendingConnectionString(instance.id),
        );
        // Con la valla del lease: una ejecución que perdió la tarea (GC, red) no pone tarde una
        // contraseña que otra rotación ya reemplazó.
        task.lease.check();
        await dedicated.setPassword(instance.id, passwordOf(pending), task.lease.fence());
      },
    },
    {
      name: "store_connection_string",
      kind: "transactional",
      async run(tx, task) {
        const { box } = need();
        const { instance } = await loadInstanceLocked(tx, task.tenantInstanceId);
        const pending = instance.pendingConnectionStringEncrypted;
        if (!pending) return {};
        if (!rotatable(instance)) {
          // Dada de baja a mitad de la rotación: su cadena ya no se guarda (ni la pendiente).
          return {
            statements: [
              tx
                .update(tenantInstances)
                .set({ pendingConnectionStringEncrypted: null })
                .where(eq(tenantInstances.id, instance.id)),
            ],
            audit: [
              {
                action: "tenant_instance.credentials_rotation_skipped",
                entityType: "tenant_instance",
                entityId: instance.id,
                after: { status: instance.status },
              },
            ],
          };
        }
        const plain = await box.decrypt(
          pending,
          secretContext.pendingConnectionString(instance.id),
        );
        const sealed = await box.encrypt(plain, secretContext.connectionString(instance.id));
        return {
          statements: [
            tx
              .update(tenantInstances)
              .set({
                connectionStringEncrypted: sealed,
                encryptionKeyId: box.activeKeyId,
                pendingConnectionStringEncrypted: null,
                updatedAt: sql`now()`,
              })
              .where(eq(tenantInstances.id, instance.id)),
          ],
          audit: [
            {
              action: "tenant_instance.credentials_rotated",
              entityType: "tenant_instance",
              entityId: instance.id,
              before: { encryptionKeyId: instance.encryptionKeyId },
              after: { encryptionKeyId: box.activeKeyId },
            },
          ],
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
      return deprovisionSteps(deps, tier, payload);
    case "update_features":
      return updateFeatureSteps();
    case "rotate_credentials":
      return rotateCredentialSteps(deps);
  }
}

/**
 * Toma la tarea (en curso, con lease) y lee en la misma sentencia su instancia y los pasos ya
 * hechos: un viaje a la base al empezar cada entrega, no tres (con Neon cada viaje son
 * milisegundos). Solo la toma si nadie la ejecuta; si no, la fila previa dice por qué.
 */
async function startTask(
  db: Database,
  message: ProvisioningTaskMessage,
  deliveryCount: number,
  leaseMs: number,
) {
  const { taskId } = message;
  const t = provisioningTasks;
  const started = db.$with("started").as(
    db
      .update(t)
      .set({
        status: "running",
        attempts: deliveryCount,
        startedAt: sql`coalesce(${t.startedAt}, now())`,
        updatedAt: sql`now()`,
        leaseUntil: leaseExpiry(leaseMs),
      })
      .where(
        and(
          eq(t.id, taskId),
          // Un mensaje que no corresponde a su tarea no la toma.
          eq(t.kind, message.kind),
          eq(t.tenantInstanceId, message.tenantInstanceId),
          notInArray(t.status, FINISHED_STATUSES),
          leaseFree(),
        ),
      )
      .returning({
        correlationId: t.correlationId,
        kind: t.kind,
        payload: t.payload,
        tenantInstanceId: t.tenantInstanceId,
        createdAt: t.createdAt,
        leaseUntil: t.leaseUntil,
      }),
  );
  const [row] = await db
    .with(started)
    .select({
      // La fila tal como estaba antes de esta sentencia.
      status: t.status,
      busyForMs: leaseRemainingMs(),
      matches: sql<boolean>`${and(eq(t.kind, message.kind), eq(t.tenantInstanceId, message.tenantInstanceId))}`,
      leaseUntil: started.leaseUntil,
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
    .from(t)
    .leftJoin(started, sql`true`)
    .leftJoin(tenantInstances, eq(tenantInstances.id, started.tenantInstanceId))
    .leftJoin(products, eq(products.id, tenantInstances.productId))
    .leftJoin(customers, eq(customers.id, tenantInstances.customerId))
    .where(eq(t.id, taskId));
  if (!row) return undefined;
  const { leaseUntil, correlationId, kind, createdAt, tenantInstanceId } = row;
  if (leaseUntil && correlationId !== null && kind && createdAt && tenantInstanceId) {
    return {
      state: "claimed" as const,
      leaseUntil,
      task: { correlationId, kind, payload: row.payload, createdAt, tenantInstanceId },
      instance: row.instance,
      productCode: row.productCode,
      customerName: row.customerName,
      done: row.done,
    };
  }
  if (!row.matches) return { state: "mismatch" as const };
  if (row.status === "succeeded" || row.status === "dead_lettered") {
    return { state: "finished" as const };
  }
  // Una toma bloqueada por otra que ganó ve la fila previa: sin lease vigente, se reintenta pronto.
  return { state: "busy" as const, busyForMs: Math.max(0, row.busyForMs ?? 0) };
}

/**
 * Toma la tarea o espera, como mucho un lease, a que la suelte quien la tiene: el lease de un
 * handler abandonado vence en ese plazo, y los pocos reintentos del runtime (segundos) se
 * agotarían antes. Si sigue ocupada, TaskBusyError: la entrega se reintenta más tarde.
 */
async function claimTask(
  db: Database,
  ctx: HandlerContext<ProvisioningTaskMessage>,
  leaseMs: number,
) {
  const { taskId } = ctx.data;
  const deadline = Date.now() + leaseMs + LEASE_SLACK_MS;
  for (let poll = 0; ; poll++) {
    const requestedAt = Date.now();
    const claim = await startTask(db, ctx.data, ctx.deliveryCount, leaseMs);
    if (!claim) throw new PermanentError(`provisioning task ${taskId} does not exist`);
    if (claim.state === "mismatch") {
      throw new PermanentError(`message does not match provisioning task ${taskId}`);
    }
    if (claim.state !== "busy") return { ...claim, requestedAt };
    const waitMs = Math.min(
      claim.busyForMs + LEASE_SLACK_MS,
      Math.max(10, Math.floor(leaseMs / 3)),
      deadline - Date.now(),
    );
    if (waitMs <= 0) {
      // taskId ya va en ctx.logger (logFields).
      ctx.logger.warn("provisioning task is still leased by another run; will retry");
      throw new TaskBusyError(`provisioning task ${taskId} is running in another delivery`);
    }
    if (poll === 0) {
      ctx.logger.info(
        { busyForMs: claim.busyForMs },
        "provisioning task is leased by another run; waiting for it",
      );
    }
    await delay(waitMs, undefined, { signal: ctx.signal }).catch(() => {});
    ctx.signal.throwIfAborted();
  }
}

/**
 * Upsert de la fila del paso; `attempt` suma un intento (inicio de un paso externo o fin de uno
 * transaccional). Con `onlyIf`, una fila existente solo cambia si se cumple.
 */
function stepRecord(
  db: Pick<Database, "insert">,
  taskId: string,
  name: string,
  position: number,
  status: "running" | "succeeded" | "failed",
  options: { attempt: boolean; error?: string; onlyIf?: SQL },
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
      ...(options.onlyIf ? { setWhere: options.onlyIf } : {}),
    });
}

/**
 * Inicio de un paso externo: prorroga el lease y marca el paso en una sola sentencia. Sin lease
 * el paso no empieza (y una fila ya existente del paso, de quien tiene la tarea, no cambia).
 */
async function startExternalStep(db: Database, task: TaskContext, name: string, position: number) {
  const { lease } = task;
  await lease.withToken(async (until) => {
    lease.check();
    const renewed = db.$with("lease").as(lease.renewal(until));
    const requestedAt = Date.now();
    const [row] = await stepRecord(db.with(renewed), task.taskId, name, position, "running", {
      attempt: true,
      onlyIf: sql`exists (select 1 from ${renewed})`,
    }).returning({
      leaseUntil: sql<Date | null>`(select ${renewed.leaseUntil} from ${renewed})`.mapWith(
        provisioningTasks.leaseUntil,
      ),
    });
    lease.renewed(row?.leaseUntil ?? null, requestedAt);
  });
  lease.check();
}

/** Marca el fin de un paso si la tarea sigue siendo de esta ejecución; devuelve si la marcó. */
async function markStep(
  db: Database,
  task: TaskContext,
  name: string,
  position: number,
  status: "succeeded" | "failed",
  options: { attempt: boolean; error?: string },
): Promise<boolean> {
  const rows = await task.lease.withToken((until) =>
    stepRecord(db, task.taskId, name, position, status, {
      ...options,
      onlyIf: task.lease.owns(until),
    }).returning({ name: provisioningTaskSteps.name }),
  );
  return rows.length > 0;
}

/** Bloquea la fila de la tarea si sigue siendo de esta ejecución (su lease_until); si no, la pierde. */
async function holdLease(tx: Tx, lease: TaskLease, until: Date): Promise<void> {
  const t = provisioningTasks;
  const [row] = await tx
    .select({ id: t.id })
    .from(t)
    .where(and(eq(t.id, lease.taskId), eq(t.leaseUntil, until)))
    .for("update");
  if (row) return;
  lease.lose();
  throw new TaskLeaseLostError(`provisioning task ${lease.taskId} lost its lease`);
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

/** Qué paso falló, en el log del mensaje: operaciones no tiene que consultar la tabla de pasos. */
function stepFailed(
  ctx: HandlerContext<ProvisioningTaskMessage>,
  step: string,
  err: unknown,
): void {
  // Un lease perdido no es un fallo del paso: otra ejecución sigue con la tarea.
  if (err instanceof TaskLeaseLostError) return;
  ctx.logger.warn({ step, error: errorMessage(err) }, "provisioning step failed");
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
    task.lease.check();
    if (step.kind === "external") {
      // Un paso externo marca su inicio antes de actuar: si el worker muere, queda "running"
      // con su intento contado.
      await startExternalStep(deps.db, task, step.name, position);
      try {
        await step.run(task);
        if (
          !(await markStep(deps.db, task, step.name, position, "succeeded", { attempt: false }))
        ) {
          task.lease.lose();
          throw new TaskLeaseLostError(`provisioning task ${task.taskId} lost its lease`);
        }
      } catch (err) {
        await markStep(deps.db, task, step.name, position, "failed", {
          attempt: false,
          error: errorMessage(err),
        }).catch(() => {});
        stepFailed(ctx, step.name, err);
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
    // La transacción que termina la tarea vacía su lease: ninguna prórroga debe cruzarse con ella.
    if (last) await task.lease.stop();
    let current = first;
    try {
      // Efecto, auditoría, eventos y marca de cada paso se confirman juntos: nunca a medias. Con
      // el lease en la mano (sin prórroga en medio) y la fila bloqueada: si otra ejecución tomó la
      // tarea entretanto, nada de esto se confirma (ni un segundo aviso, ni `succeeded` tardío).
      const queued = await task.lease.withToken((until) =>
        deps.db.transaction(async (tx) => {
          await holdLease(tx, task.lease, until);
          const events: QueuedEvent[] = [];
          for (const [n, entry] of batch.entries()) {
            current = entry;
            const [pos, s] = entry;
            if (s.kind !== "transactional") continue;
            const extra = last && n === batch.length - 1 ? [finish(tx)] : [];
            events.push(...(await applyStepWrites(tx, task, s, pos, await s.run(tx, task), extra)));
          }
          return events;
        }),
      );
      finished = last;
      await publishQueued(deps.db, deps.bus, queued, ctx.logger);
    } catch (err) {
      const [pos, s] = current;
      await markStep(deps.db, task, s.name, pos, "failed", {
        attempt: true,
        error: errorMessage(err),
      }).catch(() => {});
      stepFailed(ctx, s.name, err);
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
  const leaseMs = deps.leaseMs ?? DEFAULT_LEASE_MS;
  // El lease de cada entrega que tomó su tarea, para onRetry y onDeadLetter (mismo sobre).
  const leases = new WeakMap<EventEnvelope, TaskLease>();
  return {
    name: PROVISIONING_WORKER,
    domain: "provisioning",
    filterSubject: "provisioning.tasks.>",
    schema: provisioningTaskMessageSchema,
    logFields: (data) => ({ taskId: data.taskId, tenantInstanceId: data.tenantInstanceId }),
    async alreadyProcessed(_envelope, data, attempt) {
      // En la primera entrega no se pregunta: si la tarea ya terminó (el mismo evento publicado
      // dos veces), la toma lo ve y el mensaje se confirma igual. Una consulta menos por tarea.
      if (attempt === 1) return false;
      const [task] = await deps.db
        .select({ status: provisioningTasks.status })
        .from(provisioningTasks)
        .where(eq(provisioningTasks.id, data.taskId));
      return task?.status === "succeeded" || task?.status === "dead_lettered";
    },
    async handle(ctx) {
      const { taskId, tenantInstanceId } = ctx.data;
      const claim = await claimTask(deps.db, ctx, leaseMs);
      if (claim.state === "finished") {
        // Otra entrega la terminó mientras esta esperaba.
        ctx.logger.info("provisioning task already finished by another run; acknowledging");
        return;
      }
      const lease = new TaskLease(
        deps.db,
        taskId,
        leaseMs,
        { until: claim.leaseUntil, requestedAt: claim.requestedAt },
        ctx,
      );
      leases.set(ctx.envelope, lease);
      try {
        const { task, instance, productCode, customerName } = claim;
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
              leaseUntil: null,
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
            lease,
          },
          ctx,
          finish,
          new Set(claim.done),
        );
        if (!finished) {
          await lease.stop();
          await lease.withToken((until) =>
            deps.db.transaction(async (tx) => {
              await holdLease(tx, lease, until);
              await finish(tx);
            }),
          );
        }
        ctx.logger.info("provisioning task succeeded");
      } finally {
        await lease.stop();
      }
    },
    async onRetry(ctx, error) {
      const t = provisioningTasks;
      const lease = leases.get(ctx.envelope);
      // Sin lease propio (la tarea era de otra ejecución) la fila no es de esta entrega.
      if (!lease) return;
      if (ctx.signal.aborted) {
        // El handler abandonado sigue corriendo: la tarea sigue en curso hasta que venza su lease.
        await deps.db
          .update(t)
          .set({ lastError: error, updatedAt: sql`now()` })
          .where(and(eq(t.id, ctx.data.taskId), eq(t.status, "running")));
        return;
      }
      // Su mensaje pudo ir a la DLQ entretanto (otra copia agotó las entregas mientras esta
      // ejecución, muda para NATS, tenía la tarea): en `queued` nadie la retomaría. Queda en la DLQ.
      const [dead] = await deps.db
        .select()
        .from(dlqEntries)
        .where(and(eq(dlqEntries.eventId, ctx.envelope.id), isNull(dlqEntries.replayedAt)))
        .limit(1);
      if (dead) {
        const log = ctx.logger.child({ dlqEntryId: dead.id });
        const outcome = await markDeadLettered(
          deps.db,
          {
            envelope: ctx.envelope,
            subject: dead.subject,
            streamSequence: dead.streamSequence,
            deliveries: dead.deliveries,
            error,
            permanent: false,
          },
          ctx.data,
          lease.until,
        );
        if (outcome.state === "marked") {
          await publishQueued(deps.db, deps.bus, outcome.queued, log);
          log.warn("task dead-lettered: its message went to the DLQ while this run held the task");
        }
        return;
      }
      // El handler ya terminó (y con él sus prórrogas): `until` es el valor final.
      await deps.db
        .update(t)
        .set({ status: "queued", lastError: error, leaseUntil: null, updatedAt: sql`now()` })
        .where(and(eq(t.id, ctx.data.taskId), eq(t.leaseUntil, lease.until)));
    },
    async onDeadLetter(info, parsed, signal, logger) {
      // Un mensaje que no pasa el esquema (p. ej. un tipo de tarea de una versión más nueva) aún
      // nombra su tarea: se marca muerta para que no quede en curso para siempre y se pueda
      // reprocesar. Sin tarea legible avisa el runtime con su aviso genérico.
      const data = parsed ?? taskOfUnreadable(info.envelope?.data);
      if (!data) return undefined;
      // El del mensaje (intento, evento, correlación) si lo da el runtime; ya suele llevar taskId
      // (logFields): solo se añade lo que falte, pues pino repetiría la clave en la línea.
      const base = logger ?? deps.logger ?? silentLogger;
      const log = base.child(
        eventFields(base, { taskId: data.taskId, tenantInstanceId: data.tenantInstanceId }),
      );
      const mine = info.envelope ? leases.get(info.envelope)?.until : undefined;
      for (let attempt = 1; ; attempt++) {
        const outcome = await markDeadLettered(deps.db, info, data, mine);
        if (outcome.state === "marked") {
          await publishQueued(deps.db, deps.bus, outcome.queued, log);
          // Su aviso (provisioning_failed, con la instancia) ya va en el outbox: no hace falta otro.
          return { operatorsAlerted: true };
        }
        if (outcome.state === "finished") return undefined;
        if (attempt > 1) {
          // Solo murió este mensaje (un duplicado): la ejecución viva termina la tarea.
          log.info(
            { busyForMs: outcome.busyForMs },
            "dead-lettered message left its task alone: another live run holds the task lease",
          );
          return undefined;
        }
        // El lease puede ser de una ejecución muerta (la que agotó las entregas): vence solo en
        // como mucho un lease; si para entonces alguien lo prorrogó, está viva. Si el runtime deja
        // de esperar (plazo de drenado), la espera se corta y el hook lanza: otra entrega lo repite.
        await delay(
          Math.min(outcome.busyForMs + LEASE_SLACK_MS, leaseMs + LEASE_SLACK_MS),
          undefined,
          { signal },
        );
      }
    },
  };
}

const taskRefSchema = z.object({ taskId: z.uuid(), tenantInstanceId: z.uuid() });
type TaskRef = z.infer<typeof taskRefSchema>;

/** La tarea que nombra un mensaje ilegible para este worker, si nombra una. */
function taskOfUnreadable(data: unknown): TaskRef | undefined {
  const ref = taskRefSchema.safeParse(data);
  return ref.success ? ref.data : undefined;
}

/**
 * Marca la tarea como muerta, con su instancia fallida, la auditoría y el aviso a operaciones,
 * salvo que esté terminada o que otra ejecución tenga su lease vigente (`mine`: el de esta entrega).
 */
async function markDeadLettered(
  db: Database,
  info: DeadLetterInfo,
  data: TaskRef,
  mine: Date | undefined,
): Promise<
  | { state: "marked"; queued: QueuedEvent[] }
  | { state: "finished" }
  | { state: "held"; busyForMs: number }
> {
  const t = provisioningTasks;
  return db.transaction(async (tx) => {
    // Una tarea terminada (o ya en la DLQ) no cambia: ni instancia fallida ni segundo aviso.
    const marked = await tx
      .update(t)
      .set({
        status: "dead_lettered",
        attempts: info.deliveries,
        lastError: info.error,
        finishedAt: sql`now()`,
        updatedAt: sql`now()`,
        leaseUntil: null,
      })
      .where(
        and(
          eq(t.id, data.taskId),
          // Un mensaje que nombra la tarea de otra instancia no la marca.
          eq(t.tenantInstanceId, data.tenantInstanceId),
          notInArray(t.status, FINISHED_STATUSES),
          mine ? or(leaseFree(), eq(t.leaseUntil, mine)) : leaseFree(),
        ),
      )
      .returning({ id: t.id, kind: t.kind });
    if (marked.length === 0) {
      const [row] = await tx
        .select({ status: t.status, busyForMs: leaseRemainingMs() })
        .from(t)
        .where(and(eq(t.id, data.taskId), eq(t.tenantInstanceId, data.tenantInstanceId)));
      if (!row || row.status === "succeeded" || row.status === "dead_lettered") {
        return { state: "finished" as const };
      }
      return { state: "held" as const, busyForMs: Math.max(0, row.busyForMs ?? 0) };
    }
    // Solo una provisión muerta deja la instancia fallida: un cambio de features o una baja
    // muertos no dicen nada de la provisión, que puede seguir en curso y terminar bien.
    const failed =
      marked[0]?.kind !== "provision"
        ? []
        : await tx
            .update(tenantInstances)
            .set({
              status: "failed",
              rowVersion: sql`${tenantInstances.rowVersion} + 1`,
              updatedAt: sql`now()`,
            })
            .where(
              and(
                eq(tenantInstances.id, data.tenantInstanceId),
                eq(tenantInstances.status, "provisioning"),
              ),
            )
            .returning({ id: tenantInstances.id });
    await writeAudit(tx, {
      actor: ACTOR,
      action: "provisioning_task.dead_lettered",
      entityType: "provisioning_task",
      entityId: data.taskId,
      after: { error: info.error, deliveries: info.deliveries },
      correlationId: info.envelope?.correlationId ?? null,
    });
    // Operaciones recibe un aviso (NotificationWorker) en la misma transacción.
    const alert = await enqueueEvent(tx, {
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
    // El estado de la instancia forma parte de sus entitlements (edge e IntegrationWorker).
    const changed =
      failed.length > 0
        ? [
            await enqueueEvent(tx, {
              subject: subjects.entitlementsChanged,
              type: "entitlements.changed",
              correlationId: info.envelope?.correlationId ?? null,
              data: { tenantInstanceId: data.tenantInstanceId, reason: "provisioning.failed" },
            }),
          ]
        : [];
    return { state: "marked" as const, queued: [alert, ...changed] };
  });
}
