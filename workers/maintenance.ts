import { and, eq, isNotNull, isNull, lt, or, type SQL, sql } from "drizzle-orm";
import type { PgTable } from "drizzle-orm/pg-core";
import { subjects, TASK_MESSAGE_RETENTION_DAYS } from "../contracts/streams";
import type { Bus } from "../core/bus";
import { fixedBusProvider } from "../core/bus-provider";
import { newId } from "../core/ids";
import type { Logger } from "../core/logger";
import { databaseNow } from "../db/clock";
import { outboxInsert, publishQueued, type QueuedEvent } from "../db/outbox";
import {
  clientAuthFailures,
  dlqEntries,
  idempotencyKeys,
  maintenanceWatermarks,
  outboxEvents,
  processedMessages,
  products,
  refreshTokens,
  subscriptions,
  tenantInstances,
  webhookDeliveries,
  webhookEndpoints,
} from "../db/schema";
import { type Database, rowsOf } from "../db/types";
import {
  type ErasedDataPurge,
  eraseExpiredCustomers,
  purgeErasedCustomersData,
  redactLateStoredResponses,
} from "../functions/services/gdpr";
import {
  dropTenantData,
  type RetentionCursor,
  type TenantDataStores,
  tenantsPastRetention,
} from "./provisioning/tenant-data";

export interface MaintenanceOptions {
  db: Database;
  bus?: Bus;
  logger: Logger;
  retentionDays: number;
  intervalMs?: number;
  /** Filas por sentencia en los borrados de limpieza (DELETE_BATCH_SIZE). */
  deleteBatchSize?: number;
  /** Borrado de datos de tenants dados de baja cuando vence su retención (batchSize: 50 por tanda). */
  tenantData?: Omit<TenantDataStores, "db"> & { retentionDays: number; batchSize?: number };
}

export interface MaintenanceResult {
  erasedCustomers: number;
  /** Bajas con purge pedidas en esta pasada para instancias de clientes borrados. */
  erasedCustomerPurgesRequested: number;
  expiredIdempotencyKeys: number;
  /** Standard dadas de baja a las que se les cortó ahora el acceso de la app hija. */
  deactivatedTenants: number;
  /** Enterprise dadas de baja cuyo rol perdió ahora el LOGIN. */
  disabledTenantLogins: number;
  droppedTenantData: number;
  /** Datos de tenants ya borrados que una escritura tardía volvió a crear, y se borraron otra vez. */
  removedLateTenantWrites: number;
  expiredRefreshTokens: number;
  /**
   * Filas de outbox publicadas, marcas de procesado, entregas de webhooks y entradas de DLQ ya
   * reprocesadas, ya viejas.
   */
  prunedDeliveryRecords: number;
  /** Secretos anteriores de webhooks cuyo solape de rotación terminó (ya no firman). */
  forgottenWebhookSecrets: number;
  /** entitlements.changed emitidos por suscripciones que empezaron o vencieron. */
  subscriptionBoundariesAnnounced: number;
  /** Respuestas guardadas después del borrado de su cliente, reemplazadas por un 409. */
  redactedLateResponses: number;
  /** Clientes cuyo borrado GDPR falló (se reintenta en la próxima pasada). */
  failedCustomerErasures: number;
  /** Pasos que fallaron en esta pasada (el resto corrió igual). */
  failedSteps: string[];
}

/** El outbox publicado solo sirve para diagnosticar: una semana basta. */
const PUBLISHED_OUTBOX_RETENTION_DAYS = 7;
/** Marcas de idempotencia: más que lo que JetStream guarda el mensaje (no puede reaparecer). */
const DELIVERY_MARK_RETENTION_DAYS = TASK_MESSAGE_RETENTION_DAYS + 1;

async function pruneDeliveryRecords(db: Database, now: Date, batch: number): Promise<number> {
  const olderThan = (days: number) =>
    sql`${now.toISOString()}::timestamptz - make_interval(days => ${days})`;
  const outbox = await deleteInBatches(
    db,
    outboxEvents,
    and(
      isNotNull(outboxEvents.publishedAt),
      lt(outboxEvents.publishedAt, olderThan(PUBLISHED_OUTBOX_RETENTION_DAYS)),
    ),
    batch,
  );
  const processed = await deleteInBatches(
    db,
    processedMessages,
    lt(processedMessages.processedAt, olderThan(DELIVERY_MARK_RETENTION_DAYS)),
    batch,
  );
  const deliveries = await deleteInBatches(
    db,
    webhookDeliveries,
    lt(webhookDeliveries.deliveredAt, olderThan(DELIVERY_MARK_RETENTION_DAYS)),
    batch,
  );
  // Una entrada ya reprocesada solo sirve de historia (la DLQ con replayed=true); pasado lo que
  // el stream guarda el mensaje, su original no puede volver a morir y la entrada se va. Las que
  // siguen sin reprocesar son trabajo del operador: esas no vencen.
  const deadLetters = await deleteInBatches(
    db,
    dlqEntries,
    // Sin replay (null) la comparación no es verdadera: esas no se tocan.
    lt(dlqEntries.replayedAt, olderThan(DELIVERY_MARK_RETENTION_DAYS)),
    batch,
  );
  return outbox + processed + deliveries + deadLetters;
}

/** Filas borradas por sentencia: acota la duración de cada borrado y lo que vuelve al proceso. */
export const DELETE_BATCH_SIZE = 5_000;

/**
 * Borra por tandas de `batch` filas, cada una su propia sentencia (y transacción), y cuenta en la
 * base: un atraso de millones de filas (el primer despliegue sobre una base grande, días sin
 * mantenimiento) no bloquea minutos ni trae millones de ids a memoria.
 */
async function deleteInBatches(
  db: Database,
  table: PgTable,
  where: SQL | undefined,
  batch: number,
): Promise<number> {
  let total = 0;
  for (;;) {
    const [row] = rowsOf<{ n: number }>(
      await db.execute(sql`with doomed as (
          select ctid from ${table} where ${where ?? sql`true`} limit ${batch}
        ), gone as (
          delete from ${table} where ctid in (select ctid from doomed) returning 1
        )
        select count(*)::int as n from gone`),
    );
    const n = Number(row?.n ?? 0);
    total += n;
    if (n < batch) return total;
  }
}

/** El secreto anterior de una rotación ya vencida no firma: se borra (suele ser el filtrado). */
async function forgetRotatedWebhookSecrets(db: Database, now: Date): Promise<number> {
  const forgotten = await db
    .update(webhookEndpoints)
    .set({ previousSecretEncrypted: null, previousSecretExpiresAt: null })
    .where(lt(webhookEndpoints.previousSecretExpiresAt, sql`${now.toISOString()}::timestamptz`))
    .returning({ id: webhookEndpoints.id });
  return forgotten.length;
}

async function dropExpiredTenantData(
  options: Omit<MaintenanceOptions, "intervalMs">,
  now: Date,
): Promise<number> {
  const tenantData = options.tenantData;
  if (!tenantData) return 0;
  let dropped = 0;
  // Por tandas, en orden (de la más vieja a la más nueva) y siguiendo tras la última: un tenant
  // que falla (p. ej. su base no responde, o el RLS esconde filas) no frena a los demás, tampoco
  // si fallan 50 seguidos; la pasada siguiente lo reintenta.
  let after: RetentionCursor | undefined;
  for (;;) {
    const due = await tenantsPastRetention(
      options.db,
      tenantData.retentionDays,
      now,
      tenantData.batchSize ?? 50,
      after,
    );
    if (due.length === 0) return dropped;
    for (const cursor of due) {
      after = cursor;
      try {
        const outcome = await dropTenantData({ ...tenantData, db: options.db }, cursor.id, {
          actor: "worker:maintenance",
          reason: "retention",
        });
        if (outcome === "dropped") dropped++;
      } catch (err) {
        options.logger.error({ err, tenantInstanceId: cursor.id }, "tenant data drop failed");
      }
    }
  }
}

/**
 * Standard dadas de baja sin purge cuyos datos siguen en la base compartida: la app hija no debe
 * verlos. La baja ya lo hace (paso disable_tenant_access); esto cubre las bajas anteriores a ese
 * paso y las que quedaron a medias. Una sentencia por producto; idempotente.
 */
async function deactivateDecommissionedTenants(
  options: Omit<MaintenanceOptions, "intervalMs">,
): Promise<number> {
  const registry = options.tenantData?.registry;
  if (!registry) return 0;
  const rows = await options.db
    .select({ id: tenantInstances.id, productCode: products.code })
    .from(tenantInstances)
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .where(
      and(
        eq(tenantInstances.status, "decommissioned"),
        eq(tenantInstances.databaseTier, "standard"),
        isNull(tenantInstances.dataDroppedAt),
      ),
    );
  const byProduct = new Map<string, string[]>();
  for (const r of rows) {
    const ids = byProduct.get(r.productCode) ?? [];
    ids.push(r.id);
    byProduct.set(r.productCode, ids);
  }
  let deactivated = 0;
  for (const [productCode, ids] of byProduct) {
    try {
      deactivated += await registry.deactivate(productCode, ids);
    } catch (err) {
      options.logger.error({ err, productCode }, "tenant deactivation failed");
    }
  }
  return deactivated;
}

/**
 * Enterprise dadas de baja sin purge cuya base sigue ahí: su rol no debe poder entrar. La baja ya
 * lo hace (paso disable_tenant_login); esto cubre las que quedaron a medias (el paso agotó sus
 * intentos tras confirmarse la baja). Una conexión por pasada; idempotente.
 */
async function disableDecommissionedLogins(
  options: Omit<MaintenanceOptions, "intervalMs">,
): Promise<number> {
  const dedicated = options.tenantData?.dedicated;
  if (!dedicated) return 0;
  const rows = await options.db
    .select({ id: tenantInstances.id })
    .from(tenantInstances)
    .where(
      and(
        eq(tenantInstances.status, "decommissioned"),
        eq(tenantInstances.databaseTier, "enterprise"),
        isNull(tenantInstances.dataDroppedAt),
      ),
    );
  if (rows.length === 0) return 0;
  try {
    return await dedicated.disableLogin(...rows.map((r) => r.id));
  } catch (err) {
    options.logger.error({ err }, "tenant login disabling failed");
    return 0;
  }
}

/**
 * Cuánto después de borrar los datos de un tenant se vuelve a mirar. Una entrega abandonada (el
 * proceso congelado más que su lease, o colgado más que WORKER_HANDLER_TIMEOUT_MS) puede completar
 * su paso externo después de la baja: el registro en la base compartida o el CREATE ROLE/DATABASE
 * de Enterprise reaparecen, activos y sin nadie que los borre (data_dropped_at ya está puesto).
 */
export const LATE_WRITE_WINDOW_DAYS = 2;

async function removeLateTenantWrites(
  options: Omit<MaintenanceOptions, "intervalMs">,
  now: Date,
): Promise<number> {
  const stores = options.tenantData;
  if (!stores) return 0;
  const t = tenantInstances;
  const rows = await options.db
    .select({ id: t.id, tier: t.databaseTier, productCode: products.code })
    .from(t)
    .innerJoin(products, eq(products.id, t.productId))
    .where(
      and(
        isNotNull(t.dataDroppedAt),
        sql`${t.dataDroppedAt} > ${now.toISOString()}::timestamptz - make_interval(days => ${LATE_WRITE_WINDOW_DAYS})`,
      ),
    );
  let removed = 0;
  for (const row of rows) {
    try {
      if (row.tier === "enterprise") {
        if (!stores.dedicated || !(await stores.dedicated.exists(row.id))) continue;
        await stores.dedicated.drop(row.id);
      } else {
        if (!(await stores.registry.isRegistered(row.productCode, row.id))) continue;
        await stores.registry.dropTenant(row.productCode, row.id);
      }
      removed++;
      options.logger.warn(
        { tenantInstanceId: row.id, databaseTier: row.tier },
        "tenant data reappeared after it was dropped (a late write of an abandoned task); dropped it again",
      );
    } catch (err) {
      options.logger.error({ err, tenantInstanceId: row.id }, "late tenant write removal failed");
    }
  }
  return removed;
}

const BOUNDARIES = "subscription_boundaries";

/**
 * Una suscripción que empieza (starts_at) o vence (expires_at) cambia lo que su instancia puede
 * hacer sin que nadie la toque: el edge ya lo resuelve solo (tramos por hora), pero quien escucha
 * los webhooks (IntegrationWorker) necesita su entitlements.changed. Cada pasada avisa de los
 * cruces entre la marca anterior y ahora. La marca vive en la base con su fila bloqueada: dos
 * procesos de workers no avisan dos veces. La primera pasada solo la fija.
 */
async function announceSubscriptionBoundaries(
  options: Omit<MaintenanceOptions, "intervalMs">,
  now: Date,
): Promise<number> {
  const at = now.toISOString();
  const queued = await options.db.transaction(async (tx): Promise<QueuedEvent[]> => {
    const created = await tx
      .insert(maintenanceWatermarks)
      .values({ name: BOUNDARIES, at: now })
      .onConflictDoNothing()
      .returning({ at: maintenanceWatermarks.at });
    if (created.length > 0) return [];
    const [mark] = await tx
      .select({ at: maintenanceWatermarks.at })
      .from(maintenanceWatermarks)
      .where(eq(maintenanceWatermarks.name, BOUNDARIES))
      .for("update");
    if (!mark || mark.at >= now) return [];
    const since = mark.at.toISOString();
    // Solo lo que la fila alcanzó sin que nadie la tocara después de fijarlo (updated_at antes
    // del cruce): una suscripción nueva empieza al crearse (su activación ya avisa) y un cambio
    // de fechas hecho por la API ya emitió su evento.
    const crossed = (column: typeof subscriptions.startsAt | typeof subscriptions.expiresAt) =>
      sql<boolean>`(${column} > ${since}::timestamptz and ${column} <= ${at}::timestamptz
        and ${subscriptions.updatedAt} < ${column})`;
    // Solo cambia algo si la suscripción y su instancia están activas (si no, ya estaba todo apagado).
    const rows = await tx
      .select({
        tenantInstanceId: subscriptions.tenantInstanceId,
        // Empezó y venció en la misma ventana: lo que queda es vencida.
        expired: crossed(subscriptions.expiresAt),
      })
      .from(subscriptions)
      .innerJoin(tenantInstances, eq(tenantInstances.id, subscriptions.tenantInstanceId))
      .where(
        and(
          eq(subscriptions.status, "active"),
          eq(tenantInstances.status, "active"),
          or(crossed(subscriptions.startsAt), crossed(subscriptions.expiresAt)),
        ),
      );
    await tx
      .update(maintenanceWatermarks)
      .set({ at: now })
      .where(eq(maintenanceWatermarks.name, BOUNDARIES));
    if (rows.length === 0) return [];
    const correlationId = newId();
    const outbox = outboxInsert(
      tx,
      rows.map((row) => ({
        subject: subjects.entitlementsChanged,
        type: "entitlements.changed",
        correlationId,
        data: {
          tenantInstanceId: row.tenantInstanceId,
          reason: row.expired ? "subscription.expired" : "subscription.started",
        },
      })),
    );
    await outbox.statement;
    return outbox.queued;
  });
  if (queued.length > 0 && options.bus) {
    await publishQueued(options.db, options.bus, queued, options.logger);
  }
  return queued.length;
}

/**
 * Una pasada: borrado GDPR programado, limpieza de Idempotency-Key vencidas (24 h), de refresh
 * tokens vencidos y de ventanas de bloqueo viejas, de outbox publicado y marcas de entrega viejas,
 * y borrado de los datos de tenants dados de baja cuya retención venció.
 */
export async function runMaintenanceOnce(
  options: Omit<MaintenanceOptions, "intervalMs">,
  at?: Date,
): Promise<MaintenanceResult> {
  // El reloj de la base, no el del proceso: con varios workers de relojes desparejos, la marca
  // de los avisos de suscripción y los plazos de retención no adelantan (las pruebas fijan `at`).
  const now = at ?? (await databaseNow(options.db));
  const batch = options.deleteBatchSize ?? DELETE_BATCH_SIZE;
  // Cada paso por su cuenta: uno que falla (y fallaría en cada pasada) no frena a los demás.
  const failedSteps: string[] = [];
  const step = async <T>(name: string, work: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      failedSteps.push(name);
      options.logger.error({ err, step: name }, "maintenance step failed");
      return fallback;
    }
  };
  const erasure = await step(
    "erasedCustomers",
    () =>
      eraseExpiredCustomers(options.db, {
        retentionDays: options.retentionDays,
        now,
        actor: "worker:gdpr",
        bus: options.bus,
        logger: options.logger,
      }),
    { erasedCustomerIds: [], failedCustomerIds: [] },
  );
  // Clientes borrados (ahora o antes, por POST /erase): la baja con purge de sus instancias.
  const purge = await step(
    "erasedCustomerPurgesRequested",
    () =>
      purgeErasedCustomersData({
        db: options.db,
        bus: fixedBusProvider(options.bus),
        logger: options.logger,
        actor: "worker:gdpr",
        baseDomain: "",
      }),
    { requested: [], alreadyRequested: [], waiting: [], failed: [] } as ErasedDataPurge,
  );
  const redactedLateResponses = await step(
    "redactedLateResponses",
    () => redactLateStoredResponses(options.db, now),
    0,
  );
  const expiredIdempotencyKeys = await step(
    "expiredIdempotencyKeys",
    () =>
      deleteInBatches(
        options.db,
        idempotencyKeys,
        lt(idempotencyKeys.createdAt, sql`${now.toISOString()}::timestamptz - interval '24 hours'`),
        batch,
      ),
    0,
  );
  const deactivatedTenants = await step(
    "deactivatedTenants",
    () => deactivateDecommissionedTenants(options),
    0,
  );
  const disabledTenantLogins = await step(
    "disabledTenantLogins",
    () => disableDecommissionedLogins(options),
    0,
  );
  const droppedTenantData = await step(
    "droppedTenantData",
    () => dropExpiredTenantData(options, now),
    0,
  );
  const removedLateTenantWrites = await step(
    "removedLateTenantWrites",
    () => removeLateTenantWrites(options, now),
    0,
  );
  // Refresh tokens vencidos (usados o no) ya no sirven ni para detectar reuso: un token vencido
  // es invalid_grant sin tocar su familia. Las ventanas de bloqueo viejas tampoco cuentan.
  const expiredRefreshTokens = await step(
    "expiredRefreshTokens",
    async () => {
      const dayBefore = sql`${now.toISOString()}::timestamptz - interval '1 day'`;
      const deleted = await deleteInBatches(
        options.db,
        refreshTokens,
        lt(refreshTokens.expiresAt, dayBefore),
        batch,
      );
      await deleteInBatches(
        options.db,
        clientAuthFailures,
        lt(clientAuthFailures.windowStartedAt, dayBefore),
        batch,
      );
      return deleted;
    },
    0,
  );
  const result: MaintenanceResult = {
    erasedCustomers: erasure.erasedCustomerIds.length,
    failedCustomerErasures: erasure.failedCustomerIds.length,
    erasedCustomerPurgesRequested: purge.requested.length,
    redactedLateResponses,
    expiredIdempotencyKeys,
    deactivatedTenants,
    disabledTenantLogins,
    droppedTenantData,
    removedLateTenantWrites,
    expiredRefreshTokens,
    prunedDeliveryRecords: await step(
      "prunedDeliveryRecords",
      () => pruneDeliveryRecords(options.db, now, batch),
      0,
    ),
    forgottenWebhookSecrets: await step(
      "forgottenWebhookSecrets",
      () => forgetRotatedWebhookSecrets(options.db, now),
      0,
    ),
    subscriptionBoundariesAnnounced: await step(
      "subscriptionBoundariesAnnounced",
      () => announceSubscriptionBoundaries(options, now),
      0,
    ),
    failedSteps,
  };
  const { failedSteps: _failed, ...counts } = result;
  if (failedSteps.length > 0) {
    options.logger.warn(result, "maintenance pass completed with failures");
  } else if (Object.values(counts).some((n) => n > 0)) {
    options.logger.info(result, "maintenance pass completed");
  }
  return result;
}

export interface RunningMaintenance {
  stop(): Promise<void>;
}

/** Fila de maintenance_watermarks con la que las réplicas se reparten las pasadas. */
const PASS_CLAIM = "maintenance_pass_claimed_until";

/**
 * ¿Le toca a este proceso? Una pasada por intervalo entre todas las réplicas: la primera que llega
 * la reclama hasta casi el próximo tick; si muere, otra la toma en el intervalo siguiente.
 */
async function claimPass(db: Database, intervalMs: number): Promise<boolean> {
  const until = sql`clock_timestamp() + make_interval(secs => ${(intervalMs * 0.9) / 1000})`;
  const claimed = await db
    .insert(maintenanceWatermarks)
    .values({ name: PASS_CLAIM, at: until })
    .onConflictDoUpdate({
      target: maintenanceWatermarks.name,
      set: { at: until },
      setWhere: lt(maintenanceWatermarks.at, sql`clock_timestamp()`),
    })
    .returning({ at: maintenanceWatermarks.at });
  return claimed.length > 0;
}

export function startMaintenance(options: MaintenanceOptions): RunningMaintenance {
  const logger = options.logger.child({ component: "maintenance" });
  const intervalMs = options.intervalMs ?? 3_600_000;
  let running: Promise<unknown> | undefined;
  const pass = async () => {
    if (!(await claimPass(options.db, intervalMs))) {
      logger.info("maintenance pass skipped: another worker ran one this interval");
      return;
    }
    await runMaintenanceOnce({ ...options, logger });
  };
  const tick = () => {
    // Una pasada larga (un atraso grande, muchas bajas que borrar) no se apila con la siguiente.
    if (running) {
      logger.warn({ intervalMs }, "maintenance pass still running; this tick is skipped");
      return;
    }
    running = pass()
      .catch((err: unknown) => logger.error({ err }, "maintenance pass failed"))
      .finally(() => {
        running = undefined;
      });
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
