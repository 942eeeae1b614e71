import { eq } from "drizzle-orm";
import { plans, tenantInstances } from "../../db/schema";
import type { Database } from "../../db/types";

/** Cuerpo de provisioning válido sobre los datos de demo (cliente y producto de vet-norte). */
export async function demoProvisionBody(
  db: Database,
  instanceCode: string,
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const [instance] = await db
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.instanceCode, "vet-norte"));
  const [plan] = await db.select().from(plans).where(eq(plans.code, "VET_STARTER"));
  if (!instance || !plan) throw new Error("demo data missing: run seedDemo first");
  return {
    customerId: instance.customerId,
    productId: instance.productId,
    planId: plan.id,
    instanceCode,
    databaseTier: "standard",
    ...extra,
  };
}
