import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { CATALOG_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  ifMatchHeader,
  jsonBody,
  preconditionFailed,
  uuidParam,
} from "../../openapi";
import { etagFor, expectedVersion } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { createFeature, deleteFeature, updateFeature } from "../../services/features";
import { createFeatureSchema, featureSchema, toFeature, updateFeatureSchema } from "./schema";

const featureId = z.object({ id: uuidParam("id", "Id de la feature") });

const create = createRoute({
  operationId: "createFeature",
  method: "post",
  path: "/api/modules/{id}/features",
  tags: ["features"],
  summary: "Crea una feature en un módulo (hereda el producto del módulo)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: {
    params: z.object({ id: uuidParam("id", "Id del módulo") }),
    body: jsonBody(createFeatureSchema),
  },
  responses: {
    201: {
      description: "Creada",
      headers: etagHeader,
      content: { "application/json": { schema: featureSchema } },
    },
    ...errorResponses,
  },
});

const update = createRoute({
  operationId: "updateFeature",
  method: "patch",
  path: "/api/features/{id}",
  tags: ["features"],
  summary: "Modifica nombre, descripción o isPremium de una feature (If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: featureId, headers: ifMatchHeader, body: jsonBody(updateFeatureSchema) },
  responses: {
    200: {
      description: "Modificada",
      headers: etagHeader,
      content: { "application/json": { schema: featureSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const remove = createRoute({
  operationId: "deleteFeature",
  method: "delete",
  path: "/api/features/{id}",
  tags: ["features"],
  summary: "Borra una feature (409 si está en un plan o un override)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: featureId, headers: ifMatchHeader },
  responses: { 204: { description: "Borrada" }, ...errorResponses, 412: preconditionFailed },
});

export function registerFeatureMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const feature = await createFeature(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
    );
    c.header("location", `/api/features/${feature.id}`);
    c.header("etag", etagFor(feature.rowVersion));
    return c.json(toFeature(feature), 201);
  });
  app.openapi(update, async (c) => {
    const feature = await updateFeature(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(feature.rowVersion));
    return c.json(toFeature(feature), 200);
  });
  app.openapi(remove, async (c) => {
    await deleteFeature(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
}
