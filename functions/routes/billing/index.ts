import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import {
  FIRST_BILLING_PERIOD,
  isBillablePeriod,
  lastClosedPeriod,
} from "../../../contracts/events";
import { subjects } from "../../../contracts/streams";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import { bearerSecurity, errorResponses } from "../../openapi";
import { serviceContext } from "../../services/context";
import { mutate } from "../../services/mutation";

const period = z
  .string()
  // Un mes mal escrito es solo "YYYY-MM": el rango y la pista no le aplican.
  .regex(/^[0-9]{4}-(0[1-9]|1[0-2])$/, { error: "YYYY-MM", abort: true })
  .refine((p) => isBillablePeriod(p), {
    error: (issue) =>
      `period must be a closed month: from ${FIRST_BILLING_PERIOD} to ${lastClosedPeriod()}${
        String(issue.input) > lastClosedPeriod()
          ? `; ${String(issue.input)} can be billed once it has ended`
          : ""
      }`,
  })
  .openapi({
    description: `Mes ya cerrado a facturar (YYYY-MM), de ${FIRST_BILLING_PERIOD} al mes pasado`,
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
    await mutate(serviceContext(c), async () => ({
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
    }));
    return c.json({ period: value, status: "accepted" as const }, 202);
  });
}
