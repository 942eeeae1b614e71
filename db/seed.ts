import { and, eq, isNull, or, sql } from "drizzle-orm";
import { hashedUuid } from "../core/hashed-id";
import {
  DEFAULT_BASE_DOMAIN,
  kubernetesNamespaceFor,
  subdomainUrlFor,
  tenantCodeFor,
} from "../core/tenancy";
import { demoCustomers, demoInstances, demoProducts } from "./demo-data";
import {
  customers,
  features,
  modules,
  planFeatures,
  planLimits,
  plans,
  productLimits,
  products,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "./schema";
import type { Database, Tx } from "./types";

// Ids deterministas: cargar la demo dos veces produce exactamente las mismas filas.
export function demoId(name: string): string {
  return hashedUuid(`farutech-demo:${name}`);
}

async function productIdByCode(tx: Tx, code: string): Promise<string> {
  const [row] = await tx.select({ id: products.id }).from(products).where(eq(products.code, code));
  if (!row) throw new Error(`demo product ${code} missing after insert`);
  return row.id;
}

export interface SeedSummary {
  products: number;
  plans: number;
  customers: number;
  instances: number;
}

export async function seedDemo(db: Database): Promise<SeedSummary> {
  return db.transaction(async (tx) => {
    // Serializa cargas concurrentes de la demo.
    await tx.execute(sql`select pg_advisory_xact_lock(727274003)`);
    const productIds = new Map<string, string>();
    const planIds = new Map<string, { id: string; productId: string }>();
    for (const p of demoProducts) {
      await tx
        .insert(products)
        .values({
          id: demoId(`product:${p.code}`),
          code: p.code,
          name: p.name,
          description: p.description,
        })
        .onConflictDoNothing();
      const productId = await productIdByCode(tx, p.code);
      productIds.set(p.code, productId);
      await tx
        .insert(productLimits)
        .values(p.limits.map((name) => ({ productId, name })))
        .onConflictDoNothing();
      const allFeatures: string[] = [];
      for (const m of p.modules) {
        await tx
          .insert(modules)
          .values({
            id: demoId(`module:${p.code}:${m.code}`),
            productId,
            code: m.code,
            name: m.name,
          })
          .onConflictDoNothing();
        const [mod] = await tx
          .select({ id: modules.id })
          .from(modules)
          .where(and(eq(modules.productId, productId), eq(modules.code, m.code)));
        if (!mod) throw new Error(`demo module ${m.code} missing`);
        for (const f of m.features) {
          allFeatures.push(f.code);
          await tx
            .insert(features)
            .values({
              id: demoId(`feature:${p.code}:${f.code}`),
              moduleId: mod.id,
              productId,
              code: f.code,
              name: f.name,
              isPremium: f.premium ?? false,
            })
            .onConflictDoNothing();
        }
      }
      for (const plan of p.plans) {
        await tx
          .insert(plans)
          .values({
            id: demoId(`plan:${plan.code}`),
            productId,
            code: plan.code,
            name: plan.name,
            tier: plan.tier,
            price: plan.price,
            maxUsers: plan.maxUsers,
          })
          .onConflictDoNothing();
        const [row] = await tx
          .select({ id: plans.id, productId: plans.productId })
          .from(plans)
          .where(eq(plans.code, plan.code));
        if (!row) throw new Error(`demo plan ${plan.code} missing`);
        planIds.set(plan.code, row);
        const included = plan.features === "all" ? allFeatures : plan.features;
        await tx
          .insert(planFeatures)
          .values(
            included.map((featureCode) => ({
              planId: row.id,
              productId: row.productId,
              featureCode,
            })),
          )
          .onConflictDoNothing();
        const limitRows = Object.entries(plan.limits).map(([limitName, value]) => ({
          planId: row.id,
          productId: row.productId,
          limitName,
          value,
        }));
        if (limitRows.length > 0)
          await tx.insert(planLimits).values(limitRows).onConflictDoNothing();
      }
    }

    const customerIds = new Map<string, { id: string; legalName: string; live: boolean }>();
    for (const c of demoCustomers) {
      const id = demoId(`customer:${c.country}:${c.taxId}`);
      await tx
        .insert(customers)
        .values({
          id,
          legalName: c.legalName,
          taxId: c.taxId,
          country: c.country,
          billingEmail: c.billingEmail,
        })
        .onConflictDoNothing();
      // Por id primero: un cliente de la demo borrado (GDPR) ya no tiene su NIT y no se recrea
      // (volvería el dato que se pidió olvidar); sus instancias tampoco.
      const [row] = await tx
        .select({
          id: customers.id,
          legalName: customers.legalName,
          deletedAt: customers.deletedAt,
        })
        .from(customers)
        .where(
          or(
            eq(customers.id, id),
            and(eq(customers.country, c.country), eq(customers.taxId, c.taxId)),
          ),
        )
        .orderBy(sql`${customers.id} = ${id} desc`)
        .limit(1);
      if (!row) throw new Error(`demo customer ${c.key} missing`);
      customerIds.set(c.key, {
        id: row.id,
        legalName: row.legalName,
        live: row.deletedAt === null,
      });
    }

    for (const inst of demoInstances) {
      const customer = customerIds.get(inst.customer);
      const productId = productIds.get(inst.product);
      const plan = planIds.get(inst.plan);
      if (!customer || !productId || !plan)
        throw new Error(`demo instance ${inst.instanceCode} is inconsistent`);
      if (!customer.live) continue;
      const id = demoId(`instance:${inst.customer}:${inst.product}:${inst.instanceCode}`);
      const instanceCode = `${inst.product.replace("FARUTECH_", "").toLowerCase()}-${inst.instanceCode}`;
      const tenantCode = tenantCodeFor(customer.legalName, instanceCode, id);
      await tx
        .insert(tenantInstances)
        .values({
          id,
          customerId: customer.id,
          productId,
          instanceCode,
          tenantCode,
          databaseTier: "standard",
          status: "active",
          kubernetesNamespace: kubernetesNamespaceFor(tenantCode),
          subdomainUrl: subdomainUrlFor(customer.legalName, instanceCode, DEFAULT_BASE_DOMAIN),
        })
        .onConflictDoNothing();
      const [instance] = await tx
        .select({ id: tenantInstances.id })
        .from(tenantInstances)
        .where(eq(tenantInstances.tenantCode, tenantCode));
      if (!instance) continue;
      const subscriptionId = demoId(`subscription:${id}`);
      await tx
        .insert(subscriptions)
        .values({
          id: subscriptionId,
          customerId: customer.id,
          tenantInstanceId: instance.id,
          planId: plan.id,
          productId,
          status: "active",
          startsAt: new Date("2026-01-01T00:00:00Z"),
        })
        .onConflictDoNothing();
      for (const o of inst.overrides ?? []) {
        const key = "feature" in o ? `f:${o.feature}` : `l:${o.limit}`;
        await tx
          .insert(subscriptionFeatureOverrides)
          .values({
            id: demoId(`override:${subscriptionId}:${key}`),
            subscriptionId,
            productId,
            ...("feature" in o
              ? { featureCode: o.feature, overrideType: o.type }
              : { limitName: o.limit, value: o.value }),
          })
          .onConflictDoNothing();
      }
    }
    return {
      products: demoProducts.length,
      plans: planIds.size,
      customers: customerIds.size,
      instances: demoInstances.length,
    };
  });
}

/** Cuerpo de provisioning válido sobre los datos de demo (cliente y producto de vet-norte). */
export async function demoProvisionBody(
  db: Database,
  instanceCode: string,
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  // El cliente de vet-norte, o si ya se borró (GDPR), otro cliente vigente con una instancia Vet.
  const [instance] = await db
    .select({ customerId: tenantInstances.customerId, productId: tenantInstances.productId })
    .from(tenantInstances)
    .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .where(and(eq(products.code, "FARUTECH_VET"), isNull(customers.deletedAt)))
    .orderBy(sql`${tenantInstances.instanceCode} <> 'vet-norte'`, tenantInstances.instanceCode)
    .limit(1);
  const [plan] = await db.select().from(plans).where(eq(plans.code, "VET_STARTER"));
  if (!instance || !plan) {
    throw new Error("demo data missing (or every Vet customer deleted): run db:seed first");
  }
  return {
    customerId: instance.customerId,
    productId: instance.productId,
    planId: plan.id,
    instanceCode,
    databaseTier: "standard",
    ...extra,
  };
}
