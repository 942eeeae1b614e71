import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { features } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import {
  bearerSecurity,
  codeParam,
  etagHeader,
  readErrorResponses,
  uuidParam,
} from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadFeature } from "../../services/features";
import { notFoundByCode } from "../../services/modules";
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
    ...readErrorResponses,
  },
});

// Los planes y los overrides nombran las features por su código, único en el producto.
const byCode = createRoute({
  operationId: "getFeatureByCode",
  method: "get",
  path: "/api/products/{id}/features/by-code/{code}",
  tags: ["features"],
  summary: "Una feature de un producto por su código (el que usan planes y overrides)",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    params: z.object({
      id: uuidParam("id", "Id del producto"),
      code: codeParam("Código de la feature (único en el producto)", "BATCH_CONTROL"),
    }),
  },
  responses: {
    200: {
      description: "La feature",
      headers: etagHeader,
      content: { "application/json": { schema: featureSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetFeature(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(byCode, async (c) => {
    const { id, code } = c.req.valid("param");
    const db = c.var.deps.db;
    const [feature] = await db
      .select()
      .from(features)
      .where(and(eq(features.productId, id), eq(features.code, code)));
    if (!feature) throw await notFoundByCode(db, id, "Feature", code);
    c.header("etag", etagFor(feature.rowVersion));
    return c.json(toFeature(feature), 200);
  });
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const feature = await loadFeature(c.var.deps.db, id);
    if (!feature) throw notFound("Feature", id);
    c.header("etag", etagFor(feature.rowVersion));
    return c.json(toFeature(feature), 200);
  });
}
