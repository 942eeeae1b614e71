import { eq } from "drizzle-orm";
import type { EntitlementInput, Override } from "../core/entitlements";
import {
  features,
  planFeatures,
  planLimits,
  plans,
  products,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "./schema";
import type { Database } from "./types";

/** Lee todo lo que decide los entitlements de una instancia; null si no existe. */
export async function loadEntitlementInput(
  db: Database,
  instanceId: string,
  now: Date = new Date(),
): Promise<EntitlementInput | null> {
  const [head] = await db
    .select({
      instanceId: tenantInstances.id,
      instanceStatus: tenantInstances.status,
      productId: products.id,
      productCode: products.code,
      subscription: subscriptions,
      plan: plans,
    })
    .from(tenantInstances)
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .leftJoin(subscriptions, eq(subscriptions.tenantInstanceId, tenantInstances.id))
    .leftJoin(plans, eq(plans.id, subscriptions.planId))
    .where(eq(tenantInstances.id, instanceId));
  if (!head) return null;
  const planId = head.plan?.id;
  const subscriptionId = head.subscription?.id;
  const [productFeatures, includedFeatures, limits, overrides] = await Promise.all([
    db.select({ code: features.code }).from(features).where(eq(features.productId, head.productId)),
    planId
      ? db
          .select({ code: planFeatures.featureCode })
          .from(planFeatures)
          .where(eq(planFeatures.planId, planId))
      : Promise.resolve([]),
    planId
      ? db
          .select({ name: planLimits.limitName, value: planLimits.value })
          .from(planLimits)
          .where(eq(planLimits.planId, planId))
      : Promise.resolve([]),
    subscriptionId
      ? db
          .select()
          .from(subscriptionFeatureOverrides)
          .where(eq(subscriptionFeatureOverrides.subscriptionId, subscriptionId))
      : Promise.resolve([]),
  ]);
  return {
    instance: { id: head.instanceId, status: head.instanceStatus },
    productCode: head.productCode,
    productFeatures: productFeatures.map((f) => f.code),
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
          features: includedFeatures.map((f) => f.code),
          limits: Object.fromEntries(limits.map((l) => [l.name, l.value])),
        }
      : null,
    overrides: overrides.flatMap((o): Override[] => {
      if (o.featureCode && o.overrideType)
        return [{ kind: "feature", code: o.featureCode, type: o.overrideType }];
      if (o.limitName && o.value !== null)
        return [{ kind: "limit", name: o.limitName, value: o.value }];
      return [];
    }),
    now,
  };
}
