import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { modules } from "../../../db/schema";
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
import { loadModule, notFoundByCode } from "../../services/modules";
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
    ...readErrorResponses,
  },
});

const byCode = createRoute({
  operationId: "getModuleByCode",
  method: "get",
  path: "/api/products/{id}/modules/by-code/{code}",
  tags: ["modules"],
  summary: "Un módulo de un producto por su código",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    params: z.object({
      id: uuidParam("id", "Id del producto"),
      code: codeParam("Código del módulo (único en el producto)", "INVENTORY"),
    }),
  },
  responses: {
    200: {
      description: "El módulo",
      headers: etagHeader,
      content: { "application/json": { schema: moduleSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetModule(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(byCode, async (c) => {
    const { id, code } = c.req.valid("param");
    const db = c.var.deps.db;
    const [mod] = await db
      .select()
      .from(modules)
      .where(and(eq(modules.productId, id), eq(modules.code, code)));
    if (!mod) throw await notFoundByCode(db, id, "Module", code);
    c.header("etag", etagFor(mod.rowVersion));
    return c.json(toModule(mod), 200);
  });
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const mod = await loadModule(c.var.deps.db, id);
    if (!mod) throw notFound("Module", id);
    c.header("etag", etagFor(mod.rowVersion));
    return c.json(toModule(mod), 200);
  });
}
