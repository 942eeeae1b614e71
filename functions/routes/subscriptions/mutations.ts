import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
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
import {
  cancelSubscription,
  createSubscription,
  updateSubscription,
} from "../../services/subscriptions";
import {
  createSubscriptionSchema,
  subscriptionSchema,
  toSubscription,
  updateSubscriptionSchema,
} from "./schema";

const idParams = z.object({ id: uuidParam("id", "Id de la suscripción") });
const subscriptionBody = (description: string) => ({
  description,
  headers: etagHeader,
  content: { "application/json": { schema: subscriptionSchema } },
});

const create = createRoute({
  operationId: "createSubscription",
  method: "post",
  path: "/api/subscriptions",
  tags: ["subscriptions"],
  summary: "Suscribe una instancia que aún no tiene suscripción",
  description:
    "Cliente y producto salen de la instancia; el plan debe ser del mismo producto (422). " +
    "Una instancia ya suscrita responde 409.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { body: jsonBody(createSubscriptionSchema) },
  responses: { 201: subscriptionBody("Creada"), ...errorResponses },
});

const update = createRoute({
  operationId: "updateSubscription",
  method: "patch",
  path: "/api/subscriptions/{id}",
  tags: ["subscriptions"],
  summary: "Cambia plan, estado o vigencia (If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams, headers: ifMatchHeader, body: jsonBody(updateSubscriptionSchema) },
  responses: { 200: subscriptionBody("Modificada"), ...errorResponses, 412: preconditionFailed },
});

const cancel = createRoute({
  operationId: "cancelSubscription",
  method: "delete",
  path: "/api/subscriptions/{id}",
  tags: ["subscriptions"],
  summary: "Cancela la suscripción (queda con estado cancelled)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams, headers: ifMatchHeader },
  responses: { 204: { description: "Cancelada" }, ...errorResponses, 412: preconditionFailed },
});

export function registerSubscriptionMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const { subscription, planCode } = await createSubscription(
      serviceContext(c),
      c.req.valid("json"),
    );
    c.header("location", `/api/subscriptions/${subscription.id}`);
    c.header("etag", etagFor(subscription.rowVersion));
    return c.json(toSubscription(subscription, planCode), 201);
  });
  app.openapi(update, async (c) => {
    const { subscription, planCode } = await updateSubscription(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(subscription.rowVersion));
    return c.json(toSubscription(subscription, planCode), 200);
  });
  app.openapi(cancel, async (c) => {
    await cancelSubscription(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
}
