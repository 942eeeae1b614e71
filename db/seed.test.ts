import { count, eq, getTableName, is, sql } from "drizzle-orm";
import { PgTable } from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../test/support/databases";
import { demoCustomers } from "./demo-data";
import * as schema from "./schema";
import {
  customers,
  plans,
  products,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "./schema";
import { demoId, demoProvisionBody, type SeedSummary, seedDemo } from "./seed";
import { type Database, rowsOf } from "./types";

const allTables: PgTable[] = [];
for (const value of Object.values(schema) as unknown[]) {
  if (is(value, PgTable)) allTables.push(value);
}

async function rowCounts(db: Database): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of allTables) {
    const [row] = await db.select({ n: count() }).from(table);
    counts[getTableName(table)] = row?.n ?? -1;
  }
  return counts;
}

// Conteos de todas las tablas y filas completas (ordenadas) de las principales.
async function snapshot(db: Database) {
  return {
    counts: await rowCounts(db),
    products: await db.select().from(products).orderBy(products.id),
    plans: await db.select().from(plans).orderBy(plans.id),
    customers: await db.select().from(customers).orderBy(customers.id),
    tenantInstances: await db.select().from(tenantInstances).orderBy(tenantInstances.id),
    subscriptions: await db.select().from(subscriptions).orderBy(subscriptions.id),
    overrides: await db
      .select()
      .from(subscriptionFeatureOverrides)
      .orderBy(subscriptionFeatureOverrides.id),
  };
}

describe.each(["postgres", "pglite"] as const)("seedDemo (%s)", (kind) => {
  let testDb: TestDatabase | undefined;
  let emptyBefore: Record<string, number> = {};
  let firstSummary: SeedSummary | undefined;

  function db(): Database {
    if (!testDb) throw new Error("test database not created");
    return testDb.handle.db;
  }

  beforeAll(async () => {
    testDb = await createTestDatabase(kind);
    emptyBefore = await rowCounts(db());
    firstSummary = await seedDemo(db());
  });

  afterAll(async () => {
    await testDb?.drop();
  });

  it("starts from an empty database whose tables are all in the schema", async () => {
    const result = await db().execute(sql`
      select table_name from information_schema.tables
      where table_schema = 'public' and table_type = 'BASE TABLE'
      order by table_name`);
    const dbTables = rowsOf<{ table_name: string }>(result).map((r) => r.table_name);
    expect(Object.keys(emptyBefore).sort()).toEqual(dbTables);
    expect(Object.values(emptyBefore).filter((n) => n !== 0)).toEqual([]);
  });

  it("returns the demo summary", () => {
    expect(firstSummary).toEqual({ products: 3, plans: 9, customers: 5, instances: 10 });
  });

  it("loads 3 products, 5 customers and 10 instances", async () => {
    const counts = await rowCounts(db());
    expect(counts).toMatchObject({ products: 3, customers: 5, tenant_instances: 10 });
  });

  it("gives every product at least one plan of each tier", async () => {
    const rows = await db()
      .selectDistinct({ code: products.code, tier: plans.tier })
      .from(plans)
      .innerJoin(products, eq(plans.productId, products.id));
    const tiersByProduct = new Map<string, string[]>();
    for (const r of rows)
      tiersByProduct.set(r.code, [...(tiersByProduct.get(r.code) ?? []), r.tier]);
    expect(tiersByProduct.size).toBe(3);
    for (const tiers of tiersByProduct.values()) {
      expect(tiers.sort()).toEqual(["enterprise", "professional", "standard"]);
    }
  });

  it("gives each of the 10 instances exactly one subscription", async () => {
    const rows = await db()
      .select({ id: tenantInstances.id, subs: count(subscriptions.id) })
      .from(tenantInstances)
      .leftJoin(subscriptions, eq(subscriptions.tenantInstanceId, tenantInstances.id))
      .groupBy(tenantInstances.id);
    expect(rows).toHaveLength(10);
    expect(rows.filter((r) => r.subs !== 1)).toEqual([]);
  });

  it("loads at least 3 overrides", async () => {
    const [row] = await db().select({ n: count() }).from(subscriptionFeatureOverrides);
    expect(row?.n).toBeGreaterThanOrEqual(3);
  });

  it("changes nothing when run a second time", async () => {
    const before = await snapshot(db());
    const summary = await seedDemo(db());
    const after = await snapshot(db());
    expect(summary).toEqual(firstSummary);
    expect(before.counts.products).toBe(3);
    expect(after).toEqual(before);
  });

  it("still loads after a demo customer was deleted and erased, without bringing it back", async () => {
    const [andina] = await db()
      .select()
      .from(customers)
      .where(
        eq(
          customers.id,
          demoId(`customer:${demoCustomers[0]?.country}:${demoCustomers[0]?.taxId}`),
        ),
      );
    if (!andina) throw new Error("demo customer missing");
    // Lo que deja el borrado GDPR: sin nombre ni NIT, y borrado.
    await db()
      .update(customers)
      .set({
        legalName: "erased",
        taxId: `erased-${andina.id}`,
        deletedAt: new Date(),
        erasedAt: new Date(),
      })
      .where(eq(customers.id, andina.id));
    const before = await snapshot(db());
    await seedDemo(db());
    const after = await snapshot(db());
    expect(after).toEqual(before);
    const recreated = await db()
      .select()
      .from(customers)
      .where(eq(customers.taxId, demoCustomers[0]?.taxId ?? ""));
    expect(recreated).toEqual([]);
  });

  it("builds the demo provision body on a customer that is still there", async () => {
    const ownerOf = async (code: string) =>
      (
        await db()
          .select({ customerId: tenantInstances.customerId })
          .from(tenantInstances)
          .where(eq(tenantInstances.instanceCode, code))
      )[0]?.customerId;
    const patitas = await ownerOf("vet-norte");
    expect((await demoProvisionBody(db(), "x")).customerId).toBe(patitas);
    // Borrado (GDPR) el cliente de vet-norte, se usa otro cliente con una instancia Vet.
    await db()
      .update(customers)
      .set({ deletedAt: new Date() })
      .where(eq(customers.id, patitas ?? ""));
    try {
      const body = await demoProvisionBody(db(), "x");
      expect(body.customerId).not.toBe(patitas);
      expect(body.customerId).toBe(await ownerOf("vet-principal"));
    } finally {
      await db()
        .update(customers)
        .set({ deletedAt: null })
        .where(eq(customers.id, patitas ?? ""));
    }
  });
});
