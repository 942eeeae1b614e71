import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema } from "../../openapi";
import { listAudit } from "../../services/audit";
import { auditEntrySchema, auditQuerySchema } from "./schema";

const route = createRoute({
  operationId: "listAudit",
  method: "get",
  path: "/api/audit",
  tags: ["audit"],
  summary: "Bitácora de auditoría, de la más nueva a la más vieja, con filtros",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { query: auditQuerySchema },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(auditEntrySchema, "AuditPage") } },
    },
    ...listErrorResponses,
  },
});

export function registerListAudit(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { limit, cursor, ...filters } = c.req.valid("query");
    return c.json(await listAudit(c.var.deps.db, filters, { limit, cursor }), 200);
  });
}
