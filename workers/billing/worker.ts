import { and, eq, gt, isNull, lt, or } from "drizzle-orm";
import type { z } from "zod";
import { billingCycleSchema } from "../../contracts/events";
import { writeAudit } from "../../db/audit";
import { invoices, plans, subscriptions, tenantInstances } from "../../db/schema";
import type { Database } from "../../db/types";
import type { WorkerDefinition } from "../runtime/consumer";

export const BILLING_WORKER = "billing-worker";
const ACTOR = "worker:billing";

export function periodBounds(period: string): { start: Date; end: Date } {
  const [y, m] = period.split("-").map(Number);
  const start = new Date(Date.UTC(y ?? 1970, (m ?? 1) - 1, 1));
  const end = new Date(Date.UTC(y ?? 1970, m ?? 1, 1));
  return { start, end };
}

// Ciclo de facturación: una factura por suscripción activa en el periodo, con el precio del plan.
// La unicidad (suscripción, periodo) en la base hace idempotente repetir el ciclo.
export function billingWorker(deps: {
  db: Database;
}): WorkerDefinition<z.infer<typeof billingCycleSchema>> {
  return {
    name: BILLING_WORKER,
    domain: "billing",
    filterSubject: "billing.tasks.>",
    schema: billingCycleSchema,
    logFields: (data) => ({ period: data.period }),
    async handle(ctx) {
      const { start, end } = periodBounds(ctx.data.period);
      const issued = await deps.db.transaction(async (tx) => {
        const billable = await tx
          .select({
            subscriptionId: subscriptions.id,
            customerId: subscriptions.customerId,
            tenantInstanceId: subscriptions.tenantInstanceId,
            planId: plans.id,
            price: plans.price,
            currency: plans.currency,
          })
          .from(subscriptions)
          .innerJoin(plans, eq(plans.id, subscriptions.planId))
          .innerJoin(tenantInstances, eq(tenantInstances.id, subscriptions.tenantInstanceId))
          .where(
            and(
              eq(subscriptions.status, "active"),
              eq(tenantInstances.status, "active"),
              lt(subscriptions.startsAt, end),
              or(isNull(subscriptions.expiresAt), gt(subscriptions.expiresAt, start)),
            ),
          );
        if (billable.length === 0) return [];
        const rows = await tx
          .insert(invoices)
          .values(billable.map((b) => ({ ...b, amount: b.price, period: ctx.data.period })))
          .onConflictDoNothing()
          .returning();
        for (const invoice of rows) {
          await writeAudit(tx, {
            actor: ACTOR,
            action: "invoice.issued",
            entityType: "invoice",
            entityId: invoice.id,
            after: invoice,
            correlationId: ctx.envelope.correlationId,
          });
        }
        return rows;
      });
      ctx.logger.info({ issued: issued.length }, "billing cycle processed");
    },
  };
}
