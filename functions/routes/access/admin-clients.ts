import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, arrayContains, eq, isNotNull, isNull } from "drizzle-orm";
import type { Role } from "../../../core/auth/tokens";
import { apiClients } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard, withoutClientSecret, writeGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  ifMatchHeader,
  listErrorResponses,
  noStoreHeader,
  pageSchema,
  paginationQuery,
  preconditionFailed,
  readErrorResponses,
} from "../../openapi";
import { createAdminClient, revokeClient, toApiClient } from "../../services/clients";
import { etagFor, expectedVersion, notFound } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { keyset, toPage } from "../../services/pagination";
import {
  apiClientCredentialsSchema,
  apiClientSchema,
  clientIdParam,
  createAdminClientSchema,
} from "./schema";

// Emitir o revocar credenciales es cosa de platform_admin; support puede verlas (sin secretos).
const ACCESS_WRITE: Role[] = ["platform_admin"];

const create = createRoute({
  operationId: "createAdminClient",
  method: "post",
  path: "/api/admin-clients",
  tags: ["access"],
  summary: "Crea un cliente OAuth de operador; el secreto se muestra una sola vez",
  security: bearerSecurity,
  // Con Idempotency-Key la respuesta se guarda sin el secreto: un replay lo devuelve como null.
  middleware: writeGuard(ACCESS_WRITE, { redactStoredBody: withoutClientSecret }),
  request: {
    body: { required: true, content: { "application/json": { schema: createAdminClientSchema } } },
  },
  responses: {
    201: {
      description: "Creado: guarde clientSecret, no se puede volver a leer",
      headers: { ...etagHeader, ...noStoreHeader },
      content: { "application/json": { schema: apiClientCredentialsSchema } },
    },
    ...errorResponses,
  },
});

const list = createRoute({
  operationId: "listApiClients",
  method: "get",
  path: "/api/admin-clients",
  tags: ["access"],
  summary: "Lista clientes OAuth (admin y tenant), sin secretos",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      kind: z
        .enum(["admin", "tenant"])
        .optional()
        .openapi({ description: "Filtra por tipo", example: "admin" }),
      customerId: z.uuid().optional().openapi({
        description: "Filtra por cliente (tenant)",
        example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f",
      }),
      instanceId: z.uuid().optional().openapi({
        description: "Clientes que pueden leer esta instancia",
        example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
      }),
      state: z
        .enum(["active", "revoked"])
        .optional()
        .openapi({ description: "Vigentes o revocados (por defecto todos)", example: "active" }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(apiClientSchema, "ApiClientPage") } },
    },
    ...listErrorResponses,
  },
});

const getOne = createRoute({
  operationId: "getApiClient",
  method: "get",
  path: "/api/admin-clients/{clientId}",
  tags: ["access"],
  summary: "Un cliente OAuth, sin secreto",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ clientId: clientIdParam }) },
  responses: {
    200: {
      description: "El cliente",
      headers: etagHeader,
      content: { "application/json": { schema: apiClientSchema } },
    },
    ...readErrorResponses,
  },
});

const revoke = createRoute({
  operationId: "revokeApiClient",
  method: "delete",
  path: "/api/admin-clients/{clientId}",
  tags: ["access"],
  summary: "Revoca un cliente OAuth: deja de obtener tokens (idempotente; If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(ACCESS_WRITE),
  request: { params: z.object({ clientId: clientIdParam }), headers: ifMatchHeader },
  responses: { 204: { description: "Revocado" }, ...errorResponses, 412: preconditionFailed },
});

export function registerAdminClients(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const created = await createAdminClient(serviceContext(c), c.req.valid("json"));
    c.header("location", `/api/admin-clients/${created.clientId}`);
    // Un cliente recién creado está en su primera versión (la sube un trigger al cambiarlo).
    c.header("etag", etagFor(1));
    c.header("cache-control", "no-store");
    return c.json(created, 201);
  });
  app.openapi(list, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(apiClients.createdAt, apiClients.id, q.cursor);
    const rows = await c.var.deps.db
      .select()
      .from(apiClients)
      .where(
        and(
          q.kind ? eq(apiClients.kind, q.kind) : undefined,
          q.customerId ? eq(apiClients.customerId, q.customerId) : undefined,
          q.instanceId ? arrayContains(apiClients.instanceIds, [q.instanceId]) : undefined,
          q.state === "active" ? isNull(apiClients.revokedAt) : undefined,
          q.state === "revoked" ? isNotNull(apiClients.revokedAt) : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toApiClient), 200);
  });
  app.openapi(getOne, async (c) => {
    const { clientId } = c.req.valid("param");
    const [row] = await c.var.deps.db
      .select()
      .from(apiClients)
      .where(eq(apiClients.clientId, clientId));
    if (!row) throw notFound("API client", clientId);
    c.header("etag", etagFor(row.rowVersion));
    return c.json(toApiClient(row), 200);
  });
  app.openapi(revoke, async (c) => {
    await revokeClient(serviceContext(c), c.req.valid("param").clientId, expectedVersion(c));
    return c.body(null, 204);
  });
}
