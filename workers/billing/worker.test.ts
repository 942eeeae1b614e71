import { and, count, eq, like, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  billingCycleSchema,
  isBillablePeriod,
  lastClosedPeriod,
  periodClosesAt,
} from "../../contracts/events";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import {
  auditLog,
  invoices,
  planPricePeriods,
  plans,
  subscriptionActivePeriods,
  subscriptionPlanPeriods,
  subscriptions,
  tenantInstanceActivePeriods,
  tenantInstances,
} from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import type { HandlerContext } from "../runtime/consumer";
import { PermanentError } from "../runtime/errors";
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

  /** El mes (YYYY-MM, UTC) de hace `n` meses. */
  const monthsAgo = (n: number) => {
    const now = new Date();
    return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - n, 1))
      .toISOString()
      .slice(0, 7);
  };

  /** Lleva atrás toda la historia (fechas y tramos) de estas suscripciones y sus instancias. */
  const shiftHistory = async (
    rows: { subscriptionId: string; instanceId: string }[],
    by: string,
  ) => {
    const d = db.handle.db;
    const subs = sql.join(
      rows.map((r) => sql`${r.subscriptionId}::uuid`),
      sql`, `,
    );
    const insts = sql.join(
      rows.map((r) => sql`${r.instanceId}::uuid`),
      sql`, `,
    );
    const interval = sql`${by}::interval`;
    await d.execute(sql`update subscriptions set starts_at = starts_at - ${interval}
      where id in (${subs})`);
    await d.execute(sql`update subscription_active_periods set active_from = active_from - ${interval},
      active_until = active_until - ${interval} where subscription_id in (${subs})`);
    await d.execute(sql`update tenant_instance_active_periods set active_from = active_from - ${interval},
      active_until = active_until - ${interval} where tenant_instance_id in (${insts})`);
  };

  /**
   * Da de alta `count` instancias activas, copiadas de una de la demo, cada una con su suscripción
   * activa desde `startsAt` (SQL); la número `pending` (desde 1), pendiente. En orden de código.
   */
  const addInstances = async (prefix: string, count: number, startsAt: string, pending = 0) => {
    const d = db.handle.db;
    const tag = newId().slice(0, 8);
    await d.execute(sql`
      with src as (
        select ti.*, s.plan_id from tenant_instances ti join subscriptions s on s.tenant_instance_id = ti.id
         where ti.status = 'active' and s.status = 'active' limit 1),
      inst as (
        insert into tenant_instances (customer_id, product_id, instance_code, tenant_code, environment,
          database_tier, status, kubernetes_namespace, subdomain_url)
        select src.customer_id, src.product_id, ${prefix} || '-' || g, ${prefix} || '-' || g || '-' || ${tag},
          src.environment, src.database_tier, 'active', src.kubernetes_namespace,
          ${prefix} || '-' || g || '-' || ${tag} || '.farutech.test'
          from src, generate_series(1, ${count}::int) g
        returning *)
      insert into subscriptions (customer_id, tenant_instance_id, plan_id, product_id, status, starts_at)
      select inst.customer_id, inst.id, src.plan_id, inst.product_id,
        (case when inst.instance_code = ${prefix} || '-' || ${pending}::int then 'pending' else 'active' end)::subscription_status,
        ${sql.raw(startsAt)}
        from inst, src`);
    return d
      .select({
        instanceId: tenantInstances.id,
        subscriptionId: subscriptions.id,
        status: subscriptions.status,
      })
      .from(subscriptions)
      .innerJoin(tenantInstances, eq(tenantInstances.id, subscriptions.tenantInstanceId))
      .where(like(tenantInstances.tenantCode, `${prefix}-%-${tag}`))
      .orderBy(tenantInstances.instanceCode);
  };

  /** Corre el ciclo del periodo y devuelve las suscripciones facturadas en él. */
  const billed = async (period: string) => {
    await billingWorker({ db: db.handle.db }).handle(cycle(period));
    const issued = await db.handle.db
      .select({ subscriptionId: invoices.subscriptionId })
      .from(invoices)
      .where(eq(invoices.period, period));
    return new Set(issued.map((i) => i.subscriptionId));
  };

  it("bills every subscription across chunk boundaries, once, with one audit row per invoice", async () => {
    // Las suscripciones de la demo empiezan hoy: su historia se lleva dos años atrás, y se
    // facturan dos meses ya cerrados de ese tramo.
    const d = db.handle.db;
    await d.execute(sql`update subscriptions set starts_at = starts_at - interval '2 years'`);
    await d.execute(
      sql`update subscription_active_periods set active_from = active_from - interval '2 years'`,
    );
    await d.execute(
      sql`update tenant_instance_active_periods set active_from = active_from - interval '2 years'`,
    );
    const [current, next] = [monthsAgo(13), monthsAgo(12)];
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
    // Cuatro instancias activas con su suscripción activa desde hace un año (la tercera, pendiente).
    const rows = await addInstances("period", 4, "now() - interval '1 year'", 3);
    const neverActive = rows.find((r) => r.status === "pending");
    const [cancelled, suspendedInstance, stillActive] = rows.filter((r) => r !== neverActive);
    if (!cancelled || !suspendedInstance || !neverActive || !stillActive) throw new Error("setup");
    // Hoy: una suscripción se cancela, una instancia se suspende (luego todo se lleva un año atrás).
    await d.execute(
      sql`update subscriptions set status = 'cancelled' where id = ${cancelled.subscriptionId}`,
    );
    await d.execute(
      sql`update tenant_instances set status = 'suspended' where id = ${suspendedInstance.instanceId}`,
    );
    // Otra nunca estuvo activa: pendiente y luego cancelada.
    await d.execute(
      sql`update subscriptions set status = 'cancelled' where id = ${neverActive.subscriptionId}`,
    );
    // Un paso por 'active' borra la marca: la reactivada se cobra como activa.
    await d.execute(
      sql`update subscriptions set status = 'suspended' where id = ${stillActive.subscriptionId}`,
    );
    await d.execute(
      sql`update subscriptions set status = 'active' where id = ${stillActive.subscriptionId}`,
    );

    // Solo se factura un mes cerrado: la historia de estas cuatro se lleva un año atrás entera.
    await shiftHistory(rows, "1 year");
    // El mes de los cambios: las dos que dejaron de estar activas lo estuvieron en él, y se cobran.
    const current = await billed(monthsAgo(12));
    expect(current.has(cancelled.subscriptionId)).toBe(true);
    expect(current.has(suspendedInstance.subscriptionId)).toBe(true);
    expect(current.has(stillActive.subscriptionId)).toBe(true);
    expect(current.has(neverActive.subscriptionId)).toBe(false);
    // El mes siguiente: ya no estaban activas en ningún momento de él.
    const next = await billed(monthsAgo(11));
    expect(next.has(cancelled.subscriptionId)).toBe(false);
    expect(next.has(suspendedInstance.subscriptionId)).toBe(false);
    expect(next.has(neverActive.subscriptionId)).toBe(false);
    expect(next.has(stillActive.subscriptionId)).toBe(true);
  });

  it("bills by activity history: not for a month spent wholly suspended, nor when subscription and instance were never active together", async () => {
    const d = db.handle.db;
    const rows = await addInstances("hist", 2, "'2024-01-01'");
    const [late, apart] = rows;
    if (!late || !apart) throw new Error("setup");
    // El trigger lleva la historia: alta activa, suspensión, reactivación (y un vaivén dentro de
    // una misma transacción, que no deja un tramo vacío ni choca con la clave).
    const status = (id: string, to: string) =>
      d.execute(sql`update subscriptions set status = ${to}::subscription_status where id = ${id}`);
    await status(late.subscriptionId, "suspended");
    await d.transaction(async (tx) => {
      for (const to of ["active", "suspended", "active"]) {
        await tx.execute(
          sql`update subscriptions set status = ${to}::subscription_status where id = ${late.subscriptionId}`,
        );
      }
    });
    const history = await d
      .select()
      .from(subscriptionActivePeriods)
      .where(eq(subscriptionActivePeriods.subscriptionId, late.subscriptionId))
      .orderBy(subscriptionActivePeriods.activeFrom);
    expect(history).toHaveLength(2);
    expect(history[0]?.activeUntil).toBeInstanceOf(Date);
    expect(history[1]?.activeUntil).toBeNull();

    // Historia fechada en 2025 (se reescriben los tramos): `late` estuvo suspendida de febrero
    // a abril y se reactivó antes de que se facturara marzo; en `apart` la suscripción dejó de
    // estar activa antes de que la instancia lo estuviera.
    const setHistory = async (
      table: typeof subscriptionActivePeriods | typeof tenantInstanceActivePeriods,
      id: string,
      periods: [string, string | null][],
    ) => {
      const key =
        table === subscriptionActivePeriods
          ? subscriptionActivePeriods.subscriptionId
          : tenantInstanceActivePeriods.tenantInstanceId;
      await d.delete(table).where(eq(key, id));
      for (const [from, until] of periods) {
        await d.execute(
          sql`insert into ${table} values (${id}, ${from}::timestamptz, ${until}::timestamptz)`,
        );
      }
    };
    await setHistory(subscriptionActivePeriods, late.subscriptionId, [
      ["2025-01-01", "2025-02-10"],
      ["2025-04-05", null],
    ]);
    await setHistory(tenantInstanceActivePeriods, late.instanceId, [["2024-12-01", null]]);
    await setHistory(subscriptionActivePeriods, apart.subscriptionId, [
      ["2025-01-01", "2025-01-10"],
    ]);
    await setHistory(tenantInstanceActivePeriods, apart.instanceId, [["2025-01-20", null]]);

    const [jan, feb, mar, apr] = await Promise.all(
      ["2025-01", "2025-02", "2025-03", "2025-04"].map((p) => billed(p)),
    );
    // Activa parte de febrero y parte de abril: se cobran (sin prorrateo); marzo no.
    expect(feb?.has(late.subscriptionId)).toBe(true);
    expect(mar?.has(late.subscriptionId)).toBe(false);
    expect(apr?.has(late.subscriptionId)).toBe(true);
    // Suscripción activa del 1 al 10 de enero, instancia desde el 20: nunca a la vez.
    expect(jan?.has(apart.subscriptionId)).toBe(false);
    expect(jan?.has(late.subscriptionId)).toBe(true);
  });

  it("bills a period at the plan the subscription had when it closed, not at one it moved to afterwards", async () => {
    const d = db.handle.db;
    const [row] = await addInstances("planhist", 1, "'2024-01-01'");
    if (!row) throw new Error("setup");
    const planOf = async (subscriptionId: string) =>
      (await d.select().from(subscriptions).where(eq(subscriptions.id, subscriptionId)))[0]?.planId;
    const before = await planOf(row.subscriptionId);
    const [current] = await d
      .select()
      .from(plans)
      .where(eq(plans.id, before ?? ""));
    const [other] = await d
      .select({ id: plans.id })
      .from(plans)
      .where(
        and(
          eq(plans.productId, current?.productId ?? ""),
          sql`${plans.id} <> ${before} and ${plans.price} <> ${current?.price}`,
        ),
      )
      .limit(1);
    const after = other?.id;
    if (!before || !after)
      throw new Error("setup: the product needs two plans with different prices");
    // El cambio de plan lo registra el trigger: el plan anterior se cierra y empieza el nuevo.
    await d
      .update(subscriptions)
      .set({ planId: after })
      .where(eq(subscriptions.id, row.subscriptionId));
    const history = await d
      .select()
      .from(subscriptionPlanPeriods)
      .where(eq(subscriptionPlanPeriods.subscriptionId, row.subscriptionId))
      .orderBy(subscriptionPlanPeriods.validFrom);
    expect(history.map((h) => [h.planId, h.validUntil === null])).toEqual([
      [before, false],
      [after, true],
    ]);
    // Historia fechada en 2025: activa desde enero; el cambio de plan, el 1 de marzo (cuando
    // febrero aún no se había facturado).
    const first = history[0]?.validFrom;
    await d.execute(sql`update subscription_plan_periods set valid_from = '2024-12-01',
      valid_until = '2025-03-01' where subscription_id = ${row.subscriptionId} and valid_from = ${first}`);
    await d.execute(sql`update subscription_plan_periods set valid_from = '2025-03-01'
      where subscription_id = ${row.subscriptionId} and valid_until is null`);
    await d.execute(sql`update subscription_active_periods set active_from = '2025-01-01'
      where subscription_id = ${row.subscriptionId}`);
    await d.execute(sql`update tenant_instance_active_periods set active_from = '2025-01-01'
      where tenant_instance_id = ${row.instanceId}`);

    const invoiceFor = async (period: string) => {
      await billingWorker({ db: d }).handle(cycle(period));
      const [invoice] = await d
        .select({ planId: invoices.planId, amount: invoices.amount, price: plans.price })
        .from(invoices)
        .innerJoin(plans, eq(plans.id, invoices.planId))
        .where(and(eq(invoices.subscriptionId, row.subscriptionId), eq(invoices.period, period)));
      return invoice;
    };
    const feb = await invoiceFor("2025-02");
    expect(feb?.planId).toBe(before);
    expect(feb?.amount).toBe(feb?.price);
    // El precio del plan nuevo sube el 1 de abril (también lo registra un trigger), antes de que se
    // facture marzo: marzo se cobra al precio anterior y abril al nuevo.
    const oldPrice = (await d.select().from(plans).where(eq(plans.id, after)))[0]?.price;
    await d
      .update(plans)
      .set({ price: sql`${plans.price} + 100` })
      .where(eq(plans.id, after));
    const prices = await d
      .select()
      .from(planPricePeriods)
      .where(eq(planPricePeriods.planId, after))
      .orderBy(planPricePeriods.validFrom);
    expect(prices.map((p) => [p.price, p.validUntil === null])).toEqual([
      [oldPrice, false],
      [(Number(oldPrice) + 100).toFixed(2), true],
    ]);
    await d.execute(sql`update plan_price_periods set valid_from = '2024-01-01', valid_until = '2025-04-01'
      where plan_id = ${after} and valid_until is not null`);
    await d.execute(sql`update plan_price_periods set valid_from = '2025-04-01'
      where plan_id = ${after} and valid_until is null`);
    const mar = await invoiceFor("2025-03");
    expect(mar?.planId).toBe(after);
    expect(mar?.amount).toBe(oldPrice);
    expect(mar?.amount).not.toBe(feb?.amount);
    const apr = await invoiceFor("2025-04");
    expect(apr?.amount).toBe((Number(oldPrice) + 100).toFixed(2));
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
        -- Un plan del mismo producto que las instancias nuevas (la FK (plan_id, product_id) lo
        -- exige); sin esa condición, cuál salía primero dependía del plan de la consulta.
        select s.plan_id from subscriptions s join tenant_instances ti on s.tenant_instance_id = ti.id
         where s.status = 'active' and ti.instance_code not like 'bulk-%'
           and s.product_id = (select product_id from tenant_instances where instance_code = 'bulk-1')
         limit 1)
      insert into subscriptions (customer_id, tenant_instance_id, plan_id, product_id, status, starts_at)
      select ti.customer_id, ti.id, src.plan_id, ti.product_id, 'active', '2020-01-01'
        from tenant_instances ti, src where ti.instance_code like 'bulk-%'`);
    // Se dieron de alta activas hoy: su historia se lleva atrás para facturar un mes cerrado.
    await d.execute(sql`update subscription_active_periods set active_from = '2020-01-01'
      where active_from > now() - interval '1 hour'`);
    await d.execute(sql`update tenant_instance_active_periods set active_from = '2020-01-01'
      where active_from > now() - interval '1 hour'`);
    const period = "2021-06";
    await billingWorker({ db: d }).handle(cycle(period));
    expect(await invoicesOf(period)).toBeGreaterThanOrEqual(10_000);
  }, 60_000);

  it("accepts closed months only, from 2000-01 to last month, ten minutes after it ends", () => {
    const now = new Date("2026-11-23T12:00:00Z");
    expect(isBillablePeriod("2026-10", now)).toBe(true);
    expect(isBillablePeriod("2000-01", now)).toBe(true);
    for (const p of [
      "2026-11",
      "2026-12",
      "2099-01",
      "9999-12",
      "1999-12",
      "0099-01",
      "2026-13",
      "2026-1",
    ]) {
      expect(isBillablePeriod(p, now)).toBe(false);
    }
    // Diciembre se factura desde el 1 de enero a las 00:10 UTC (el margen para las transacciones
    // que empezaron el 31); un milisegundo antes, no.
    expect(isBillablePeriod("2026-12", new Date("2027-01-01T00:10:00Z"))).toBe(true);
    expect(isBillablePeriod("2026-12", new Date("2027-01-01T00:09:59.999Z"))).toBe(false);
    expect(periodClosesAt("2026-12").toISOString()).toBe("2027-01-01T00:10:00.000Z");
    expect(lastClosedPeriod(new Date("2027-01-10T00:00:00Z"))).toBe("2026-12");
    // El esquema del worker solo mira la forma (error permanente): la hora la pone la base.
    expect(billingCycleSchema.safeParse({ period: "1999-12" }).success).toBe(false);
    expect(billingCycleSchema.safeParse({ period: "2026-13" }).success).toBe(false);
    expect(billingCycleSchema.safeParse({ period: "9999-12" }).success).toBe(true);
  });

  it("refuses, by the database clock, a period that has not closed: to the DLQ, billed nothing", async () => {
    const current = monthsAgo(0);
    const open = billingWorker({ db: db.handle.db }).handle(cycle(current));
    await expect(open).rejects.toBeInstanceOf(PermanentError);
    await expect(open).rejects.toThrow(
      `period ${current} has not closed yet: it can be billed from ${periodClosesAt(current).toISOString()}`,
    );
    expect(await invoicesOf(current)).toBe(0);
  });
});
