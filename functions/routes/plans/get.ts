import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { CATALOG_READ } from "../../middleware/roles";
import { bearerSecurity, etagHeader, readErrorResponses, uuidParam } from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadPlan, loadPlanByCode } from "../../services/plans";
import { planSchema, toPlan } from "./schema";

const byId = createRoute({
  operationId: "getPlan",
  method: "get",
  path: "/api/plans/{id}",
  tags: ["plans"],
  summary: "Un plan con sus features y límites",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: { params: z.object({ id: uuidParam("id", "Id del plan") }) },
  responses: {
    200: {
      description: "El plan",
      headers: etagHeader,
      content: { "application/json": { schema: planSchema } },
    },
    ...readErrorResponses,
  },
});

const byCode = createRoute({
  operationId: "getPlanByCode",
  method: "get",
  path: "/api/plans/by-code/{code}",
  tags: ["plans"],
  summary: "Un plan por su código",
  security: bearerSecurity,
  middleware: readGuard(CATALOG_READ),
  request: {
    params: z.object({
      code: z
        .string()
        .max(64)
        .openapi({
          param: { name: "code", in: "path" },
          description: "Código del plan",
          example: "VET_PROFESSIONAL",
        }),
    }),
  },
  responses: {
    200: {
      description: "El plan",
      headers: etagHeader,
      content: { "application/json": { schema: planSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetPlan(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(byId, async (c) => {
    const { id } = c.req.valid("param");
    const found = await loadPlan(c.var.deps.db, id);
    if (!found) throw notFound("Plan", id);
    c.header("etag", etagFor(found.plan.rowVersion));
    return c.json(toPlan(found), 200);
  });
  app.openapi(byCode, async (c) => {
    const { code } = c.req.valid("param");
    const found = await loadPlanByCode(c.var.deps.db, code);
    if (!found) throw notFound("Plan with code", code);
    c.header("etag", etagFor(found.plan.rowVersion));
    return c.json(toPlan(found), 200);
  });
}
