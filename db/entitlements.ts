import { eq, sql } from "drizzle-orm";
import type { EntitlementInput, Override } from "../core/entitlements";
import {
  features,
  planFeatures,
  planLimits,
  plans,
  productLimits,
  products,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "./schema";
import type { Database } from "./types";

interface OverrideRow {
  featureCode: string | null;
  overrideType: "enable" | "disable" | null;
  limitName: string | null;
  value: number | string | null;
}

/**
 * Lee todo lo que decide los entitlements de una instancia en UNA consulta (subconsultas
 * agregadas en JSON); null si no existe. Es la ruta fría y la revalidación del edge, que llega a
 * Neon por WebSocket: un viaje en lugar de dos en serie más cuatro en paralelo.
 */
export async function loadEntitlementInput(
  db: Database,
  instanceId: string,
  now: Date = new Date(),
): Promise<EntitlementInput | null> {
  const [head] = await db
    .select({
      instanceId: tenantInstances.id,
      instanceStatus: tenantInstances.status,
      productCode: products.code,
      subscription: subscriptions,
      plan: plans,
      productFeatures: sql<string[]>`(select coalesce(json_agg(${features.code}), '[]'::json)
        from ${features} where ${features.productId} = ${tenantInstances.productId})`,
      productLimits: sql<string[]>`(select coalesce(json_agg(${productLimits.name}), '[]'::json)
        from ${productLimits} where ${productLimits.productId} = ${tenantInstances.productId})`,
      includedFeatures: sql<
        string[]
      >`(select coalesce(json_agg(${planFeatures.featureCode}), '[]'::json)
        from ${planFeatures} where ${planFeatures.planId} = ${plans.id})`,
      limits: sql<Record<string, number | string>>`(select
        coalesce(json_object_agg(${planLimits.limitName}, ${planLimits.value}), '{}'::json)
        from ${planLimits} where ${planLimits.planId} = ${plans.id})`,
      overrides: sql<OverrideRow[]>`(select coalesce(json_agg(json_build_object(
          'featureCode', ${subscriptionFeatureOverrides.featureCode},
          'overrideType', ${subscriptionFeatureOverrides.overrideType},
          'limitName', ${subscriptionFeatureOverrides.limitName},
          'value', ${subscriptionFeatureOverrides.value})), '[]'::json)
        from ${subscriptionFeatureOverrides}
        where ${subscriptionFeatureOverrides.subscriptionId} = ${subscriptions.id})`,
    })
    .from(tenantInstances)
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .leftJoin(subscriptions, eq(subscriptions.tenantInstanceId, tenantInstances.id))
    .leftJoin(plans, eq(plans.id, subscriptions.planId))
    .where(eq(tenantInstances.id, instanceId));
  if (!head) return null;
  return {
    instance: { id: head.instanceId, status: head.instanceStatus },
    productCode: head.productCode,
    productFeatures: head.productFeatures,
    productLimits: head.productLimits,
    subscription: head.subscription
      ? {
          status: head.subscription.status,
          startsAt: head.subscription.startsAt,
          expiresAt: head.subscription.expiresAt,
        }
      : null,
    plan: head.plan
      ? {
          code: head.plan.code,
          maxUsers: head.plan.maxUsers,
          features: head.includedFeatures,
          limits: Object.fromEntries(
            Object.entries(head.limits).map(([name, value]) => [name, Number(value)]),
          ),
        }
      : null,
    overrides: head.overrides.flatMap((o): Override[] => {
      if (o.featureCode && o.overrideType)
        return [{ kind: "feature", code: o.featureCode, type: o.overrideType }];
      if (o.limitName && o.value !== null)
        return [{ kind: "limit", name: o.limitName, value: Number(o.value) }];
      return [];
    }),
    now,
  };
}
