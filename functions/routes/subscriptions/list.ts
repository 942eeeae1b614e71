import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { plans, subscriptions } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { subscriptionSchema, subscriptionStatuses, toSubscription } from "./schema";

const idFilter = (description: string, example: string) =>
  z.uuid().optional().openapi({ description, example });

const route = createRoute({
  operationId: "listSubscriptions",
  method: "get",
  path: "/api/subscriptions",
  tags: ["subscriptions"],
  summary: "Lista suscripciones (paginado por cursor)",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      customerId: idFilter("Filtra por cliente", "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f"),
      tenantInstanceId: idFilter("Filtra por instancia", "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"),
      planId: idFilter("Filtra por plan", "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f"),
      status: z
        .enum(subscriptionStatuses)
        .optional()
        .openapi({ description: "Filtra por estado", example: "active" }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: {
        "application/json": { schema: pageSchema(subscriptionSchema, "SubscriptionPage") },
      },
    },
    ...listErrorResponses,
  },
});

export function registerListSubscriptions(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(subscriptions.createdAt, subscriptions.id, q.cursor);
    const rows = await c.var.deps.db
      .select({ subscription: subscriptions, planCode: plans.code })
      .from(subscriptions)
      .innerJoin(plans, eq(plans.id, subscriptions.planId))
      .where(
        and(
          q.customerId ? eq(subscriptions.customerId, q.customerId) : undefined,
          q.tenantInstanceId ? eq(subscriptions.tenantInstanceId, q.tenantInstanceId) : undefined,
          q.planId ? eq(subscriptions.planId, q.planId) : undefined,
          q.status ? eq(subscriptions.status, q.status) : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    const flat = rows.map((r) => ({
      ...r,
      id: r.subscription.id,
      createdAt: r.subscription.createdAt,
    }));
    return c.json(
      toPage(flat, q.limit, (r) => toSubscription(r.subscription, r.planCode)),
      200,
    );
  });
}
