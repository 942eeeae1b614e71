import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { products } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, etagHeader, readErrorResponses, uuidParam } from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadProduct } from "../../services/products";
import { productSchema, toProduct } from "./schema";

const byId = createRoute({
  operationId: "getProduct",
  method: "get",
  path: "/api/products/{id}",
  tags: ["products"],
  summary: "Un producto con sus límites",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: { params: z.object({ id: uuidParam("id", "Id del producto") }) },
  responses: {
    200: {
      description: "El producto",
      headers: etagHeader,
      content: { "application/json": { schema: productSchema } },
    },
    ...readErrorResponses,
  },
});

const byCode = createRoute({
  operationId: "getProductByCode",
  method: "get",
  path: "/api/products/by-code/{code}",
  tags: ["products"],
  summary: "Un producto por su código",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    params: z.object({
      code: z
        .string()
        .max(64)
        .openapi({
          param: { name: "code", in: "path" },
          description: "Código",
          example: "FARUTECH_VET",
        }),
    }),
  },
  responses: {
    200: {
      description: "El producto",
      headers: etagHeader,
      content: { "application/json": { schema: productSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetProduct(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(byId, async (c) => {
    const { id } = c.req.valid("param");
    const found = await loadProduct(c.var.deps.db, id);
    if (!found) throw notFound("Product", id);
    c.header("etag", etagFor(found.product.rowVersion));
    return c.json(toProduct(found.product, found.limits), 200);
  });
  app.openapi(byCode, async (c) => {
    const { code } = c.req.valid("param");
    const db = c.var.deps.db;
    const [row] = await db
      .select({ id: products.id })
      .from(products)
      .where(eq(products.code, code));
    const found = row ? await loadProduct(db, row.id) : undefined;
    if (!found) throw notFound("Product with code", code);
    c.header("etag", etagFor(found.product.rowVersion));
    return c.json(toProduct(found.product, found.limits), 200);
  });
}
