import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { and, inArray } from "drizzle-orm";
import { productLimits, products } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { productSchema, toProduct } from "./schema";

const route = createRoute({
  operationId: "listProducts",
  method: "get",
  path: "/api/products",
  tags: ["products"],
  summary: "Lista productos del catálogo",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: { query: paginationQuery },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(productSchema, "ProductPage") } },
    },
    ...listErrorResponses,
  },
});

export function registerListProducts(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const db = c.var.deps.db;
    const page = keyset(products.createdAt, products.id, q.cursor);
    const rows = await db
      .select()
      .from(products)
      .where(and(page.after))
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    const limits =
      rows.length === 0
        ? []
        : await db
            .select()
            .from(productLimits)
            .where(
              inArray(
                productLimits.productId,
                rows.map((r) => r.id),
              ),
            );
    return c.json(
      toPage(rows, q.limit, (p) => toProduct(p, limits)),
      200,
    );
  });
}
