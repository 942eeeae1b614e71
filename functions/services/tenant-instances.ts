import { and, eq, inArray, type SQL, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { pgConstraint, pgErrorCode } from "../../core/http/db-errors";
import {
  customers,
  plans,
  products,
  provisioningTasks,
  subscriptions,
  tenantInstances,
} from "../../db/schema";
import type { Executor } from "../../db/types";
import type { TenantInstanceView } from "../routes/tenant-instances/schema";
import { assertViewVersion, type IfMatch, notFound } from "./concurrency";
import { assertCustomerNotDeleted } from "./customers";
import { entitlementsChanged } from "./entitlement-events";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

type InstanceRow = typeof tenantInstances.$inferSelect;
type InstanceStatus = InstanceRow["status"];

/** Instancia con su cliente, producto, suscripción y plan: una sola consulta con joins. */
export function selectInstanceViews(db: Executor) {
  return db
    .select({
      instance: tenantInstances,
      customerName: customers.legalName,
      productCode: products.code,
      subscription: subscriptions,
      planCode: plans.code,
    })
    .from(tenantInstances)
    .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .leftJoin(subscriptions, eq(subscriptions.tenantInstanceId, tenantInstances.id))
    .leftJoin(plans, eq(plans.id, subscriptions.planId));
}

export interface InstanceViewRow {
  instance: InstanceRow;
  customerName: string;
  productCode: string;
  subscription: typeof subscriptions.$inferSelect | null;
  planCode: string | null;
}

export function toTenantInstance(row: InstanceViewRow): TenantInstanceView {
  const { instance: i, subscription: s, planCode } = row;
  return {
    id: i.id,
    customerId: i.customerId,
    customerName: row.customerName,
    productId: i.productId,
    productCode: row.productCode,
    instanceCode: i.instanceCode,
    tenantCode: i.tenantCode,
    environment: i.environment,
    databaseTier: i.databaseTier,
    status: i.status,
    kubernetesNamespace: i.kubernetesNamespace,
    subdomainUrl: i.subdomainUrl,
    subscription:
      s && planCode
        ? {
            id: s.id,
            planId: s.planId,
            planCode,
            status: s.status,
            startsAt: s.startsAt.toISOString(),
            expiresAt: s.expiresAt ? s.expiresAt.toISOString() : null,
          }
        : null,
    createdAt: i.createdAt.toISOString(),
    updatedAt: i.updatedAt.toISOString(),
    decommissionedAt: i.decommissionedAt ? i.decommissionedAt.toISOString() : null,
    dataDroppedAt: i.dataDroppedAt ? i.dataDroppedAt.toISOString() : null,
  };
}

export async function loadInstanceView(
  db: Executor,
  where: SQL,
): Promise<{ view: TenantInstanceView; rowVersion: number } | undefined> {
  const [row] = await selectInstanceViews(db).where(where);
  return row ? { view: toTenantInstance(row), rowVersion: row.instance.rowVersion } : undefined;
}

/**
 * If-Match de una instancia ya bloqueada. Su ETag lleva el resumen de la vista (cliente,
 * suscripción, plan): uno con resumen debe ser el vigente, que se recalcula aquí, bajo el bloqueo.
 */
export function assertInstanceIfMatch(
  tx: Executor,
  instance: { id: string; rowVersion: number },
  ifMatch: IfMatch,
): Promise<void> {
  return assertViewVersion(
    instance.rowVersion,
    ifMatch,
    async () => {
      const loaded = await loadInstanceView(tx, eq(tenantInstances.id, instance.id));
      if (!loaded) throw notFound("Tenant instance", instance.id);
      return loaded.view;
    },
    "Tenant instance",
    instance.id,
  );
}

async function lockInstance(tx: Executor, id: string): Promise<InstanceRow | undefined> {
  const [row] = await tx
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.id, id))
    .for("update");
  return row;
}

function statusConflict(row: InstanceRow, action: string): AppError {
  return new AppError(
    "conflict",
    `Tenant instance ${row.id} is ${row.status}; it cannot be ${action}`,
    { extra: { currentStatus: row.status } },
  );
}

/**
 * 409 si la instancia está dada de baja: ya no tiene entitlements que cambiar. Bloquea la fila
 * (FOR SHARE) para que una baja concurrente espere a este cambio en vez de cruzarse con él.
 */
export async function assertInstanceLive(
  tx: Executor,
  tenantInstanceId: string,
  action: string,
): Promise<void> {
  const [row] = await tx
    .select({ id: tenantInstances.id, status: tenantInstances.status })
    .from(tenantInstances)
    .where(eq(tenantInstances.id, tenantInstanceId))
    .for("share");
  if (row?.status === "decommissioned") {
    throw new AppError("conflict", `Tenant instance ${row.id} is decommissioned; ${action}`, {
      extra: { currentStatus: row.status, tenantInstanceId: row.id },
    });
  }
}

/** ¿Hay una tarea de esos tipos en cola o en curso para la instancia? */
export async function taskInFlight(
  tx: Executor,
  tenantInstanceId: string,
  kinds: (typeof provisioningTasks.$inferSelect)["kind"][],
) {
  const [task] = await tx
    .select()
    .from(provisioningTasks)
    .where(
      and(
        eq(provisioningTasks.tenantInstanceId, tenantInstanceId),
        inArray(provisioningTasks.kind, kinds),
        inArray(provisioningTasks.status, ["queued", "running"]),
      ),
    )
    .limit(1);
  return task;
}

/** Sin el valor en el detalle: el subdominio puede derivar del nombre legal y el detalle va al log. */
function subdomainTaken(cause: unknown): AppError {
  return new AppError("conflict", "Another live tenant instance already uses this subdomain", {
    cause,
    fields: [{ path: "body.subdomainUrl", message: "Already used by another live instance" }],
  });
}

export async function updateTenantInstance(
  ctx: ServiceContext,
  id: string,
  input: { environment?: string | undefined; subdomainUrl?: string | undefined },
  ifMatch: IfMatch,
) {
  try {
    return await mutate(ctx, async (tx) => {
      const before = await lockInstance(tx, id);
      if (!before) throw notFound("Tenant instance", id);
      await assertInstanceIfMatch(tx, before, ifMatch);
      if (before.status === "decommissioned") throw statusConflict(before, "modified");
      const changes = {
        ...(input.environment !== undefined ? { environment: input.environment } : {}),
        ...(input.subdomainUrl !== undefined ? { subdomainUrl: input.subdomainUrl } : {}),
      };
      const [after] = await tx
        .update(tenantInstances)
        .set({
          ...changes,
          rowVersion: sql`${tenantInstances.rowVersion} + 1`,
          updatedAt: sql`now()`,
        })
        .where(eq(tenantInstances.id, id))
        .returning();
      if (!after) throw notFound("Tenant instance", id);
      const loaded = await loadInstanceView(tx, eq(tenantInstances.id, id));
      if (!loaded) throw notFound("Tenant instance", id);
      return {
        result: loaded,
        audit: [
          {
            action: "tenant_instance.updated",
            entityType: "tenant_instance",
            entityId: id,
            before: { environment: before.environment, subdomainUrl: before.subdomainUrl },
            after: { environment: after.environment, subdomainUrl: after.subdomainUrl },
          },
        ],
        // Qué cambió, no sus valores: el subdominio puede derivar del nombre legal y lo publicado
        // queda en JetStream, fuera del alcance del borrado GDPR.
        events: [
          domainEvent("tenant_instance", "updated", {
            tenantInstanceId: id,
            changed: Object.keys(changes),
          }),
        ],
      };
    });
  } catch (err) {
    // Otra instancia viva ya tiene ese subdominio (el índice único decide, también en carrera).
    if (pgErrorCode(err) === "23505" && pgConstraint(err) === "tenant_instances_subdomain_uq") {
      throw subdomainTaken(err);
    }
    throw err;
  }
}

const transitions = {
  suspend: { from: "active", to: "suspended", verb: "suspended" },
  reactivate: { from: "suspended", to: "active", verb: "reactivated" },
} as const satisfies Record<string, { from: InstanceStatus; to: InstanceStatus; verb: string }>;

/** Suspende o reactiva: solo active→suspended y suspended→active; lo demás es un 409. */
export async function changeInstanceStatus(
  ctx: ServiceContext,
  id: string,
  transition: keyof typeof transitions,
  ifMatch: IfMatch,
) {
  const { from, to, verb } = transitions[transition];
  return mutate(ctx, async (tx) => {
    const before = await lockInstance(tx, id);
    if (!before) throw notFound("Tenant instance", id);
    await assertInstanceIfMatch(tx, before, ifMatch);
    if (before.status !== from) throw statusConflict(before, verb);
    // Un deprovision en curso terminará dando de baja la instancia: reactivarla sería engañoso.
    if (transition === "reactivate" && (await taskInFlight(tx, id, ["deprovision"]))) {
      throw new AppError(
        "conflict",
        `Tenant instance ${id} is being deprovisioned; it cannot be reactivated`,
        { extra: { currentStatus: before.status } },
      );
    }
    if (transition === "reactivate") {
      await assertCustomerNotDeleted(
        tx,
        before.customerId,
        "its tenant instance cannot be reactivated",
      );
    }
    await tx
      .update(tenantInstances)
      .set({
        status: to,
        rowVersion: sql`${tenantInstances.rowVersion} + 1`,
        updatedAt: sql`now()`,
      })
      .where(eq(tenantInstances.id, id));
    const loaded = await loadInstanceView(tx, eq(tenantInstances.id, id));
    if (!loaded) throw notFound("Tenant instance", id);
    return {
      result: loaded,
      audit: [
        {
          action: `tenant_instance.${verb}`,
          entityType: "tenant_instance",
          entityId: id,
          before: { status: from, rowVersion: before.rowVersion },
          after: { status: to, rowVersion: loaded.rowVersion },
        },
      ],
      events: [
        domainEvent("tenant_instance", verb, { tenantInstanceId: id, status: to }),
        ...entitlementsChanged([id], `instance_${verb}`),
      ],
    };
  });
}
