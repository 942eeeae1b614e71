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
import { createModule, deleteModule, updateModule } from "../../services/modules";
import { createModuleSchema, moduleSchema, toModule, updateModuleSchema } from "./schema";

const moduleId = z.object({ id: uuidParam("id", "Id del módulo") });

const create = createRoute({
  operationId: "createModule",
  method: "post",
  path: "/api/products/{id}/modules",
  tags: ["modules"],
  summary: "Crea un módulo en un producto",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: {
    params: z.object({ id: uuidParam("id", "Id del producto") }),
    body: jsonBody(createModuleSchema),
  },
  responses: {
    201: {
      description: "Creado",
      headers: etagHeader,
      content: { "application/json": { schema: moduleSchema } },
    },
    ...errorResponses,
  },
});

const update = createRoute({
  operationId: "updateModule",
  method: "patch",
  path: "/api/modules/{id}",
  tags: ["modules"],
  summary: "Modifica nombre o descripción de un módulo (If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: moduleId, headers: ifMatchHeader, body: jsonBody(updateModuleSchema) },
  responses: {
    200: {
      description: "Modificado",
      headers: etagHeader,
      content: { "application/json": { schema: moduleSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const remove = createRoute({
  operationId: "deleteModule",
  method: "delete",
  path: "/api/modules/{id}",
  tags: ["modules"],
  summary: "Borra un módulo y sus features (409 si alguna está en un plan o un override)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: moduleId, headers: ifMatchHeader },
  responses: { 204: { description: "Borrado" }, ...errorResponses, 412: preconditionFailed },
});

export function registerModuleMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const mod = await createModule(serviceContext(c), c.req.valid("param").id, c.req.valid("json"));
    c.header("location", `/api/modules/${mod.id}`);
    c.header("etag", etagFor(mod.rowVersion));
    return c.json(toModule(mod), 201);
  });
  app.openapi(update, async (c) => {
    const mod = await updateModule(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(mod.rowVersion));
    return c.json(toModule(mod), 200);
  });
  app.openapi(remove, async (c) => {
    await deleteModule(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
}
