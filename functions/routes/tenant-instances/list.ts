import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { customers, plans, products, subscriptions, tenantInstances } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, errorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";

const statuses = ["provisioning", "active", "failed", "suspended", "decommissioned"] as const;

export const tenantInstanceSchema = z
  .object({
    id: z.uuid().openapi({ example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f" }),
    customerId: z.uuid(),
    customerName: z.string().openapi({ example: "Grupo Éxito S.A." }),
    productId: z.uuid(),
    productCode: z.string().openapi({ example: "FARUTECH_ERP" }),
    instanceCode: z.string().openapi({ example: "norte" }),
    tenantCode: z.string().openapi({ example: "grupo-exito-s-a-norte-5c1d2e3f" }),
    environment: z.string().openapi({ example: "production" }),
    databaseTier: z.enum(["standard", "enterprise"]),
    status: z.enum(statuses),
    kubernetesNamespace: z.string(),
    subdomainUrl: z.string().openapi({ example: "norte.grupo-exito-s-a.farutech.com" }),
    subscription: z
      .object({
        id: z.uuid(),
        planId: z.uuid(),
        planCode: z.string().openapi({ example: "ERP_PROFESSIONAL" }),
        status: z.enum(["pending", "active", "suspended", "cancelled"]),
        startsAt: z.string(),
        expiresAt: z.string().nullable(),
      })
      .nullable(),
    createdAt: z.string(),
  })
  .openapi("TenantInstance");

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
        .enum(statuses)
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
    ...errorResponses,
  },
});

export function registerListTenantInstances(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(tenantInstances.createdAt, tenantInstances.id, q.cursor);
    // Una sola consulta con joins, sea cual sea el tamaño de página.
    const rows = await c.var.deps.db
      .select({
        instance: tenantInstances,
        customerName: customers.legalName,
        productCode: products.code,
        subscription: subscriptions,
        planCode: plans.code,
      })
      .from(tenantInstances)
      .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
      .innerJoin(products, eq(products.id, tenantInstances.productId))
      .leftJoin(subscriptions, eq(subscriptions.tenantInstanceId, tenantInstances.id))
      .leftJoin(plans, eq(plans.id, subscriptions.planId))
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
    return c.json(
      toPage(
        flat,
        q.limit,
        ({ instance: i, customerName, productCode, subscription: s, planCode }) => ({
          id: i.id,
          customerId: i.customerId,
          customerName,
          productId: i.productId,
          productCode,
          instanceCode: i.instanceCode,
          tenantCode: i.tenantCode,
          environment: i.environment,
          databaseTier: i.databaseTier,
          status: i.status,
          kubernetesNamespace: i.kubernetesNamespace,
          subdomainUrl: i.subdomainUrl,
          subscription:
            s && planCode
              ? {
                  id: s.id,
                  planId: s.planId,
                  planCode,
                  status: s.status,
                  startsAt: s.startsAt.toISOString(),
                  expiresAt: s.expiresAt ? s.expiresAt.toISOString() : null,
                }
              : null,
          createdAt: i.createdAt.toISOString(),
        }),
      ),
      200,
    );
  });
}
