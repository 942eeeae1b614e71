import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import {
  BILLING_CLOSE_GRACE_MINUTES,
  FIRST_BILLING_PERIOD,
  isBillablePeriod,
  isPeriodFormat,
  lastClosedPeriod,
  PERIOD_FORMAT,
} from "../../../contracts/events";
import { subjects } from "../../../contracts/streams";
import { AppError } from "../../../core/errors";
import { databaseNow } from "../../../db/clock";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import { bearerSecurity, errorResponses } from "../../openapi";
import { serviceContext } from "../../services/context";
import { mutate } from "../../services/mutation";

const period = z
  .string()
  // Un mes mal escrito es solo "YYYY-MM": el rango y la pista no le aplican.
  .regex(PERIOD_FORMAT, { error: "YYYY-MM", abort: true })
  // Lo que no depende de la hora; si ya cerró se mira con el reloj de la base (abajo).
  .refine(isPeriodFormat, `period must be a closed month from ${FIRST_BILLING_PERIOD}`)
  .openapi({
    description: `Mes ya cerrado a facturar (YYYY-MM), de ${FIRST_BILLING_PERIOD} al mes pasado (desde ${BILLING_CLOSE_GRACE_MINUTES} minutos después de fin de mes, UTC)`,
    example: "2026-10",
  });

const route = createRoute({
  operationId: "triggerBillingCycle",
  method: "post",
  path: "/api/billing/cycles",
  tags: ["billing"],
  summary: "Dispara el ciclo de facturación de un periodo (BillingWorker, idempotente)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: {
    body: {
      required: true,
      content: {
        "application/json": { schema: z.strictObject({ period }).openapi("BillingCycleRequest") },
      },
    },
  },
  responses: {
    202: {
      description: "Aceptado: el BillingWorker emite una factura por suscripción activa",
      content: {
        "application/json": {
          schema: z
            .object({
              period,
              status: z
                .literal("accepted")
                .openapi({ description: "Encolado", example: "accepted" }),
            })
            .openapi("BillingCycleAccepted"),
        },
      },
    },
    ...errorResponses,
  },
});

export function registerBilling(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { period: value } = c.req.valid("json");
    await mutate(serviceContext(c), async (tx) => {
      // El reloj de la base, el mismo que usa el worker: lo que se acepta aquí allí también vale.
      const now = await databaseNow(tx);
      if (!isBillablePeriod(value, now)) {
        const last = lastClosedPeriod(now);
        const message =
          value > last
            ? `${value} can be billed once it has ended (the last closed month is ${last})`
            : `must be a closed month from ${FIRST_BILLING_PERIOD}`;
        throw new AppError("validation_failed", `period must be a closed month: ${message}`, {
          fields: [{ path: "body.period", message }],
        });
      }
      return {
        result: undefined,
        audit: [
          {
            action: "billing_cycle.requested",
            entityType: "billing_cycle",
            entityId: value,
            after: { period: value },
          },
        ],
        events: [
          {
            subject: subjects.billingCycle,
            type: "billing.cycle_triggered",
            data: { period: value },
          },
        ],
      };
    });
    return c.json({ period: value, status: "accepted" as const }, 202);
  });
}
