import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { modules } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import {
  bearerSecurity,
  pageSchema,
  paginationQuery,
  readErrorResponses,
  uuidParam,
} from "../../openapi";
import { notFound } from "../../services/concurrency";
import { productExists } from "../../services/modules";
import { keyset, toPage } from "../../services/pagination";
import { moduleSchema, toModule } from "./schema";

const route = createRoute({
  operationId: "listProductModules",
  method: "get",
  path: "/api/products/{id}/modules",
  tags: ["modules"],
  summary: "Lista los módulos de un producto (paginado por cursor)",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    params: z.object({ id: uuidParam("id", "Id del producto") }),
    query: paginationQuery,
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(moduleSchema, "ModulePage") } },
    },
    ...readErrorResponses,
  },
});

export function registerListModules(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const q = c.req.valid("query");
    const db = c.var.deps.db;
    // Un producto inexistente es 404, no una lista vacía.
    if (!(await productExists(db, id))) throw notFound("Product", id);
    const page = keyset(modules.createdAt, modules.id, q.cursor);
    const rows = await db
      .select()
      .from(modules)
      .where(and(eq(modules.productId, id), page.after))
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toModule), 200);
  });
}
