import { and, eq, inArray, ne } from "drizzle-orm";
import { subjects } from "../../contracts/streams";
import type { NewEvent } from "../../db/outbox";
import { subscriptions, tenantInstances } from "../../db/schema";
import type { Executor } from "../../db/types";

/** Un evento entitlements.changed por instancia afectada (lo usan el edge y el IntegrationWorker). */
export function entitlementsChanged(
  instanceIds: readonly string[],
  reason: string,
): Omit<NewEvent, "correlationId">[] {
  return [...new Set(instanceIds)].map((tenantInstanceId) => ({
    subject: subjects.entitlementsChanged,
    type: "entitlements.changed",
    data: { tenantInstanceId, reason },
  }));
}

export async function instancesOnPlans(
  tx: Executor,
  planIds: readonly string[],
): Promise<string[]> {
  if (planIds.length === 0) return [];
  // Solo instancias vivas, como instancesOfProduct: una dada de baja no tiene a quién avisar.
  const rows = await tx
    .select({ id: subscriptions.tenantInstanceId })
    .from(subscriptions)
    .innerJoin(tenantInstances, eq(tenantInstances.id, subscriptions.tenantInstanceId))
    .where(
      and(
        inArray(subscriptions.planId, [...planIds]),
        ne(tenantInstances.status, "decommissioned"),
      ),
    );
  return rows.map((r) => r.id);
}

export async function instanceOfSubscription(
  tx: Executor,
  subscriptionId: string,
): Promise<string | undefined> {
  const [row] = await tx
    .select({ id: subscriptions.tenantInstanceId })
    .from(subscriptions)
    .where(eq(subscriptions.id, subscriptionId));
  return row?.id;
}

/**
 * Instancias vivas de un producto: el documento de entitlements lista todas las features del
 * producto (las no incluidas, en false), así que crear o borrar una cambia el de cada instancia.
 */
export async function instancesOfProduct(tx: Executor, productId: string): Promise<string[]> {
  const rows = await tx
    .select({ id: tenantInstances.id })
    .from(tenantInstances)
    .where(
      and(eq(tenantInstances.productId, productId), ne(tenantInstances.status, "decommissioned")),
    );
  return rows.map((r) => r.id);
}
