import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { features } from "../../../db/schema";
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
import { loadModule } from "../../services/modules";
import { keyset, toPage } from "../../services/pagination";
import { featureSchema, toFeature } from "./schema";

const route = createRoute({
  operationId: "listModuleFeatures",
  method: "get",
  path: "/api/modules/{id}/features",
  tags: ["features"],
  summary: "Lista las features de un módulo (paginado por cursor)",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    params: z.object({ id: uuidParam("id", "Id del módulo") }),
    query: paginationQuery.extend({
      isPremium: z
        .enum(["true", "false"])
        .optional()
        .openapi({ description: "Filtra por premium", example: "true" }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(featureSchema, "FeaturePage") } },
    },
    ...readErrorResponses,
  },
});

export function registerListFeatures(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const q = c.req.valid("query");
    const db = c.var.deps.db;
    // Un módulo inexistente es 404, no una lista vacía.
    if (!(await loadModule(db, id))) throw notFound("Module", id);
    const page = keyset(features.createdAt, features.id, q.cursor);
    const rows = await db
      .select()
      .from(features)
      .where(
        and(
          eq(features.moduleId, id),
          q.isPremium === undefined ? undefined : eq(features.isPremium, q.isPremium === "true"),
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toFeature), 200);
  });
}
