import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  ifMatchHeader,
  preconditionFailed,
  uuidParam,
} from "../../openapi";
import { compositeEtagFor, expectedVersion } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { changeInstanceStatus, updateTenantInstance } from "../../services/tenant-instances";
import { tenantInstanceSchema, updateTenantInstanceSchema } from "./schema";

const idParams = z.object({ id: uuidParam("id", "Id de la instancia") });
const ok = (description: string) => ({
  description,
  headers: etagHeader,
  content: { "application/json": { schema: tenantInstanceSchema } },
});

const update = createRoute({
  operationId: "updateTenantInstance",
  method: "patch",
  path: "/api/tenant-instances/{id}",
  tags: ["tenants"],
  summary: "Modifica entorno o subdominio de una instancia (If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: {
    params: idParams,
    headers: ifMatchHeader,
    body: {
      required: true,
      content: { "application/json": { schema: updateTenantInstanceSchema } },
    },
  },
  responses: { 200: ok("Modificada"), ...errorResponses, 412: preconditionFailed },
});

const statusRoute = (transition: "suspend" | "reactivate") =>
  createRoute({
    operationId: transition === "suspend" ? "suspendTenantInstance" : "reactivateTenantInstance",
    method: "post",
    path: `/api/tenant-instances/{id}/${transition}`,
    tags: ["tenants"],
    summary:
      transition === "suspend"
        ? "Suspende una instancia activa (sus entitlements se apagan)"
        : "Reactiva una instancia suspendida",
    security: bearerSecurity,
    middleware: writeGuard(TENANT_WRITE),
    request: { params: idParams, headers: ifMatchHeader },
    responses: {
      200: ok(transition === "suspend" ? "Suspendida" : "Reactivada"),
      ...errorResponses,
      412: preconditionFailed,
    },
  });

export function registerTenantInstanceMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(update, async (c) => {
    const { view, rowVersion } = await updateTenantInstance(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", await compositeEtagFor(rowVersion, view));
    return c.json(view, 200);
  });
  for (const transition of ["suspend", "reactivate"] as const) {
    app.openapi(statusRoute(transition), async (c) => {
      const { view, rowVersion } = await changeInstanceStatus(
        serviceContext(c),
        c.req.valid("param").id,
        transition,
        expectedVersion(c),
      );
      c.header("etag", await compositeEtagFor(rowVersion, view));
      return c.json(view, 200);
    });
  }
}
