import { jetstreamManager } from "@nats-io/jetstream";
import { and, asc, count, eq, isNull, like, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lastClosedPeriod } from "../../contracts/events";
import { streams } from "../../contracts/streams";
import { demoInstances, demoProducts } from "../../db/demo-data";
import {
  auditLog,
  dlqEntries,
  invoices,
  outboxEvents,
  plans,
  subscriptions,
} from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { BILLING_WORKER } from "../../workers/billing/worker";
import { call, expectProblem } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

// BillingWorker: una factura por suscripción activa y periodo, con el precio del plan; repetir no duplica.
describe("billing cycle", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
    // Solo se factura un mes cerrado y la demo se da de alta hoy: su actividad empieza hace dos años.
    const db = stack.db.handle.db;
    await db.execute(sql`update subscriptions set starts_at = starts_at - interval '2 years'`);
    await db.execute(
      sql`update subscription_active_periods set active_from = active_from - interval '2 years'`,
    );
    await db.execute(
      sql`update tenant_instance_active_periods set active_from = active_from - interval '2 years'`,
    );
  });

  const closed = lastClosedPeriod();
  afterAll(async () => {
    await stack?.stop();
  });

  it("issues one invoice per active subscription, priced from the plan, idempotently", async () => {
    const token = await stack.adminToken();
    const trigger = () =>
      call(`${stack.adminUrl}/api/billing/cycles`, { token, json: { period: closed } });
    expect((await trigger()).status).toBe(202);
    const issued = await waitFor(async () => {
      const rows = await stack.db.handle.db
        .select()
        .from(invoices)
        .where(eq(invoices.period, closed));
      return rows.length === demoInstances.length ? rows : undefined;
    });
    const prices = new Map(demoProducts.flatMap((p) => p.plans.map((pl) => [pl.code, pl.price])));
    const planRows = await stack.db.handle.db.select().from(plans);
    for (const invoice of issued) {
      const plan = planRows.find((p) => p.id === invoice.planId);
      expect(invoice.amount).toBe(prices.get(plan?.code ?? ""));
    }
    expect((await trigger()).status).toBe(202);
    // El segundo ciclo publicado y procesado del todo (nada pendiente ni esperando reintento), sin
    // pasar por la DLQ: la idempotencia es del worker, no solo del índice único de facturas.
    const jsm = await jetstreamManager(
      stack.workers?.bus.nc ?? (await Promise.reject(new Error("no bus"))),
    );
    await waitFor(async () => {
      const [unpublished] = await stack.db.handle.db
        .select({ n: count() })
        .from(outboxEvents)
        .where(and(like(outboxEvents.subject, "billing.%"), isNull(outboxEvents.publishedAt)));
      if ((unpublished?.n ?? 1) > 0) return undefined;
      const i = await jsm.consumers.info(streams.billing.name, BILLING_WORKER);
      return i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.consumer_seq >= 2
        ? i
        : undefined;
    });
    const deadLettered = await stack.db.handle.db
      .select({ id: dlqEntries.id })
      .from(dlqEntries)
      .where(eq(dlqEntries.domain, "billing"));
    expect(deadLettered).toEqual([]);
    const [again] = await stack.db.handle.db
      .select({ n: count() })
      .from(invoices)
      .where(eq(invoices.period, closed));
    expect(again?.n).toBe(demoInstances.length);
    const [audited] = await stack.db.handle.db
      .select({ n: count() })
      .from(auditLog)
      .where(eq(auditLog.action, "invoice.issued"));
    expect(audited?.n).toBe(demoInstances.length);
    const malformed = await call<{ errors: { message: string }[] }>(
      `${stack.adminUrl}/api/billing/cycles`,
      { token, json: { period: "2026-13" } },
    );
    expectProblem(malformed, 400);
    // Solo el formato: ni el rango ni la pista de "cuando haya cerrado".
    expect(malformed.body.errors.map((e) => e.message)).toEqual(["YYYY-MM"]);
    // Ni años por venir ni antes de 2000 (Date.UTC leería 0099 como 1999).
    for (const period of ["2099-01", "0099-01"]) {
      expectProblem(
        await call(`${stack.adminUrl}/api/billing/cycles`, { token, json: { period } }),
        400,
      );
    }
    // Ni el mes en curso: aún puede cambiar (una baja, un cambio de plan) y la factura no se rehace.
    const current = new Date().toISOString().slice(0, 7);
    const open = await call<{ errors: { message: string }[] }>(
      `${stack.adminUrl}/api/billing/cycles`,
      { token, json: { period: current } },
    );
    expectProblem(open, 400, "validation_failed");
    expect(JSON.stringify(open.body.errors)).toContain(
      `${current} can be billed once it has ended`,
    );
    const [none] = await stack.db.handle.db
      .select({ n: count() })
      .from(invoices)
      .where(eq(invoices.period, current));
    expect(none?.n).toBe(0);
  });

  it("does not bill a period to a subscription that expired exactly when it began", async () => {
    const db = stack.db.handle.db;
    const [endsAtStart, endsInside] = await db
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .orderBy(asc(subscriptions.id))
      .limit(2);
    if (!endsAtStart || !endsInside) throw new Error("demo subscriptions missing");
    // Vence a las 00:00 UTC del primer día del mes: ese mes no se le cobra; un milisegundo después, sí.
    // El mes anterior al de la primera prueba (ese ya está facturado a todos).
    const period = lastClosedPeriod(new Date(`${closed}-15T00:00:00Z`));
    const start = new Date(`${period}-01T00:00:00.000Z`);
    await db
      .update(subscriptions)
      .set({ expiresAt: start })
      .where(eq(subscriptions.id, endsAtStart.id));
    await db
      .update(subscriptions)
      .set({ expiresAt: new Date(start.getTime() + 1) })
      .where(eq(subscriptions.id, endsInside.id));
    const token = await stack.adminToken();
    const res = await call(`${stack.adminUrl}/api/billing/cycles`, {
      token,
      json: { period },
    });
    expect(res.status).toBe(202);
    const issued = await waitFor(async () => {
      const rows = await db.select().from(invoices).where(eq(invoices.period, period));
      return rows.length >= demoInstances.length - 1 ? rows : undefined;
    });
    // El worker ya terminó el ciclo: una factura de más llegaría en la misma transacción.
    const billed = issued.map((i) => i.subscriptionId);
    expect(billed).toHaveLength(demoInstances.length - 1);
    expect(billed).not.toContain(endsAtStart.id);
    expect(billed).toContain(endsInside.id);
  });
});
