import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { requireRole } from "../../middleware/auth";
import { bearerSecurity, errorResponses } from "../../openapi";
import { provisionTenant } from "../../services/provisioning";
import { provisionRequestSchema, provisionResponseSchema } from "./schema";

const route = createRoute({
  operationId: "provisionTenant",
  method: "post",
  path: "/api/provisioning/provision",
  tags: ["provisioning"],
  summary: "Provisiona una instancia de tenant (asíncrono)",
  security: bearerSecurity,
  middleware: [requireRole("platform_admin")] as const,
  request: {
    body: { required: true, content: { "application/json": { schema: provisionRequestSchema } } },
  },
  responses: {
    202: {
      description: "Aceptado: un worker ejecuta los pasos; consulte la tarea",
      content: { "application/json": { schema: provisionResponseSchema } },
    },
    ...errorResponses,
  },
});

export function registerProvision(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { response, replayed } = await provisionTenant(
      {
        db: c.var.deps.db,
        bus: c.var.deps.bus,
        logger: c.var.logger,
        actor: c.var.claims.sub,
        correlationId: c.var.correlationId,
        baseDomain: c.var.deps.baseDomain,
      },
      c.req.valid("json"),
    );
    if (replayed) c.header("idempotent-replayed", "true");
    c.header("location", `/api/provisioning/tasks/${response.taskId}`);
    return c.json(response, 202);
  });
}
