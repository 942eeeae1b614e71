import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { hasRole } from "../../../core/auth/tokens";
import { webhookEndpoints } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import {
  bearerSecurity,
  etagHeader,
  listErrorResponses,
  pageSchema,
  paginationQuery,
  readErrorResponses,
  uuidParam,
} from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { keyset, toPage } from "../../services/pagination";
import { registerWebhookMutations } from "./mutations";
import { toWebhook, webhookSchema } from "./schema";

const listRoute = createRoute({
  operationId: "listWebhookEndpoints",
  method: "get",
  path: "/api/webhooks",
  tags: ["webhooks"],
  summary: "Endpoints de webhooks registrados (sin secretos)",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      productId: z.uuid().optional().openapi({
        description: "Filtra por producto",
        example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
      }),
      tenantInstanceId: z.uuid().optional().openapi({
        description: "Filtra por instancia",
        example: "7c9e6679-7425-40de-944b-e07fc1f90ae7",
      }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: {
        "application/json": { schema: pageSchema(webhookSchema, "WebhookEndpointPage") },
      },
    },
    ...listErrorResponses,
  },
});

const getRoute = createRoute({
  operationId: "getWebhookEndpoint",
  method: "get",
  path: "/api/webhooks/{id}",
  tags: ["webhooks"],
  summary: "Un endpoint de webhooks (el Location que devuelve el alta), sin secreto",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ id: uuidParam("id", "Id del endpoint") }) },
  responses: {
    200: {
      description: "El endpoint",
      headers: etagHeader,
      content: { "application/json": { schema: webhookSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerWebhooks(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(listRoute, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(webhookEndpoints.createdAt, webhookEndpoints.id, q.cursor);
    const rows = await c.var.deps.db
      .select()
      .from(webhookEndpoints)
      .where(
        and(
          q.productId ? eq(webhookEndpoints.productId, q.productId) : undefined,
          q.tenantInstanceId
            ? eq(webhookEndpoints.tenantInstanceId, q.tenantInstanceId)
            : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    const fullUrl = hasRole(c.var.claims, "platform_admin");
    return c.json(
      toPage(rows, q.limit, (r) => toWebhook(r, { fullUrl })),
      200,
    );
  });
  app.openapi(getRoute, async (c) => {
    const { id } = c.req.valid("param");
    const [row] = await c.var.deps.db
      .select()
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.id, id));
    if (!row) throw notFound("Webhook endpoint", id);
    c.header("etag", etagFor(row.rowVersion));
    return c.json(toWebhook(row, { fullUrl: hasRole(c.var.claims, "platform_admin") }), 200);
  });
  registerWebhookMutations(app);
}
