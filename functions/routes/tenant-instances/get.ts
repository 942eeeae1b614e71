import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { tenantInstances } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, etagHeader, readErrorResponses, uuidParam } from "../../openapi";
import { compositeEtagFor, notFound } from "../../services/concurrency";
import { loadInstanceView } from "../../services/tenant-instances";
import { tenantCodeParam, tenantInstanceSchema } from "./schema";

const ok = {
  description: "La instancia",
  headers: etagHeader,
  content: { "application/json": { schema: tenantInstanceSchema } },
};

const byId = createRoute({
  operationId: "getTenantInstance",
  method: "get",
  path: "/api/tenant-instances/{id}",
  tags: ["tenants"],
  summary: "Una instancia con su cliente, suscripción y plan",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ id: uuidParam("id", "Id de la instancia") }) },
  responses: { 200: ok, ...readErrorResponses },
});

const byCode = createRoute({
  operationId: "getTenantInstanceByCode",
  method: "get",
  path: "/api/tenant-instances/by-code/{tenantCode}",
  tags: ["tenants"],
  summary: "Una instancia por su código de tenant",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ tenantCode: tenantCodeParam }) },
  responses: { 200: ok, ...readErrorResponses },
});

export function registerGetTenantInstance(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(byId, async (c) => {
    const { id } = c.req.valid("param");
    const found = await loadInstanceView(c.var.deps.db, eq(tenantInstances.id, id));
    if (!found) throw notFound("Tenant instance", id);
    c.header("etag", await compositeEtagFor(found.rowVersion, found.view));
    return c.json(found.view, 200);
  });
  app.openapi(byCode, async (c) => {
    const { tenantCode } = c.req.valid("param");
    const found = await loadInstanceView(c.var.deps.db, eq(tenantInstances.tenantCode, tenantCode));
    if (!found) throw notFound("Tenant instance with code", tenantCode);
    c.header("etag", await compositeEtagFor(found.rowVersion, found.view));
    return c.json(found.view, 200);
  });
}
