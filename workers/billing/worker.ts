import { and, asc, eq, gt, isNull, lt, or } from "drizzle-orm";
import type { z } from "zod";
import { billingCycleSchema } from "../../contracts/events";
import { auditInsert } from "../../db/audit";
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

/** Suscripciones por transacción: acota memoria, parámetros (≤ 65 535 por sentencia) y bloqueos. */
export const BILLING_CHUNK = 500;

// Ciclo de facturación: una factura por suscripción activa en el periodo (aunque hoy ya no lo
// esté), con el precio del plan.
// La unicidad (suscripción, periodo) en la base hace idempotente repetir el ciclo (o un tramo).
export function billingWorker(deps: {
  db: Database;
  chunkSize?: number;
}): WorkerDefinition<z.infer<typeof billingCycleSchema>> {
  const chunkSize = deps.chunkSize ?? BILLING_CHUNK;
  return {
    name: BILLING_WORKER,
    domain: "billing",
    filterSubject: "billing.tasks.>",
    schema: billingCycleSchema,
    logFields: (data) => ({ period: data.period }),
    async handle(ctx) {
      const { start, end } = periodBounds(ctx.data.period);
      let issued = 0;
      // Por tramos de suscripciones en orden de id: cada tramo es su propia transacción.
      for (let after: string | undefined; ; ) {
        const chunk = await deps.db.transaction(async (tx) => {
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
                after === undefined ? undefined : gt(subscriptions.id, after),
                // Activa hoy, o lo fue dentro del periodo (dejó de estarlo después de su inicio).
                or(eq(subscriptions.status, "active"), gt(subscriptions.leftActiveAt, start)),
                or(eq(tenantInstances.status, "active"), gt(tenantInstances.leftActiveAt, start)),
                lt(subscriptions.startsAt, end),
                or(isNull(subscriptions.expiresAt), gt(subscriptions.expiresAt, start)),
              ),
            )
            .orderBy(asc(subscriptions.id))
            .limit(chunkSize);
          if (billable.length === 0) return { last: undefined, issued: 0 };
          const rows = await tx
            .insert(invoices)
            .values(billable.map((b) => ({ ...b, amount: b.price, period: ctx.data.period })))
            .onConflictDoNothing()
            .returning();
          if (rows.length > 0) {
            await auditInsert(
              tx,
              rows.map((invoice) => ({
                actor: ACTOR,
                action: "invoice.issued",
                entityType: "invoice",
                entityId: invoice.id,
                after: invoice,
                correlationId: ctx.envelope.correlationId,
              })),
            );
          }
          return { last: billable.at(-1)?.subscriptionId, issued: rows.length };
        });
        issued += chunk.issued;
        if (chunk.last === undefined) break;
        after = chunk.last;
        ctx.heartbeat();
      }
      ctx.logger.info({ issued }, "billing cycle processed");
    },
  };
}
