import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgConstraint, pgErrorCode } from "../core/http/db-errors";
import { createTestDatabase, type TestDatabase } from "../test/support/databases";
import {
  customers,
  features,
  modules,
  planFeatures,
  plans,
  productLimits,
  products,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "./schema";
import { type Database, rowsOf } from "./types";

// Sufijo único en mayúsculas (válido para los formatos de código).
function hex(): string {
  return randomUUID().replace(/-/g, "").toUpperCase();
}

function code(prefix: string): string {
  return `${prefix}_${hex()}`;
}

function instanceCode(): string {
  return `i-${hex().toLowerCase().slice(0, 12)}`;
}

/** Resuelve con el error de la sentencia; falla si la base la aceptó. */
async function rejection(statement: PromiseLike<unknown>): Promise<unknown> {
  try {
    await statement;
  } catch (err) {
    return err;
  }
  throw new Error("expected the database to reject the statement");
}

async function expectViolation(
  statement: PromiseLike<unknown>,
  errorCode: string,
  constraint: string,
): Promise<void> {
  const err = await rejection(statement);
  expect({ code: pgErrorCode(err), constraint: pgConstraint(err) }).toEqual({
    code: errorCode,
    constraint,
  });
}

interface ProductFixture {
  productId: string;
  moduleId: string;
  featureCode: string;
  limitName: string;
  planId: string;
}

async function createProduct(db: Database): Promise<ProductFixture> {
  const productId = randomUUID();
  const moduleId = randomUUID();
  const planId = randomUUID();
  const featureCode = code("F");
  const limitName = `l_${hex().toLowerCase()}`;
  await db.insert(products).values({ id: productId, code: code("P"), name: "Producto" });
  await db.insert(productLimits).values({ productId, name: limitName });
  await db.insert(modules).values({ id: moduleId, productId, code: code("M"), name: "Módulo" });
  await db
    .insert(features)
    .values({ id: randomUUID(), moduleId, productId, code: featureCode, name: "Feature" });
  await db.insert(plans).values({
    id: planId,
    productId,
    code: code("PL"),
    name: "Plan",
    tier: "standard",
    price: "10.00",
    maxUsers: 5,
  });
  return { productId, moduleId, featureCode, limitName, planId };
}

function customerRow(taxId: string, country: string) {
  return {
    id: randomUUID(),
    legalName: `Cliente ${taxId}`,
    taxId,
    billingEmail: "billing@example.test",
    country,
  };
}

async function createCustomer(db: Database): Promise<string> {
  const row = customerRow(hex(), "CO");
  await db.insert(customers).values(row);
  return row.id;
}

function instanceRow(customerId: string, productId: string, slug = instanceCode()) {
  const tenantCode = `t-${randomUUID()}`;
  return {
    id: randomUUID(),
    customerId,
    productId,
    instanceCode: slug,
    tenantCode,
    databaseTier: "standard" as const,
    kubernetesNamespace: `tenant-${tenantCode}`,
    subdomainUrl: `${tenantCode}.example.test`,
  };
}

async function createInstance(db: Database, customerId: string, productId: string) {
  const row = instanceRow(customerId, productId);
  await db.insert(tenantInstances).values(row);
  return row.id;
}

interface SubscriptionFixture {
  product: ProductFixture;
  customerId: string;
  instanceId: string;
  subscriptionId: string;
}

async function createSubscription(db: Database): Promise<SubscriptionFixture> {
  const product = await createProduct(db);
  const customerId = await createCustomer(db);
  const instanceId = await createInstance(db, customerId, product.productId);
  const subscriptionId = randomUUID();
  await db.insert(subscriptions).values({
    id: subscriptionId,
    customerId,
    tenantInstanceId: instanceId,
    planId: product.planId,
    productId: product.productId,
  });
  return { product, customerId, instanceId, subscriptionId };
}

describe.each(["postgres", "pglite"] as const)("schema constraints (%s)", (kind) => {
  let testDb: TestDatabase | undefined;

  function db(): Database {
    if (!testDb) throw new Error("test database not created");
    return testDb.handle.db;
  }

  beforeAll(async () => {
    testDb = await createTestDatabase(kind);
  });

  afterAll(async () => {
    await testDb?.drop();
  });

  it("rejects a feature whose product differs from its module's product", async () => {
    const a = await createProduct(db());
    const b = await createProduct(db());
    await expectViolation(
      db()
        .insert(features)
        .values({
          id: randomUUID(),
          moduleId: a.moduleId,
          productId: b.productId,
          code: code("F"),
          name: "Cruzada",
        }),
      "23503",
      "features_module_product_fk",
    );
  });

  it("rejects a duplicate (country, tax_id), not the tax_id in another country", async () => {
    const taxId = hex();
    await db().insert(customers).values(customerRow(taxId, "CO"));
    await expectViolation(
      db().insert(customers).values(customerRow(taxId, "CO")),
      "23505",
      "customers_country_tax_id_key_uq",
    );
    await db().insert(customers).values(customerRow(taxId, "MX"));
    const rows = await db()
      .select({ country: customers.country })
      .from(customers)
      .where(sql`${customers.taxId} = ${taxId}`)
      .orderBy(customers.country);
    expect(rows).toEqual([{ country: "CO" }, { country: "MX" }]);
  });

  it("rejects a duplicate instance_code within a customer only", async () => {
    const { productId } = await createProduct(db());
    const first = await createCustomer(db());
    const second = await createCustomer(db());
    const shared = instanceCode();
    await db()
      .insert(tenantInstances)
      .values(instanceRow(first, productId, shared));
    await expectViolation(
      db()
        .insert(tenantInstances)
        .values(instanceRow(first, productId, shared)),
      "23505",
      "tenant_instances_customer_code_uq",
    );
    await db()
      .insert(tenantInstances)
      .values(instanceRow(second, productId, shared));
    const rows = await db()
      .select({ customerId: tenantInstances.customerId })
      .from(tenantInstances)
      .where(sql`${tenantInstances.instanceCode} = ${shared}`);
    expect(rows.map((r) => r.customerId).sort()).toEqual([first, second].sort());
  });

  it("lets a customer reuse the instance_code of a decommissioned instance, once", async () => {
    const { productId } = await createProduct(db());
    const customer = await createCustomer(db());
    const code = instanceCode();
    const old = instanceRow(customer, productId, code);
    await db().insert(tenantInstances).values(old);
    await db()
      .update(tenantInstances)
      .set({ status: "decommissioned" })
      .where(sql`${tenantInstances.id} = ${old.id}`);
    await db()
      .insert(tenantInstances)
      .values(instanceRow(customer, productId, code));
    // Entre las vivas sigue siendo único.
    await expectViolation(
      db()
        .insert(tenantInstances)
        .values(instanceRow(customer, productId, code)),
      "23505",
      "tenant_instances_customer_code_uq",
    );
  });

  it("rejects a second subscription for the same instance", async () => {
    const s = await createSubscription(db());
    await expectViolation(
      db().insert(subscriptions).values({
        id: randomUUID(),
        customerId: s.customerId,
        tenantInstanceId: s.instanceId,
        planId: s.product.planId,
        productId: s.product.productId,
      }),
      "23505",
      "subscriptions_instance_uq",
    );
  });

  it("rejects a subscription with the instance's product and a plan of another", async () => {
    const own = await createProduct(db());
    const other = await createProduct(db());
    const customerId = await createCustomer(db());
    const instanceId = await createInstance(db(), customerId, own.productId);
    await expectViolation(
      db().insert(subscriptions).values({
        id: randomUUID(),
        customerId,
        tenantInstanceId: instanceId,
        planId: other.planId,
        productId: own.productId,
      }),
      "23503",
      "subscriptions_plan_product_fk",
    );
  });

  it("rejects a subscription with the plan's product and an instance of another", async () => {
    const own = await createProduct(db());
    const other = await createProduct(db());
    const customerId = await createCustomer(db());
    const instanceId = await createInstance(db(), customerId, own.productId);
    await expectViolation(
      db().insert(subscriptions).values({
        id: randomUUID(),
        customerId,
        tenantInstanceId: instanceId,
        planId: other.planId,
        productId: other.productId,
      }),
      "23503",
      "subscriptions_instance_product_fk",
    );
  });

  it("rejects an override naming a feature of another product", async () => {
    const s = await createSubscription(db());
    const other = await createProduct(db());
    const base = { subscriptionId: s.subscriptionId, productId: s.product.productId };
    await expectViolation(
      db()
        .insert(subscriptionFeatureOverrides)
        .values({ ...base, featureCode: other.featureCode, overrideType: "enable" }),
      "23503",
      "overrides_feature_fk",
    );
    // Control: la feature propia sí se acepta.
    await db()
      .insert(subscriptionFeatureOverrides)
      .values({ ...base, featureCode: s.product.featureCode, overrideType: "enable" });
  });

  it("rejects an override naming an unknown limit", async () => {
    const s = await createSubscription(db());
    const base = { subscriptionId: s.subscriptionId, productId: s.product.productId };
    await expectViolation(
      db()
        .insert(subscriptionFeatureOverrides)
        .values({ ...base, limitName: `l_${hex().toLowerCase()}`, value: 10 }),
      "23503",
      "overrides_limit_fk",
    );
    await db()
      .insert(subscriptionFeatureOverrides)
      .values({ ...base, limitName: s.product.limitName, value: 10 });
  });

  it("rejects an override with both a feature and a limit", async () => {
    const s = await createSubscription(db());
    await expectViolation(
      db().insert(subscriptionFeatureOverrides).values({
        subscriptionId: s.subscriptionId,
        productId: s.product.productId,
        featureCode: s.product.featureCode,
        overrideType: "disable",
        limitName: s.product.limitName,
        value: 3,
      }),
      "23514",
      "overrides_shape",
    );
  });

  it("rejects an override with neither a feature nor a limit", async () => {
    const s = await createSubscription(db());
    await expectViolation(
      db()
        .insert(subscriptionFeatureOverrides)
        .values({ subscriptionId: s.subscriptionId, productId: s.product.productId }),
      "23514",
      "overrides_shape",
    );
  });

  it("rejects a plan feature that belongs to another product", async () => {
    const own = await createProduct(db());
    const other = await createProduct(db());
    await expectViolation(
      db()
        .insert(planFeatures)
        .values({ planId: own.planId, productId: own.productId, featureCode: other.featureCode }),
      "23503",
      "plan_features_feature_fk",
    );
    await db()
      .insert(planFeatures)
      .values({ planId: own.planId, productId: own.productId, featureCode: own.featureCode });
  });

  it("rejects a connection string on a Standard-tier instance", async () => {
    const { productId } = await createProduct(db());
    const customerId = await createCustomer(db());
    const connectionStringEncrypted = "v1:cifrado";
    await expectViolation(
      db()
        .insert(tenantInstances)
        .values({ ...instanceRow(customerId, productId), connectionStringEncrypted }),
      "23514",
      "tenant_instances_connection_tier",
    );
    await db()
      .insert(tenantInstances)
      .values({
        ...instanceRow(customerId, productId),
        databaseTier: "enterprise",
        connectionStringEncrypted,
      });
  });

  it("rejects a product code that is not upper snake case", async () => {
    await expectViolation(
      db().insert(products).values({ id: randomUUID(), code: "lowercase", name: "Mal código" }),
      "23514",
      "products_code_format",
    );
  });

  it("indexes the customer, client, instance and subscription foreign keys", async () => {
    const result = await db().execute(sql`
      select tablename, indexname, indexdef from pg_indexes
      where schemaname = 'public'
        and indexname in (
          'tenant_instances_customer_idx', 'subscriptions_customer_idx',
          'overrides_subscription_feature_uq', 'provisioning_tasks_instance_idx',
          'api_clients_customer_idx', 'refresh_tokens_client_idx'
        )
      order by indexname`);
    const rows = rowsOf<{ tablename: string; indexname: string; indexdef: string }>(result);
    expect(
      rows.map((r) => ({
        table: r.tablename,
        index: r.indexname,
        columns: /\(([^)]*)\)\s*$/.exec(r.indexdef)?.[1],
      })),
    ).toEqual([
      { table: "api_clients", index: "api_clients_customer_idx", columns: "customer_id" },
      // El único (subscription_id, feature_code) empieza por la FK: no hace falta otro índice.
      {
        table: "subscription_feature_overrides",
        index: "overrides_subscription_feature_uq",
        columns: "subscription_id, feature_code",
      },
      {
        table: "provisioning_tasks",
        index: "provisioning_tasks_instance_idx",
        columns: "tenant_instance_id",
      },
      { table: "refresh_tokens", index: "refresh_tokens_client_idx", columns: "client_id" },
      { table: "subscriptions", index: "subscriptions_customer_idx", columns: "customer_id" },
      { table: "tenant_instances", index: "tenant_instances_customer_idx", columns: "customer_id" },
    ]);
  });
});
