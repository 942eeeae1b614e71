import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, inArray } from "drizzle-orm";
import { planFeatures, planLimits, plans } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, errorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { planSchema } from "./schema";

const route = createRoute({
  operationId: "listPlans",
  method: "get",
  path: "/api/plans",
  tags: ["catalog"],
  summary: "Lista planes con sus features y límites",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    query: paginationQuery.extend({
      productId: z.uuid().optional().openapi({
        description: "Filtra por producto",
        example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
      }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(planSchema, "PlanPage") } },
    },
    ...errorResponses,
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
      .where(and(q.productId ? eq(plans.productId, q.productId) : undefined, page.after))
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    const ids = rows.map((r) => r.id);
    // Dos consultas fijas para toda la página: sin N+1.
    const [featureRows, limitRows] =
      ids.length === 0
        ? [[], []]
        : await Promise.all([
            db.select().from(planFeatures).where(inArray(planFeatures.planId, ids)),
            db.select().from(planLimits).where(inArray(planLimits.planId, ids)),
          ]);
    return c.json(
      toPage(rows, q.limit, (p) => ({
        id: p.id,
        productId: p.productId,
        code: p.code,
        name: p.name,
        tier: p.tier,
        price: p.price,
        currency: p.currency,
        maxUsers: p.maxUsers,
        includedFeatures: featureRows
          .filter((f) => f.planId === p.id)
          .map((f) => f.featureCode)
          .sort(),
        limits: Object.fromEntries(
          limitRows.filter((l) => l.planId === p.id).map((l) => [l.limitName, l.value]),
        ),
        createdAt: p.createdAt.toISOString(),
      })),
      200,
    );
  });
}
