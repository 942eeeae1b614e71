import {
  type AnyColumn,
  and,
  asc,
  eq,
  inArray,
  isNotNull,
  isNull,
  like,
  lt,
  notExists,
  or,
  type SQL,
  sql,
} from "drizzle-orm";
import type { Bus } from "../../core/bus";
import { AppError } from "../../core/errors";
import { PROBLEM_CONTENT_TYPE, toProblem } from "../../core/http/problem";
import { newId, parseJsonOrUndefined } from "../../core/ids";
import type { Logger } from "../../core/logger";
import { kubernetesNamespaceFor, subdomainUrlFor, tenantCodeFor } from "../../core/tenancy";
import { type AuditEntry, writeAudit } from "../../db/audit";
import { enqueueEvent, type NewEvent, publishQueued, type QueuedEvent } from "../../db/outbox";
import {
  apiClients,
  auditLog,
  customers,
  dlqEntries,
  idempotencyKeys,
  outboxEvents,
  provisioningTasks,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import { type Database, type Executor, rowsOf } from "../../db/types";
import type { CustomerRow } from "../routes/customers/schema";
import { notFound } from "./concurrency";
import { softDeleteWithin } from "./customers";
import { requestDeprovision } from "./deprovisioning";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

/*
 * GDPR (seed 001 §5): derecho al olvido = borrado lógico (DELETE /api/customers/{id}) y borrado
 * definitivo programado de los datos personales. El proceso de workers llama periódicamente a
 * `eraseExpiredCustomers` con el plazo de retención de la variable de entorno
 * GDPR_RETENTION_DAYS (días enteros, 30 por defecto; ver `gdprRetentionDays`).
 * `POST /api/customers/{id}/erase` hace el borrado definitivo al momento.
 */
export const GDPR_RETENTION_DAYS_ENV = "GDPR_RETENTION_DAYS";
export const DEFAULT_GDPR_RETENTION_DAYS = 30;

/** Plazo de retención leído del entorno; un valor inválido es un error de configuración. */
export function gdprRetentionDays(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env[GDPR_RETENTION_DAYS_ENV]?.trim();
  if (raw === undefined || raw === "") return DEFAULT_GDPR_RETENTION_DAYS;
  const days = Number(raw);
  if (!/^\d{1,5}$/.test(raw) || !Number.isSafeInteger(days)) {
    throw new Error(`${GDPR_RETENTION_DAYS_ENV} must be a whole number of days, got "${raw}"`);
  }
  return days;
}

/** Nombres de una instancia que salen de la razón social del cliente. */
const NAMED_FIELDS = ["tenantCode", "kubernetesNamespace", "subdomainUrl"] as const;

/** Campos con datos personales que el borrado reemplaza. */
export const ERASED_FIELDS = ["legalName", "taxId", "billingEmail"] as const;

/** Lo mismo que calcula la columna generada customers.tax_id_key. */
export function taxIdKeyOf(taxId: string): string {
  return taxId.replace(/[^0-9A-Za-z]/g, "").toUpperCase();
}

export function erasedValues(id: string) {
  return {
    legalName: `erased-${id.slice(0, 8)}`,
    taxId: `erased-${id}`,
    billingEmail: `erased+${id}@invalid.farutech`,
  };
}

type Audit = Omit<AuditEntry, "actor" | "correlationId">;
type Event = Omit<NewEvent, "correlationId">;

/** Reemplaza, en cualquier profundidad, los textos que son datos personales. */
function redact(value: unknown, replacements: ReadonlyMap<string, string>): unknown {
  if (typeof value === "string") return replacements.get(value) ?? value;
  if (Array.isArray(value)) return value.map((v) => redact(v, replacements));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, replacements)]));
  }
  return value;
}

/**
 * El nombre de los clientes OAuth borrados, solo donde es su nombre (`{clientId, name}` de su vista):
 * un nombre puede ser un valor corriente ("production") que en otros campos no se toca.
 */
function renameClients(value: unknown, erasedNames: ReadonlyMap<string, string>): unknown {
  if (erasedNames.size === 0) return value;
  if (Array.isArray(value)) return value.map((v) => renameClients(v, erasedNames));
  if (value && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => [k, renameClients(v, erasedNames)]);
    const object = Object.fromEntries(entries) as Record<string, unknown>;
    const erased =
      typeof object.clientId === "string" ? erasedNames.get(object.clientId) : undefined;
    if (erased && typeof object.name === "string") object.name = erased;
    return object;
  }
  return value;
}

/** Lo mismo sobre un texto JSON guardado; si no es JSON, reemplaza los valores dentro del texto. */
function redactJsonText(
  text: string,
  replacements: ReadonlyMap<string, string>,
  erasedNames: ReadonlyMap<string, string> = new Map(),
): string {
  const parsed = parseJsonOrUndefined(text);
  if (parsed !== undefined) {
    return JSON.stringify(renameClients(redact(parsed, replacements), erasedNames));
  }
  let out = text;
  for (const [from, to] of replacements) if (from) out = out.split(from).join(to);
  return out;
}

/**
 * El subdominio con el nombre borrado, bajo `.invalid` (RFC 2606: nunca resuelve). No se conserva
 * nada del actual: un dominio propio (`erp.portal.zapateria-quintero.com.co`) lleva el nombre del
 * cliente en cualquier etiqueta.
 */
function erasedSubdomain(
  erasedLegalName: string,
  instance: { id: string; instanceCode: string },
): string {
  return subdomainUrlFor(erasedLegalName, instance.instanceCode, "invalid", instance.id);
}

interface ErasureOutcome {
  customer: CustomerRow;
  audit: Audit[];
  events: Event[];
}

/**
 * Borrado definitivo dentro de una transacción abierta (el cliente ya está borrado lógicamente y
 * bloqueado). Se conservan los ids para la integridad referencial. También se tachan los datos
 * personales de la auditoría previa del cliente y de las respuestas guardadas por Idempotency-Key:
 * si no, el "olvido" sería solo aparente.
 */
async function eraseWithin(tx: Executor, customer: CustomerRow): Promise<ErasureOutcome> {
  const id = customer.id;
  const values = erasedValues(id);
  // El momento del borrado, ya con el cliente bloqueado (no el inicio de la transacción ni el de
  // la pasada): una petición que confirmó antes queda antes (ver redactLateStoredResponses).
  const at = sql`clock_timestamp()`;
  const [erased] = await tx
    .update(customers)
    .set({
      ...values,
      erasedAt: at,
      isActive: false,
      rowVersion: sql`${customers.rowVersion} + 1`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(customers.id, id), isNull(customers.erasedAt)))
    .returning();
  if (!erased) throw new Error(`customer ${id} could not be erased`);

  const revoked = await tx
    .update(apiClients)
    .set({ revokedAt: at })
    .where(and(eq(apiClients.customerId, id), isNull(apiClients.revokedAt)))
    // El id público (tnt_…), el mismo con que se audita su creación y su revocación por la API.
    .returning({ id: apiClients.clientId });
  // El nombre de un cliente OAuth suele llevar el del cliente («App de Zapatería Quintero»): todos
  // los suyos, revocados o no, pasan a `erased-<id>`, y su auditoría se tacha con el resto.
  const clients = await tx
    .update(apiClients)
    .set({ name: sql`'erased-' || ${apiClients.clientId}` })
    .where(eq(apiClients.customerId, id))
    .returning({ clientId: apiClients.clientId, name: apiClients.name });
  const clientIds = clients.map((c) => c.clientId);
  const erasedClientNames = new Map(clients.map((c) => [c.clientId, c.name]));

  const history = await tx
    .select({ id: auditLog.id, before: auditLog.before, after: auditLog.after })
    .from(auditLog)
    .where(and(eq(auditLog.entityType, "customer"), eq(auditLog.entityId, id)));
  // Valores actuales y los que tuvo antes (p. ej. un correo cambiado con PATCH).
  // tax_id_key (columna generada) es el mismo dato sin separadores: se borra igual.
  const erasedKey = taxIdKeyOf(values.taxId);
  const replacements = new Map<string, string>([
    ...ERASED_FIELDS.map((f) => [customer[f], values[f]] as const),
    [customer.taxIdKey, erasedKey],
  ]);
  for (const row of history) {
    for (const snapshot of [row.before, row.after]) {
      if (!snapshot || typeof snapshot !== "object") continue;
      for (const f of ERASED_FIELDS) {
        const old: unknown = (snapshot as Record<string, unknown>)[f];
        if (typeof old === "string" && old !== values[f]) replacements.set(old, values[f]);
      }
      const oldKey: unknown = (snapshot as Record<string, unknown>).taxIdKey;
      if (typeof oldKey === "string" && oldKey !== erasedKey) replacements.set(oldKey, erasedKey);
    }
  }
  // Código, namespace y subdominio de las instancias salen de la razón social: se renombran con
  // el nombre borrado (la base propia se nombra por el id, así que nada físico depende de ellos).
  const instances = await tx
    .select({
      id: tenantInstances.id,
      instanceCode: tenantInstances.instanceCode,
      tenantCode: tenantInstances.tenantCode,
      kubernetesNamespace: tenantInstances.kubernetesNamespace,
      subdomainUrl: tenantInstances.subdomainUrl,
    })
    .from(tenantInstances)
    .where(eq(tenantInstances.customerId, id))
    .for("update");
  const renamedById = new Map<string, Record<(typeof NAMED_FIELDS)[number], string>>();
  for (const instance of instances) {
    const tenantCode = tenantCodeFor(values.legalName, instance.instanceCode, instance.id);
    const renamed = {
      tenantCode,
      kubernetesNamespace: kubernetesNamespaceFor(tenantCode),
      subdomainUrl: erasedSubdomain(values.legalName, instance),
    };
    renamedById.set(instance.id, renamed);
    for (const field of NAMED_FIELDS) {
      if (instance[field]) replacements.set(instance[field], renamed[field]);
    }
    await tx
      .update(tenantInstances)
      .set({
        ...renamed,
        rowVersion: sql`${tenantInstances.rowVersion} + 1`,
        updatedAt: sql`now()`,
      })
      .where(eq(tenantInstances.id, instance.id));
  }
  const instanceIds = instances.map((i) => i.id);
  const related = [id, ...instanceIds, ...clientIds];

  // Historia de las instancias y sus suscripciones: la auditoría de la provisión copió los nombres.
  const subscriptionIds = instanceIds.length
    ? (
        await tx
          .select({ id: subscriptions.id })
          .from(subscriptions)
          .where(inArray(subscriptions.tenantInstanceId, instanceIds))
      ).map((r) => r.id)
    : [];
  const relatedHistory =
    instanceIds.length + clientIds.length
      ? await tx
          .select({
            id: auditLog.id,
            entityId: auditLog.entityId,
            before: auditLog.before,
            after: auditLog.after,
          })
          .from(auditLog)
          .where(inArray(auditLog.entityId, [...instanceIds, ...subscriptionIds, ...clientIds]))
      : [];
  // Los nombres que tuvo antes cada instancia (p. ej. un subdominio cambiado con PATCH) también
  // salían de la razón social.
  for (const row of relatedHistory) {
    const renamed = renamedById.get(row.entityId);
    if (!renamed) continue;
    for (const snapshot of [row.before, row.after]) {
      if (!snapshot || typeof snapshot !== "object") continue;
      for (const field of NAMED_FIELDS) {
        const old: unknown = (snapshot as Record<string, unknown>)[field];
        if (typeof old === "string" && old !== renamed[field])
          replacements.set(old, renamed[field]);
      }
    }
  }
  let redactedAuditEntries = 0;
  for (const row of [...history, ...relatedHistory]) {
    const before = renameClients(redact(row.before, replacements), erasedClientNames);
    const after = renameClients(redact(row.after, replacements), erasedClientNames);
    if (
      JSON.stringify(before) === JSON.stringify(row.before) &&
      JSON.stringify(after) === JSON.stringify(row.after)
    ) {
      continue;
    }
    await tx.update(auditLog).set({ before, after }).where(eq(auditLog.id, row.id));
    redactedAuditEntries++;
  }

  const mentions = (column: SQL | AnyColumn) =>
    or(...related.map((relatedId) => like(sql`${column}::text`, `%${relatedId}%`)));
  const stored = await tx
    .select({
      actor: idempotencyKeys.actor,
      key: idempotencyKeys.key,
      body: idempotencyKeys.responseBody,
    })
    .from(idempotencyKeys)
    .where(mentions(idempotencyKeys.responseBody));
  for (const row of stored) {
    if (row.body === null) continue;
    const body = redactJsonText(row.body, replacements, erasedClientNames);
    if (body === row.body) continue;
    await tx
      .update(idempotencyKeys)
      .set({ responseBody: body })
      .where(and(eq(idempotencyKeys.actor, row.actor), eq(idempotencyKeys.key, row.key)));
  }

  // Respuestas y datos de las tareas, eventos del outbox (p. ej. el correo de bienvenida) y
  // mensajes en la DLQ: copias de los mismos datos.
  if (instanceIds.length) {
    const tasks = await tx
      .select({
        id: provisioningTasks.id,
        response: provisioningTasks.response,
        payload: provisioningTasks.payload,
      })
      .from(provisioningTasks)
      .where(inArray(provisioningTasks.tenantInstanceId, instanceIds));
    for (const task of tasks) {
      await tx
        .update(provisioningTasks)
        .set({
          response: redact(task.response, replacements),
          payload: redact(task.payload, replacements),
        })
        .where(eq(provisioningTasks.id, task.id));
    }
  }
  const events = await tx
    .select({ id: outboxEvents.id, payload: outboxEvents.payload })
    .from(outboxEvents)
    .where(mentions(outboxEvents.payload));
  for (const event of events) {
    await tx
      .update(outboxEvents)
      .set({ payload: redact(event.payload, replacements) })
      .where(eq(outboxEvents.id, event.id));
  }
  const dead = await tx
    .select({ id: dlqEntries.id, envelope: dlqEntries.envelope, raw: dlqEntries.rawPayload })
    .from(dlqEntries)
    .where(mentions(dlqEntries.rawPayload));
  for (const entry of dead) {
    await tx
      .update(dlqEntries)
      .set({
        envelope: redact(entry.envelope, replacements),
        rawPayload: redactJsonText(entry.raw, replacements),
      })
      .where(eq(dlqEntries.id, entry.id));
  }

  const revokedApiClientIds = revoked.map((r) => r.id);
  const erasedAtIso = erased.erasedAt?.toISOString() ?? null;
  return {
    customer: erased,
    audit: [
      {
        action: "customer.erased",
        entityType: "customer",
        entityId: id,
        // Solo qué se borró, nunca el valor borrado.
        before: { erasedFields: [...ERASED_FIELDS] },
        after: {
          erasedAt: erasedAtIso,
          revokedApiClientIds,
          redactedAuditEntries,
          renamedInstanceIds: instanceIds,
        },
      },
      ...revokedApiClientIds.map((clientId) => ({
        action: "api_client.revoked",
        entityType: "api_client",
        entityId: clientId,
        after: { revokedAt: erasedAtIso, reason: "customer.erased" },
      })),
    ],
    events: [
      domainEvent("customer", "erased", {
        customerId: id,
        erasedAt: erasedAtIso,
        revokedApiClientIds,
      }),
    ],
  };
}

/**
 * Derecho al olvido inmediato: borra lógicamente si hacía falta (suspende instancias) y borra los
 * datos personales. Sobre un cliente ya borrado devuelve el cliente sin cambiar nada.
 */
export async function eraseCustomerNow(ctx: ServiceContext, id: string): Promise<CustomerRow> {
  const erased = await mutate(ctx, async (tx) => {
    const [current] = await tx.select().from(customers).where(eq(customers.id, id)).for("update");
    if (!current) throw notFound("Customer", id);
    if (current.erasedAt) return { result: current, audit: [] };
    const audit: Audit[] = [];
    const events: Event[] = [];
    let target = current;
    if (!current.deletedAt) {
      const deleted = await softDeleteWithin(tx, current);
      audit.push(...deleted.audit);
      events.push(...deleted.events);
      target = deleted.customer;
    }
    // Los reemplazos usan los valores originales (el borrado lógico no los cambia).
    const outcome = await eraseWithin(tx, target);
    return {
      result: outcome.customer,
      audit: [...audit, ...outcome.audit],
      events: [...events, ...outcome.events],
    };
  });
  // Tras confirmar el borrado: si falla, la siguiente pasada de mantenimiento lo pide.
  await purgeErasedCustomersData(ctx, { customerId: id }).catch((err: unknown) => {
    ctx.logger.error({ err, customerId: id }, "gdpr purge of tenant data could not be requested");
  });
  return erased;
}

/** Correlation id fijo de la baja GDPR de una instancia: repetir la pasada no crea otra tarea. */
export const gdprPurgeCorrelationId = (tenantInstanceId: string) =>
  `gdpr-purge-${tenantInstanceId}`;

export interface ErasedDataPurge {
  /** Instancias con su tarea de baja con purge recién pedida. */
  requested: string[];
  /** Instancias cuya tarea ya existía (en curso, o en la DLQ esperando a un operador). */
  alreadyRequested: string[];
  /** Instancias que aún no pueden darse de baja (p. ej. su provisioning sigue en curso). */
  waiting: string[];
  /** Instancias cuya petición falló (p. ej. la base no respondió); se reintentan en la próxima pasada. */
  failed: string[];
}

/**
 * Los datos de tenant de un cliente borrado (GDPR) también se borran: cada instancia suya con
 * datos se da de baja con purge, con la misma tarea que DELETE /api/provisioning/{id}?purge=true
 * (base propia y rol, o filas y registro en la base compartida). La llaman el borrado inmediato y
 * cada pasada de mantenimiento, que reintenta lo que quedó esperando.
 */
export async function purgeErasedCustomersData(
  ctx: Omit<ServiceContext, "correlationId">,
  options: { customerId?: string; limit?: number } = {},
): Promise<ErasedDataPurge> {
  const t = tenantInstances;
  const rows = await ctx.db
    .select({ id: t.id })
    .from(t)
    .innerJoin(customers, eq(customers.id, t.customerId))
    .where(
      and(
        isNotNull(customers.erasedAt),
        isNull(t.dataDroppedAt),
        options.customerId === undefined ? undefined : eq(customers.id, options.customerId),
        // Las que ya tienen su tarea (en curso, o en la DLQ esperando a un operador) no ocupan
        // el lote: con muchas atascadas, las demás no esperarían para siempre.
        notExists(
          ctx.db
            .select({ id: provisioningTasks.id })
            .from(provisioningTasks)
            .where(eq(provisioningTasks.correlationId, sql`'gdpr-purge-' || ${t.id}::text`)),
        ),
      ),
    )
    .orderBy(asc(t.id))
    .limit(options.limit ?? 100);
  const outcome: ErasedDataPurge = {
    requested: [],
    alreadyRequested: [],
    waiting: [],
    failed: [],
  };
  for (const { id } of rows) {
    try {
      const task = await requestDeprovision(
        { ...ctx, correlationId: gdprPurgeCorrelationId(id) },
        id,
        { purge: true },
        undefined,
      );
      (task.replayed ? outcome.alreadyRequested : outcome.requested).push(id);
    } catch (err) {
      // Una instancia que falla no frena a las demás: la siguiente pasada la vuelve a pedir.
      if (err instanceof AppError && err.code === "conflict") {
        ctx.logger.info(
          { tenantInstanceId: id, reason: err.message },
          "gdpr purge of tenant data deferred to the next maintenance pass",
        );
        outcome.waiting.push(id);
      } else {
        ctx.logger.error({ err, tenantInstanceId: id }, "gdpr purge of tenant data failed");
        outcome.failed.push(id);
      }
    }
  }
  return outcome;
}

export interface EraseExpiredOptions {
  /** Días que un cliente borrado lógicamente conserva sus datos (GDPR_RETENTION_DAYS). */
  retentionDays: number;
  /** Instante de referencia (explícito para que las pruebas y las repeticiones sean deterministas). */
  now: Date;
  /** Quién figura en la auditoría, p. ej. "system:gdpr-eraser". */
  actor: string;
  correlationId?: string;
  /** Máximo de clientes por pasada; el resto queda para la siguiente. */
  batchSize?: number;
  /** Si se dan, los eventos se publican al momento; si no, los publica el relay del outbox. */
  bus?: Bus;
  logger?: Logger;
}

/**
 * Cuánto después del borrado puede guardarse la respuesta de una petición confirmada antes: el
 * presupuesto de confirmación de una petición con clave (45 s), con margen.
 */
const LATE_RESPONSE_WINDOW = sql.raw("interval '5 minutes'");

/**
 * Una petición que confirmó su cambio justo antes de un borrado guarda su respuesta (con los datos
 * del cliente) justo después, y el borrado no la vio. Cada pasada de mantenimiento reemplaza esas
 * respuestas (2xx guardadas después del borrado que mencionan al cliente, sus instancias o sus
 * clientes OAuth, en la ventana de arriba) por un 409, como una respuesta que no se pudo guardar:
 * repetir la petición con su clave no reejecuta nada.
 */

export async function redactLateStoredResponses(db: Database, now: Date): Promise<number> {
  const problem = toProblem(
    new AppError(
      "conflict",
      "The request with this Idempotency-Key was applied, but its stored response was erased with its customer's personal data; read the resource to see the result",
    ),
  );
  // Solo la ventana de la carrera: confirmada antes del borrado y guardada poco después (un
  // índice sobre completed_at la acota; no se recorren todas las claves del día).
  const redacted = await db.execute(sql`
    update idempotency_keys k
    set status = ${problem.status},
        response_body = ${JSON.stringify(problem)},
        response_headers = ${JSON.stringify({ "content-type": PROBLEM_CONTENT_TYPE })}::jsonb
    from customers c
    where c.erased_at > ${now.toISOString()}::timestamptz - interval '25 hours'
      and k.completed_at >= c.erased_at
      and k.completed_at < c.erased_at + ${LATE_RESPONSE_WINDOW}
      and k.committed_at <= c.erased_at
      and k.status between 200 and 299
      and k.response_body is not null
      and k.path not like '%/erase'
      and (
        position(c.id::text in k.response_body) > 0
        or exists (
          select 1 from tenant_instances i
          where i.customer_id = c.id and position(i.id::text in k.response_body) > 0
        )
        or exists (
          select 1 from api_clients a
          where a.customer_id = c.id and position(a.client_id in k.response_body) > 0
        )
      )
    returning k.key`);
  return rowsOf(redacted).length;
}

export interface EraseExpiredResult {
  erasedCustomerIds: string[];
  /** Clientes cuyo borrado falló en esta pasada (se reintenta en la siguiente). */
  failedCustomerIds: string[];
}

/**
 * Borrado definitivo programado: todo cliente borrado lógicamente hace más de `retentionDays`
 * y aún no borrado. Cada cliente va en su propia transacción (uno que falle no bloquea al resto);
 * el bloqueo de fila y la condición `erased_at IS NULL` hacen seguras las pasadas concurrentes.
 */
export async function eraseExpiredCustomers(
  db: Database,
  options: EraseExpiredOptions,
): Promise<EraseExpiredResult> {
  if (!Number.isInteger(options.retentionDays) || options.retentionDays < 0) {
    throw new Error("retentionDays must be a non-negative integer");
  }
  const cutoff = new Date(options.now.getTime() - options.retentionDays * 86_400_000);
  const correlationId = options.correlationId ?? newId();
  const due = and(
    isNotNull(customers.deletedAt),
    isNull(customers.erasedAt),
    lt(customers.deletedAt, cutoff),
  );
  const candidates = await db
    .select({ id: customers.id })
    .from(customers)
    .where(due)
    .orderBy(asc(customers.deletedAt), asc(customers.id))
    .limit(options.batchSize ?? 500);

  const erasedCustomerIds: string[] = [];
  const failedCustomerIds: string[] = [];
  const queued: QueuedEvent[] = [];
  for (const { id } of candidates) {
    const done = await db
      .transaction(async (tx) => {
        const [customer] = await tx
          .select()
          .from(customers)
          .where(and(eq(customers.id, id), due))
          .for("update");
        // Otra pasada (o un POST /erase) se adelantó.
        if (!customer) return undefined;
        const outcome = await eraseWithin(tx, customer);
        for (const entry of outcome.audit) {
          await writeAudit(tx, { ...entry, actor: options.actor, correlationId });
        }
        const events: QueuedEvent[] = [];
        for (const event of outcome.events) {
          events.push(await enqueueEvent(tx, { ...event, correlationId }));
        }
        return events;
      })
      .catch((err: unknown) => {
        // Uno que falla siempre iría primero en cada pasada: no frena a los que siguen.
        failedCustomerIds.push(id);
        options.logger?.error({ err, customerId: id }, "gdpr erasure failed for a customer");
        return undefined;
      });
    if (done) {
      erasedCustomerIds.push(id);
      queued.push(...done);
    }
  }
  if (options.bus && options.logger && queued.length > 0) {
    await publishQueued(db, options.bus, queued, options.logger);
  }
  options.logger?.info(
    {
      erased: erasedCustomerIds.length,
      failed: failedCustomerIds.length,
      retentionDays: options.retentionDays,
      correlationId,
    },
    "gdpr erasure pass finished",
  );
  return { erasedCustomerIds, failedCustomerIds };
}
