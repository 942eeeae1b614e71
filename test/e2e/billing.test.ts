import { count, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoInstances, demoProducts } from "../../db/demo-data";
import { auditLog, invoices, plans } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { call, expectProblem } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

// BillingWorker: una factura por suscripción activa y periodo, con el precio del plan; repetir no duplica.
describe("billing cycle", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("issues one invoice per active subscription, priced from the plan, idempotently", async () => {
    const token = await stack.adminToken();
    const trigger = () =>
      call(`${stack.adminUrl}/api/billing/cycles`, { token, json: { period: "2026-11" } });
    expect((await trigger()).status).toBe(202);
    const issued = await waitFor(async () => {
      const rows = await stack.db.handle.db
        .select()
        .from(invoices)
        .where(eq(invoices.period, "2026-11"));
      return rows.length === demoInstances.length ? rows : undefined;
    });
    const prices = new Map(demoProducts.flatMap((p) => p.plans.map((pl) => [pl.code, pl.price])));
    const planRows = await stack.db.handle.db.select().from(plans);
    for (const invoice of issued) {
      const plan = planRows.find((p) => p.id === invoice.planId);
      expect(invoice.amount).toBe(prices.get(plan?.code ?? ""));
    }
    expect((await trigger()).status).toBe(202);
    await new Promise((r) => setTimeout(r, 1_500));
    const [again] = await stack.db.handle.db
      .select({ n: count() })
      .from(invoices)
      .where(eq(invoices.period, "2026-11"));
    expect(again?.n).toBe(demoInstances.length);
    const [audited] = await stack.db.handle.db
      .select({ n: count() })
      .from(auditLog)
      .where(eq(auditLog.action, "invoice.issued"));
    expect(audited?.n).toBe(demoInstances.length);
    expectProblem(
      await call(`${stack.adminUrl}/api/billing/cycles`, { token, json: { period: "2026-13" } }),
      400,
    );
  });
});
