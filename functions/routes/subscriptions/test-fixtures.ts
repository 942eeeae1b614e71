// Ayudas de las pruebas de clientes, suscripciones y overrides (no se usan en producción).
import { eq } from "drizzle-orm";
import { type Entitlements, resolveEntitlements } from "../../../core/entitlements";
import { kubernetesNamespaceFor, subdomainUrlFor, tenantCodeFor } from "../../../core/tenancy";
import { loadEntitlementInput } from "../../../db/entitlements";
import { plans, products, tenantInstances } from "../../../db/schema";
import type { Database } from "../../../db/types";
import type { AdminHarness } from "../../../test/support/admin";

export const suffix = () => crypto.randomUUID().replace(/-/g, "").slice(0, 10);

export async function productIdOf(db: Database, code: string): Promise<string> {
  const [row] = await db.select({ id: products.id }).from(products).where(eq(products.code, code));
  if (!row) throw new Error(`product ${code} missing (seedDemo first)`);
  return row.id;
}

export async function planIdOf(db: Database, code: string): Promise<string> {
  const [row] = await db.select({ id: plans.id }).from(plans).where(eq(plans.code, code));
  if (!row) throw new Error(`plan ${code} missing (seedDemo first)`);
  return row.id;
}

export interface CreatedCustomer {
  id: string;
  legalName: string;
  taxId: string;
  billingEmail: string;
  country: string;
}

/** Cliente nuevo por la API (datos únicos por prueba). */
export async function newCustomer(
  h: AdminHarness,
  token: string,
  overrides: Partial<Omit<CreatedCustomer, "id">> = {},
  headers: Record<string, string> = {},
): Promise<CreatedCustomer> {
  const s = suffix();
  const res = await h.request<CreatedCustomer>("POST", "/api/customers", {
    token,
    headers,
    json: {
      legalName: `Clínica Prueba ${s} S.A.S.`,
      taxId: `900${s}`,
      billingEmail: `facturas-${s}@clinica.example`,
      country: "CO",
      ...overrides,
    },
  });
  if (res.status !== 201) throw new Error(`customer create failed: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Instancia insertada directamente (sin suscripción ni provisioning). */
export async function insertInstance(
  db: Database,
  spec: {
    customerId: string;
    productCode: string;
    status?: (typeof tenantInstances.$inferInsert)["status"];
  },
): Promise<string> {
  const id = crypto.randomUUID();
  const instanceCode = `t-${suffix()}`;
  const tenantCode = tenantCodeFor("prueba", instanceCode, id);
  await db.insert(tenantInstances).values({
    id,
    customerId: spec.customerId,
    productId: await productIdOf(db, spec.productCode),
    instanceCode,
    tenantCode,
    databaseTier: "standard",
    status: spec.status ?? "active",
    kubernetesNamespace: kubernetesNamespaceFor(tenantCode),
    subdomainUrl: subdomainUrlFor("prueba", instanceCode, "farutech.test"),
  });
  return id;
}

/** Lo que vería una app hija: la misma resolución que usa el edge. */
export async function entitlementsOf(
  db: Database,
  instanceId: string,
  now?: Date,
): Promise<Entitlements> {
  const input = await loadEntitlementInput(db, instanceId, now);
  if (!input) throw new Error(`instance ${instanceId} missing`);
  return resolveEntitlements(input);
}
