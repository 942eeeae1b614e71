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
import { createPlan, deletePlan, updatePlan } from "../../services/plans";
import { createPlanSchema, planSchema, toPlan, updatePlanSchema } from "./schema";

const planId = z.object({ id: uuidParam("id", "Id del plan") });

const create = createRoute({
  operationId: "createPlan",
  method: "post",
  path: "/api/plans",
  tags: ["plans"],
  summary: "Crea un plan de un producto con sus features y límites",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { body: jsonBody(createPlanSchema) },
  responses: {
    201: {
      description: "Creado",
      headers: etagHeader,
      content: { "application/json": { schema: planSchema } },
    },
    ...errorResponses,
  },
});

const update = createRoute({
  operationId: "updatePlan",
  method: "patch",
  path: "/api/plans/{id}",
  tags: ["plans"],
  summary:
    "Modifica un plan (If-Match opcional); features y límites reemplazan el conjunto y " +
    "notifican a cada instancia suscrita",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: planId, headers: ifMatchHeader, body: jsonBody(updatePlanSchema) },
  responses: {
    200: {
      description: "Modificado",
      headers: etagHeader,
      content: { "application/json": { schema: planSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const remove = createRoute({
  operationId: "deletePlan",
  method: "delete",
  path: "/api/plans/{id}",
  tags: ["plans"],
  summary: "Borra un plan sin suscripciones (409 si alguna lo usa)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: planId, headers: ifMatchHeader },
  responses: { 204: { description: "Borrado" }, ...errorResponses, 412: preconditionFailed },
});

export function registerPlanMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const created = await createPlan(serviceContext(c), c.req.valid("json"));
    c.header("location", `/api/plans/${created.plan.id}`);
    c.header("etag", etagFor(created.plan.rowVersion));
    return c.json(toPlan(created), 201);
  });
  app.openapi(update, async (c) => {
    const updated = await updatePlan(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(updated.plan.rowVersion));
    return c.json(toPlan(updated), 200);
  });
  app.openapi(remove, async (c) => {
    await deletePlan(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
}
