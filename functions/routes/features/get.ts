import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, errorResponses, uuidParam } from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadFeature } from "../../services/features";
import { featureSchema, toFeature } from "./schema";

const route = createRoute({
  operationId: "getFeature",
  method: "get",
  path: "/api/features/{id}",
  tags: ["features"],
  summary: "Una feature",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: { params: z.object({ id: uuidParam("id", "Id de la feature") }) },
  responses: {
    200: {
      description: "La feature",
      headers: {
        ETag: { schema: { type: "string" }, description: "Versión para If-Match" },
      },
      content: { "application/json": { schema: featureSchema } },
    },
    ...errorResponses,
  },
});

export function registerGetFeature(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const feature = await loadFeature(c.var.deps.db, id);
    if (!feature) throw notFound("Feature", id);
    c.header("etag", etagFor(feature.rowVersion));
    return c.json(toFeature(feature), 200);
  });
}
