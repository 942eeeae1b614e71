import { and, eq, isNull, sql } from "drizzle-orm";
import { domainEventSubject } from "../../contracts/streams";
import { writeAudit } from "../../db/audit";
import { enqueueEvent } from "../../db/outbox";
import { products, tenantInstances } from "../../db/schema";
import type { Database } from "../../db/types";
import { PermanentError } from "../runtime/errors";
import type { DedicatedDatabases } from "./dedicated-databases";
import type { SharedTenantRegistry } from "./shared-registry";

export interface TenantDataStores {
  db: Database;
  registry: SharedTenantRegistry;
  dedicated?: DedicatedDatabases;
}

export interface DropTenantDataOptions {
  actor: string;
  /** `purge`: pedido en la baja; `retention`: venció el plazo de retención. */
  reason: "purge" | "retention";
  correlationId?: string | null;
  taskId?: string;
}

/**
 * Borra los datos de un tenant dado de baja: sus filas en la base compartida (Standard) o su
 * base y rol propios (Enterprise). Idempotente: cada borrado tolera lo ya borrado y
 * `data_dropped_at` (con su fila de auditoría) se escribe una sola vez.
 */
export async function dropTenantData(
  stores: TenantDataStores,
  tenantInstanceId: string,
  options: DropTenantDataOptions,
): Promise<"dropped" | "already_dropped"> {
  const [row] = await stores.db
    .select({ instance: tenantInstances, productCode: products.code })
    .from(tenantInstances)
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .where(eq(tenantInstances.id, tenantInstanceId));
  if (!row) throw new PermanentError(`tenant instance ${tenantInstanceId} does not exist`);
  const { instance, productCode } = row;
  if (instance.dataDroppedAt) return "already_dropped";
  // Nunca se borran datos de un tenant que no está dado de baja.
  if (instance.status !== "decommissioned") {
    throw new PermanentError(
      `tenant instance ${instance.id} is ${instance.status}, not decommissioned`,
    );
  }

  let rowsDeleted: number | undefined;
  if (instance.databaseTier === "enterprise") {
    if (!stores.dedicated)
      throw new PermanentError("dropping Enterprise data needs the tenant database admin");
    await stores.dedicated.drop(instance.id);
  } else {
    ({ rowsDeleted } = await stores.registry.dropTenant(productCode, instance.id));
  }

  await stores.db.transaction(async (tx) => {
    const [updated] = await tx
      .update(tenantInstances)
      .set({
        dataDroppedAt: sql`now()`,
        // La base ya no existe: la cadena cifrada no sirve y no se guarda.
        connectionStringEncrypted: null,
        encryptionKeyId: null,
        // Ni la de una rotación de contraseña a medias.
        pendingConnectionStringEncrypted: null,
        rowVersion: sql`${tenantInstances.rowVersion} + 1`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(tenantInstances.id, instance.id), isNull(tenantInstances.dataDroppedAt)))
      .returning({ dataDroppedAt: tenantInstances.dataDroppedAt });
    if (!updated) return;
    await writeAudit(tx, {
      actor: options.actor,
      action: "tenant_instance.data_dropped",
      entityType: "tenant_instance",
      entityId: instance.id,
      before: { dataDroppedAt: null, decommissionedAt: instance.decommissionedAt },
      after: {
        dataDroppedAt: updated.dataDroppedAt,
        reason: options.reason,
        databaseTier: instance.databaseTier,
        ...(rowsDeleted === undefined ? {} : { rowsDeleted }),
        ...(options.taskId ? { taskId: options.taskId } : {}),
      },
      correlationId: options.correlationId ?? null,
    });
    // Evento de dominio por el outbox (lo publica el relay): integraciones y auditoría externa
    // se enteran de que los datos del tenant ya no existen.
    await enqueueEvent(tx, {
      subject: domainEventSubject("tenant_instance", "data_dropped"),
      type: "tenant_instance.data_dropped",
      correlationId: options.correlationId ?? null,
      data: { tenantInstanceId: instance.id, reason: options.reason },
    });
  });
  return "dropped";
}

/** Posición en la lista de bajas vencidas: desde dónde cuenta su plazo y su id. */
export interface RetentionCursor {
  since: string;
  id: string;
}

/**
 * Bajas sin purge cuyo plazo de retención venció y cuyos datos siguen ahí, las más viejas primero,
 * por tandas: `after` es la última de la tanda anterior (una que falla no tapa a las siguientes).
 */
export async function tenantsPastRetention(
  db: Database,
  retentionDays: number,
  now: Date,
  limit = 50,
  after?: RetentionCursor,
): Promise<RetentionCursor[]> {
  const t = tenantInstances;
  // Las bajas anteriores a decommissioned_at cuentan desde su última modificación.
  const since = sql`coalesce(${t.decommissionedAt}, ${t.updatedAt})`;
  return db
    .select({ since: sql<string>`(${since})::text`, id: t.id })
    .from(t)
    .where(
      and(
        eq(t.status, "decommissioned"),
        isNull(t.dataDroppedAt),
        sql`${since} <= ${now.toISOString()}::timestamptz - make_interval(days => ${retentionDays})`,
        after
          ? sql`(${since}, ${t.id}) > (${after.since}::timestamptz, ${after.id}::uuid)`
          : undefined,
      ),
    )
    .orderBy(since, t.id)
    .limit(limit);
}
