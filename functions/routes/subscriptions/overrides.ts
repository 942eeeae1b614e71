import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { subscriptionFeatureOverrides } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard, writeGuard } from "../../middleware/guards";
import { TENANT_READ, TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  ifMatchHeader,
  pageSchema,
  paginationQuery,
  preconditionFailed,
  readErrorResponses,
  uuidParam,
} from "../../openapi";
import { etagFor, expectedVersion, notFound } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { addOverride, removeOverride, subscriptionHead } from "../../services/overrides";
import { keyset, toPage } from "../../services/pagination";
import { createOverrideSchema, overrideInputOf, overrideSchema, toOverride } from "./schema";

const subscriptionParams = z.object({ id: uuidParam("id", "Id de la suscripción") });

const list = createRoute({
  operationId: "listSubscriptionOverrides",
  method: "get",
  path: "/api/subscriptions/{id}/overrides",
  tags: ["subscriptions"],
  summary: "Overrides de features y límites de una suscripción",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: subscriptionParams, query: paginationQuery },
  responses: {
    200: {
      description: "Una página",
      content: {
        "application/json": { schema: pageSchema(overrideSchema, "SubscriptionOverridePage") },
      },
    },
    ...readErrorResponses,
  },
});

const overrideParams = subscriptionParams.extend({
  overrideId: uuidParam("overrideId", "Id del override"),
});

const get = createRoute({
  operationId: "getSubscriptionOverride",
  method: "get",
  path: "/api/subscriptions/{id}/overrides/{overrideId}",
  tags: ["subscriptions"],
  summary: "Un override de la suscripción (el Location que devuelve el alta)",
  description: "404 si el override no existe o es de otra suscripción.",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: overrideParams },
  responses: {
    200: {
      description: "El override",
      headers: etagHeader,
      content: { "application/json": { schema: overrideSchema } },
    },
    ...readErrorResponses,
  },
});

const add = createRoute({
  operationId: "addSubscriptionOverride",
  method: "post",
  path: "/api/subscriptions/{id}/overrides",
  tags: ["subscriptions"],
  summary: "Agrega un override (Enable/Disable de una feature o valor de un límite)",
  description:
    "El override siempre gana sobre el plan. Código o límite desconocido para el producto: 422; " +
    "ya existe uno para la misma feature o límite: 409.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: {
    params: subscriptionParams,
    body: { content: { "application/json": { schema: createOverrideSchema } }, required: true },
  },
  responses: {
    201: {
      description: "Creado",
      headers: etagHeader,
      content: { "application/json": { schema: overrideSchema } },
    },
    ...errorResponses,
  },
});

const remove = createRoute({
  operationId: "deleteSubscriptionOverride",
  method: "delete",
  path: "/api/subscriptions/{id}/overrides/{overrideId}",
  tags: ["subscriptions"],
  summary: "Quita un override (vuelve a valer el plan; If-Match opcional)",
  description:
    "El valor de un override puede cambiar con el mismo id (PUT /api/provisioning/{id}/features): " +
    "con If-Match, un DELETE sobre un valor que ya cambió responde 412 y no borra nada.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: overrideParams, headers: ifMatchHeader },
  responses: { 204: { description: "Borrado" }, ...errorResponses, 412: preconditionFailed },
});

export function registerOverrides(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(list, async (c) => {
    const { id } = c.req.valid("param");
    const q = c.req.valid("query");
    const db = c.var.deps.db;
    if (!(await subscriptionHead(db, id))) throw notFound("Subscription", id);
    const page = keyset(
      subscriptionFeatureOverrides.createdAt,
      subscriptionFeatureOverrides.id,
      q.cursor,
    );
    const rows = await db
      .select()
      .from(subscriptionFeatureOverrides)
      .where(and(eq(subscriptionFeatureOverrides.subscriptionId, id), page.after))
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toOverride), 200);
  });
  app.openapi(get, async (c) => {
    const { id, overrideId } = c.req.valid("param");
    // El override se busca dentro de su suscripción: el id de otra da 404, no su contenido.
    const [row] = await c.var.deps.db
      .select()
      .from(subscriptionFeatureOverrides)
      .where(
        and(
          eq(subscriptionFeatureOverrides.id, overrideId),
          eq(subscriptionFeatureOverrides.subscriptionId, id),
        ),
      );
    if (!row) throw notFound(`Override of subscription ${id}`, overrideId);
    c.header("etag", etagFor(row.rowVersion));
    return c.json(toOverride(row), 200);
  });
  app.openapi(add, async (c) => {
    const { id } = c.req.valid("param");
    const row = await addOverride(serviceContext(c), id, overrideInputOf(c.req.valid("json")));
    c.header("location", `/api/subscriptions/${id}/overrides/${row.id}`);
    c.header("etag", etagFor(row.rowVersion));
    return c.json(toOverride(row), 201);
  });
  app.openapi(remove, async (c) => {
    const { id, overrideId } = c.req.valid("param");
    await removeOverride(serviceContext(c), id, overrideId, expectedVersion(c));
    return c.body(null, 204);
  });
}
