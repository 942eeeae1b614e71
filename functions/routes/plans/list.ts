import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { plans } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { planDetails } from "../../services/plans";
import { planSchema, toPlan } from "./schema";

const route = createRoute({
  operationId: "listPlans",
  method: "get",
  path: "/api/plans",
  tags: ["plans"],
  summary: "Lista planes con sus features y límites",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    query: paginationQuery.extend({
      productId: z.uuid().optional().openapi({
        description: "Filtra por producto",
        example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
      }),
      tier: z
        .enum(["standard", "professional", "enterprise"])
        .optional()
        .openapi({ description: "Filtra por nivel", example: "enterprise" }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(planSchema, "PlanPage") } },
    },
    ...listErrorResponses,
  },
});

export function registerListPlans(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const db = c.var.deps.db;
    const page = keyset(plans.createdAt, plans.id, q.cursor);
    const rows = await db
      .select()
      .from(plans)
      .where(
        and(
          q.productId ? eq(plans.productId, q.productId) : undefined,
          q.tier ? eq(plans.tier, q.tier) : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    // Dos consultas fijas para toda la página (features y límites): sin N+1.
    const details = new Map(
      (await planDetails(db, rows.slice(0, q.limit))).map((d) => [d.plan.id, d]),
    );
    return c.json(
      toPage(rows, q.limit, (p) =>
        toPlan(details.get(p.id) ?? { plan: p, includedFeatures: [], limits: {} }),
      ),
      200,
    );
  });
}
