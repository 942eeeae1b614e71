import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import { bearerSecurity, errorResponses } from "../../openapi";
import { serviceContext } from "../../services/context";
import { provisionTenant } from "../../services/provisioning";
import { provisionRequestSchema, provisionResponseSchema } from "./schema";

const route = createRoute({
  operationId: "provisionTenant",
  method: "post",
  path: "/api/provisioning/provision",
  tags: ["provisioning"],
  summary: "Provisiona una instancia de tenant (asíncrono)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
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
    const { response, replayed } = await provisionTenant(serviceContext(c), c.req.valid("json"));
    if (replayed) c.header("idempotent-replayed", "true");
    c.header("location", `/api/provisioning/tasks/${response.taskId}`);
    return c.json(response, 202);
  });
}
