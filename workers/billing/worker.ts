import { and, asc, eq, exists, gt, type SQL, sql } from "drizzle-orm";
import type { z } from "zod";
import {
  billingCycleSchema,
  isBillablePeriod,
  periodBounds,
  periodClosesAt,
} from "../../contracts/events";
import { auditInsert } from "../../db/audit";
import { databaseNow } from "../../db/clock";
import {
  invoices,
  planPricePeriods,
  plans,
  subscriptionActivePeriods,
  subscriptionPlanPeriods,
  subscriptions,
  tenantInstanceActivePeriods,
} from "../../db/schema";
import type { Database } from "../../db/types";
import type { WorkerDefinition } from "../runtime/consumer";
import { PermanentError } from "../runtime/errors";

export const BILLING_WORKER = "billing-worker";
const ACTOR = "worker:billing";

const sp = subscriptionActivePeriods;
const ip = tenantInstanceActivePeriods;
const pp = subscriptionPlanPeriods;
const pr = planPricePeriods;

/**
 * La suscripción y su instancia estuvieron activas a la vez en algún instante de [start, end), con
 * la suscripción en vigor (entre starts_at y expires_at): la intersección de los cuatro tramos no
 * es vacía. Sin prorrateo: un día activo cobra el mes.
 */
function activeTogetherWithin(db: Pick<Database, "select">, start: Date, end: Date): SQL {
  const forever = sql`'infinity'::timestamptz`;
  return exists(
    db
      .select({ one: sql`1` })
      .from(sp)
      .innerJoin(ip, eq(ip.tenantInstanceId, subscriptions.tenantInstanceId))
      .where(
        and(
          eq(sp.subscriptionId, subscriptions.id),
          sql`greatest(${sp.activeFrom}, ${ip.activeFrom}, ${subscriptions.startsAt},
                ${start.toISOString()}::timestamptz)
            < least(coalesce(${sp.activeUntil}, ${forever}), coalesce(${ip.activeUntil}, ${forever}),
                coalesce(${subscriptions.expiresAt}, ${forever}), ${end.toISOString()}::timestamptz)`,
        ),
      ),
  );
}

/**
 * El plan que la suscripción tenía al cerrarse el periodo (el último tramo que empezó antes del
 * fin); sin historia tan vieja, el actual. Sin prorrateo: cambiar de plan (o de precio) a mitad de
 * mes cobra el mes con el nuevo, pero un cambio posterior al periodo ya no lo toca.
 */
function planAtEndOf(end: Date): SQL {
  return sql`coalesce((select ${pp.planId} from ${pp}
      where ${pp.subscriptionId} = ${subscriptions.id} and ${pp.validFrom} < ${end.toISOString()}::timestamptz
      order by ${pp.validFrom} desc limit 1), ${subscriptions.planId})`;
}

/** Precio (o moneda) que regía para ese plan al cerrarse el periodo; sin historia, el actual. */
function priceAtEndOf(end: Date, column: "price" | "currency"): SQL<string> {
  return sql<string>`coalesce((select ${pr[column]} from ${pr}
      where ${pr.planId} = ${plans.id} and ${pr.validFrom} < ${end.toISOString()}::timestamptz
      order by ${pr.validFrom} desc limit 1), ${plans[column]})`;
}

/** Suscripciones por transacción: acota memoria, parámetros (≤ 65 535 por sentencia) y bloqueos. */
export const BILLING_CHUNK = 500;

// Ciclo de facturación: una factura por suscripción activa en el periodo (aunque hoy ya no lo
// esté, y no si solo lo estuvo antes o después), con el plan y el precio que regían al cerrarlo.
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
      const { period } = ctx.data;
      // Con el reloj de la base, el mismo con que la API lo aceptó: un mes sin cerrar (publicado a
      // mano, o un host adelantado) no se factura con datos que aún cambian; se reprocesa después.
      if (!isBillablePeriod(period, await databaseNow(deps.db))) {
        throw new PermanentError(
          `period ${period} has not closed yet: it can be billed from ${periodClosesAt(period).toISOString()} (database clock); replay this entry then`,
        );
      }
      const { start, end } = periodBounds(period);
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
              price: priceAtEndOf(end, "price"),
              currency: priceAtEndOf(end, "currency"),
            })
            .from(subscriptions)
            .innerJoin(plans, eq(plans.id, planAtEndOf(end)))
            .where(
              and(
                after === undefined ? undefined : gt(subscriptions.id, after),
                activeTogetherWithin(tx, start, end),
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
