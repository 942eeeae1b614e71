import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { tenantInstances } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { selectInstanceViews, toTenantInstance } from "../../services/tenant-instances";
import { instanceStatuses, tenantInstanceSchema } from "./schema";

export { tenantInstanceSchema } from "./schema";

const route = createRoute({
  operationId: "listTenantInstances",
  method: "get",
  path: "/api/tenant-instances",
  tags: ["tenants"],
  summary: "Lista instancias con su cliente, suscripción y plan",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      customerId: z.uuid().optional().openapi({
        description: "Filtra por cliente",
        example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f",
      }),
      productId: z.uuid().optional().openapi({
        description: "Filtra por producto",
        example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
      }),
      status: z
        .enum(instanceStatuses)
        .optional()
        .openapi({ description: "Filtra por estado", example: "active" }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: {
        "application/json": { schema: pageSchema(tenantInstanceSchema, "TenantInstancePage") },
      },
    },
    ...listErrorResponses,
  },
});

export function registerListTenantInstances(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(tenantInstances.createdAt, tenantInstances.id, q.cursor);
    // Una sola consulta con joins, sea cual sea el tamaño de página.
    const rows = await selectInstanceViews(c.var.deps.db)
      .where(
        and(
          q.customerId ? eq(tenantInstances.customerId, q.customerId) : undefined,
          q.productId ? eq(tenantInstances.productId, q.productId) : undefined,
          q.status ? eq(tenantInstances.status, q.status) : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    const flat = rows.map((r) => ({ ...r, id: r.instance.id, createdAt: r.instance.createdAt }));
    return c.json(toPage(flat, q.limit, toTenantInstance), 200);
  });
}
