import { and, eq } from "drizzle-orm";
import { newId } from "../../../core/ids";
import { kubernetesNamespaceFor, subdomainUrlFor, tenantCodeFor } from "../../../core/tenancy";
import { customers, plans, subscriptions, tenantInstances } from "../../../db/schema";
import type { Database } from "../../../db/types";

// Solo para pruebas: una instancia propia de cada prueba sobre los datos de demo (seedDemo).

export interface TestInstance {
  id: string;
  tenantCode: string;
  customerId: string;
  productId: string;
  subscriptionId: string;
  instanceCode: string;
}

export async function createTestInstance(
  db: Database,
  options: {
    status?: (typeof tenantInstances.$inferInsert)["status"];
    subscriptionStatus?: (typeof subscriptions.$inferInsert)["status"];
    planCode?: string;
  } = {},
): Promise<TestInstance> {
  const [plan] = await db
    .select()
    .from(plans)
    .where(eq(plans.code, options.planCode ?? "VET_STARTER"));
  const [customer] = await db
    .select()
    .from(customers)
    .where(and(eq(customers.isActive, true), eq(customers.country, "CO")))
    .limit(1);
  if (!plan || !customer) throw new Error("demo data missing: run seedDemo first");
  const id = newId();
  const instanceCode = `t-${id.slice(0, 8)}`;
  const tenantCode = tenantCodeFor(customer.legalName, instanceCode, id);
  await db.insert(tenantInstances).values({
    id,
    customerId: customer.id,
    productId: plan.productId,
    instanceCode,
    tenantCode,
    databaseTier: "standard",
    status: options.status ?? "active",
    kubernetesNamespace: kubernetesNamespaceFor(tenantCode),
    subdomainUrl: subdomainUrlFor(customer.legalName, instanceCode, "farutech.test"),
  });
  const subscriptionId = newId();
  await db.insert(subscriptions).values({
    id: subscriptionId,
    customerId: customer.id,
    tenantInstanceId: id,
    planId: plan.id,
    productId: plan.productId,
    status: options.subscriptionStatus ?? "active",
  });
  return {
    id,
    tenantCode,
    customerId: customer.id,
    productId: plan.productId,
    subscriptionId,
    instanceCode,
  };
}
