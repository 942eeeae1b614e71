import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../core/ids";
import { plans, subscriptions, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";

// Listar instancias con cliente, suscripción y plan cuesta lo mismo con 5 que con 50 filas.
describe.each(["postgres", "pglite"] as const)("no N+1 on %s", (kind) => {
  let h: AdminHarness;
  let queries: string[] = [];

  beforeAll(async () => {
    h = await startAdminHarness(kind, (q) => queries.push(q));
    const db = h.db.handle.db;
    await seedDemo(db);
    const [template] = await db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    const [plan] = await db.select().from(plans).where(eq(plans.code, "VET_STARTER"));
    if (!template || !plan) throw new Error("demo data missing");
    for (let i = 0; i < 50; i++) {
      const id = newId();
      await db.insert(tenantInstances).values({
        ...template,
        id,
        instanceCode: `bulk-${i}`,
        tenantCode: `bulk-${i}-${id.slice(0, 8)}`,
        subdomainUrl: `bulk-${i}.${template.subdomainUrl}`,
        createdAt: undefined,
        updatedAt: undefined,
      });
      await db.insert(subscriptions).values({
        id: newId(),
        customerId: template.customerId,
        tenantInstanceId: id,
        planId: plan.id,
        productId: template.productId,
        status: "active",
      });
    }
  });
  afterAll(async () => h?.stop());

  const countFor = async (limit: number) => {
    const token = await h.token(["platform_admin"]);
    queries = [];
    const res = await h.request<{ items: { subscription: { planCode: string } | null }[] }>(
      "GET",
      `/api/tenant-instances?limit=${limit}`,
      { token },
    );
    expect(res.status).toBe(200);
    expect(res.body.items).toHaveLength(limit);
    expect(res.body.items.every((i) => i.subscription?.planCode)).toBe(true);
    return queries.length;
  };

  it("runs a fixed number of queries whatever the page size", async () => {
    const small = await countFor(5);
    const large = await countFor(50);
    expect(large).toBe(small);
    expect(small).toBeLessThanOrEqual(3);
  });
});
