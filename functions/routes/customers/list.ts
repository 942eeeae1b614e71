import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, isNull } from "drizzle-orm";
import { customers } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, listErrorResponses, pageSchema, paginationQuery } from "../../openapi";
import { keyset, toPage } from "../../services/pagination";
import { customerSchema, toCustomer } from "./schema";

const booleanQuery = (description: string, example: "true" | "false") =>
  z.enum(["true", "false"]).optional().openapi({ description, example });

const route = createRoute({
  operationId: "listCustomers",
  method: "get",
  path: "/api/customers",
  tags: ["customers"],
  summary: "Lista clientes (paginado por cursor; sin los borrados salvo includeDeleted)",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      country: z
        .string()
        .regex(/^[A-Z]{2}$/, "ISO 3166-1 alpha-2 code in upper case")
        .optional()
        .openapi({ description: "Filtra por país (ISO 3166-1 alfa-2)", example: "CO" }),
      isActive: booleanQuery("Filtra por clientes activos o inactivos", "true"),
      includeDeleted: booleanQuery("Incluye los clientes borrados (GDPR)", "false"),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: { "application/json": { schema: pageSchema(customerSchema, "CustomerPage") } },
    },
    ...listErrorResponses,
  },
});

export function registerListCustomers(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(customers.createdAt, customers.id, q.cursor);
    const rows = await c.var.deps.db
      .select()
      .from(customers)
      .where(
        and(
          q.includeDeleted === "true" ? undefined : isNull(customers.deletedAt),
          q.country ? eq(customers.country, q.country) : undefined,
          q.isActive ? eq(customers.isActive, q.isActive === "true") : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toCustomer), 200);
  });
}
