import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { and } from "drizzle-orm";
import { products } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { requireRole } from "../../middleware/auth";
import { bearerSecurity, errorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { productSchema } from "./schema";

const route = createRoute({
  operationId: "listProducts",
  method: "get",
  path: "/api/products",
  tags: ["catalog"],
  summary: "Lista productos del catálogo",
  security: bearerSecurity,
  middleware: [requireRole("platform_admin")] as const,
  request: { query: paginationQuery },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(productSchema, "ProductPage") } },
    },
    ...errorResponses,
  },
});

export function registerListProducts(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(products.createdAt, products.id, q.cursor);
    const rows = await c.var.deps.db
      .select()
      .from(products)
      .where(and(page.after))
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(
      toPage(rows, q.limit, (p) => ({
        id: p.id,
        code: p.code,
        name: p.name,
        description: p.description,
        version: p.version,
        createdAt: p.createdAt.toISOString(),
      })),
      200,
    );
  });
}
