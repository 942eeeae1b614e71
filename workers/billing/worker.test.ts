import { count, eq, like, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { billingCycleSchema, isBillablePeriod } from "../../contracts/events";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { auditLog, invoices, subscriptions, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import type { HandlerContext } from "../runtime/consumer";
import { billingWorker } from "./worker";

type Cycle = { period: string };

function cycle(period: string): HandlerContext<Cycle> {
  const envelope = {
    id: newId(),
    type: "billing.cycle_triggered",
    occurredAt: new Date().toISOString(),
    correlationId: `billing-${newId()}`,
    data: { period },
  };
  return {
    data: { period },
    envelope,
    subject: "billing.tasks.cycle",
    deliveryCount: 1,
    logger: silentLogger,
    heartbeat() {},
    signal: new AbortController().signal,
  };
}

// El handler del BillingWorker contra un Postgres real, por tramos de suscripciones.
describe("billing worker", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
  });
  afterAll(async () => db?.drop());

  const invoicesOf = async (period: string) =>
    (await db.handle.db.select({ n: count() }).from(invoices).where(eq(invoices.period, period)))[0]
      ?.n ?? 0;

  it("bills every subscription across chunk boundaries, once, with one audit row per invoice", async () => {
    // Las suscripciones de la demo empiezan hoy: este mes y el siguiente les tocan.
    const now = new Date();
    const month = (offset: number) =>
      new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1))
        .toISOString()
        .slice(0, 7);
    const [current, next] = [month(0), month(1)];
    const whole = billingWorker({ db: db.handle.db });
    await whole.handle(cycle(current));
    const expected = await invoicesOf(current);
    expect(expected).toBeGreaterThan(3);
    // Tramos de 3: el resultado es el mismo que de una vez.
    const chunked = billingWorker({ db: db.handle.db, chunkSize: 3 });
    await chunked.handle(cycle(next));
    expect(await invoicesOf(next)).toBe(expected);
    await chunked.handle(cycle(next));
    expect(await invoicesOf(next)).toBe(expected);
    const [audited] = await db.handle.db
      .select({ n: count() })
      .from(auditLog)
      .where(sql`${auditLog.action} = 'invoice.issued' and ${auditLog.after}->>'period' = ${next}`);
    expect(audited?.n).toBe(expected);
  });

  it("bills what was active during the period even if it is cancelled or suspended by the billing run", async () => {
    const d = db.handle.db;
    const now = new Date();
    const month = (offset: number) =>
      new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1))
        .toISOString()
        .slice(0, 7);
    // Cuatro instancias activas con su suscripción activa desde hace un año.
    await d.execute(sql`
      with src as (
        select ti.*, s.plan_id from tenant_instances ti join subscriptions s on s.tenant_instance_id = ti.id
         where ti.status = 'active' and s.status = 'active' limit 1),
      inst as (
        insert into tenant_instances (customer_id, product_id, instance_code, tenant_code, environment,
          database_tier, status, kubernetes_namespace, subdomain_url)
        select src.customer_id, src.product_id, 'period-' || g, 'period-tenant-' || g || '-' || ${newId()},
          src.environment, src.database_tier, 'active', src.kubernetes_namespace, 'period-' || g || '.farutech.test'
          from src, generate_series(1, 4) g
        returning *)
      insert into subscriptions (customer_id, tenant_instance_id, plan_id, product_id, status, starts_at)
      select inst.customer_id, inst.id, src.plan_id, inst.product_id,
        (case when inst.instance_code = 'period-3' then 'pending' else 'active' end)::subscription_status,
        now() - interval '1 year'
        from inst, src`);
    const rows = await d
      .select({
        instance_id: subscriptions.tenantInstanceId,
        subscription_id: subscriptions.id,
        status: subscriptions.status,
      })
      .from(subscriptions)
      .innerJoin(tenantInstances, eq(tenantInstances.id, subscriptions.tenantInstanceId))
      .where(like(tenantInstances.instanceCode, "period-%"));
    const neverActive = rows.find((r) => r.status === "pending");
    const [cancelled, suspendedInstance, stillActive] = rows.filter((r) => r !== neverActive);
    if (!cancelled || !suspendedInstance || !neverActive || !stillActive) throw new Error("setup");
    // Hoy (dentro del mes en curso): una suscripción se cancela, una instancia se suspende.
    await d.execute(
      sql`update subscriptions set status = 'cancelled' where id = ${cancelled.subscription_id}`,
    );
    await d.execute(
      sql`update tenant_instances set status = 'suspended' where id = ${suspendedInstance.instance_id}`,
    );
    // Otra nunca estuvo activa: pendiente y luego cancelada.
    await d.execute(
      sql`update subscriptions set status = 'cancelled' where id = ${neverActive.subscription_id}`,
    );
    // Un paso por 'active' borra la marca: la reactivada se cobra como activa.
    await d.execute(
      sql`update subscriptions set status = 'suspended' where id = ${stillActive.subscription_id}`,
    );
    await d.execute(
      sql`update subscriptions set status = 'active' where id = ${stillActive.subscription_id}`,
    );

    const billed = async (period: string) => {
      await billingWorker({ db: d }).handle(cycle(period));
      const issued = await d
        .select({ subscriptionId: invoices.subscriptionId })
        .from(invoices)
        .where(eq(invoices.period, period));
      return new Set(issued.map((i) => i.subscriptionId));
    };
    // El mes en curso: las dos que dejaron de estar activas hoy lo estuvieron en él, y se cobran.
    const current = await billed(month(0));
    expect(current.has(cancelled.subscription_id)).toBe(true);
    expect(current.has(suspendedInstance.subscription_id)).toBe(true);
    expect(current.has(stillActive.subscription_id)).toBe(true);
    expect(current.has(neverActive.subscription_id)).toBe(false);
    // El mes siguiente: ya no estaban activas en ningún momento de él.
    const next = await billed(month(1));
    expect(next.has(cancelled.subscription_id)).toBe(false);
    expect(next.has(suspendedInstance.subscription_id)).toBe(false);
    expect(next.has(neverActive.subscription_id)).toBe(false);
    expect(next.has(stillActive.subscription_id)).toBe(true);
  });

  it("bills 10,000 active subscriptions in one cycle (more rows than one statement's parameters allow)", async () => {
    const d = db.handle.db;
    await d.execute(sql`
      with src as (
        select ti.* from tenant_instances ti join subscriptions s on s.tenant_instance_id = ti.id
         where ti.status = 'active' and s.status = 'active' limit 1)
      insert into tenant_instances (customer_id, product_id, instance_code, tenant_code, environment,
        database_tier, status, kubernetes_namespace, subdomain_url)
      select src.customer_id, src.product_id, 'bulk-' || g, 'bulk-tenant-' || g, src.environment,
        src.database_tier, 'active', src.kubernetes_namespace, 'bulk-' || g || '.farutech.test'
        from src, generate_series(1, 10000) g`);
    await d.execute(sql`
      with src as (
        select s.plan_id from subscriptions s join tenant_instances ti on s.tenant_instance_id = ti.id
         where s.status = 'active' and ti.instance_code not like 'bulk-%' limit 1)
      insert into subscriptions (customer_id, tenant_instance_id, plan_id, product_id, status, starts_at)
      select ti.customer_id, ti.id, src.plan_id, ti.product_id, 'active', '2020-01-01'
        from tenant_instances ti, src where ti.instance_code like 'bulk-%'`);
    await billingWorker({ db: d }).handle(cycle("2025-03"));
    expect(await invoicesOf("2025-03")).toBeGreaterThanOrEqual(10_000);
  }, 60_000);

  it("accepts periods from 2000-01 to next month only", () => {
    const now = new Date("2026-11-23T12:00:00Z");
    expect(isBillablePeriod("2026-11", now)).toBe(true);
    expect(isBillablePeriod("2026-12", now)).toBe(true);
    expect(isBillablePeriod("2000-01", now)).toBe(true);
    for (const p of ["2027-01", "2099-01", "9999-12", "1999-12", "0099-01", "2026-13", "2026-1"]) {
      expect(isBillablePeriod(p, now)).toBe(false);
    }
    // En diciembre, el mes siguiente es enero del año siguiente.
    expect(isBillablePeriod("2027-01", new Date("2026-12-31T23:59:59Z"))).toBe(true);
    // El worker rechaza (error permanente de esquema) un periodo fuera de rango.
    expect(billingCycleSchema.safeParse({ period: "9999-12" }).success).toBe(false);
  });
});
