import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, errorResponses, uuidParam } from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadModule } from "../../services/modules";
import { moduleSchema, toModule } from "./schema";

const route = createRoute({
  operationId: "getModule",
  method: "get",
  path: "/api/modules/{id}",
  tags: ["modules"],
  summary: "Un módulo",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: { params: z.object({ id: uuidParam("id", "Id del módulo") }) },
  responses: {
    200: {
      description: "El módulo",
      headers: {
        ETag: { schema: { type: "string" }, description: "Versión para If-Match" },
      },
      content: { "application/json": { schema: moduleSchema } },
    },
    ...errorResponses,
  },
});

export function registerGetModule(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const mod = await loadModule(c.var.deps.db, id);
    if (!mod) throw notFound("Module", id);
    c.header("etag", etagFor(mod.rowVersion));
    return c.json(toModule(mod), 200);
  });
}
