import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { withoutClientSecret, writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  noStoreHeader,
  uuidParam,
} from "../../openapi";
import { createTenantClient } from "../../services/clients";
import { etagFor } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { apiClientCredentialsSchema, createTenantClientSchema } from "./schema";

const create = createRoute({
  operationId: "createTenantClient",
  method: "post",
  path: "/api/tenant-instances/{id}/clients",
  tags: ["access"],
  summary: "Crea el cliente OAuth de una app hija para esta instancia; secreto visible una vez",
  security: bearerSecurity,
  // Con Idempotency-Key la respuesta se guarda sin el secreto: un replay lo devuelve como null.
  middleware: writeGuard(TENANT_WRITE, { redactStoredBody: withoutClientSecret }),
  request: {
    params: z.object({ id: uuidParam("id", "Id de la instancia") }),
    body: {
      required: true,
      content: { "application/json": { schema: createTenantClientSchema } },
    },
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

export function registerTenantClients(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const created = await createTenantClient(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
    );
    c.header("location", `/api/admin-clients/${created.clientId}`);
    // Un cliente recién creado está en su primera versión (la sube un trigger al cambiarlo).
    c.header("etag", etagFor(1));
    c.header("cache-control", "no-store");
    return c.json(created, 201);
  });
}
