import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, etagHeader, readErrorResponses, uuidParam } from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadSubscription } from "../../services/subscriptions";
import { subscriptionSchema, toSubscription } from "./schema";

const route = createRoute({
  operationId: "getSubscription",
  method: "get",
  path: "/api/subscriptions/{id}",
  tags: ["subscriptions"],
  summary: "Una suscripción con su plan y producto",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ id: uuidParam("id", "Id de la suscripción") }) },
  responses: {
    200: {
      description: "La suscripción",
      headers: etagHeader,
      content: { "application/json": { schema: subscriptionSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetSubscription(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const found = await loadSubscription(c.var.deps.db, id);
    if (!found) throw notFound("Subscription", id);
    c.header("etag", etagFor(found.subscription.rowVersion));
    return c.json(toSubscription(found.subscription, found.planCode), 200);
  });
}
