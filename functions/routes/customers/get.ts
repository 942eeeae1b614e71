import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_READ } from "../../middleware/roles";
import { bearerSecurity, etagHeader, readErrorResponses, uuidParam } from "../../openapi";
import { etagFor, notFound } from "../../services/concurrency";
import { loadCustomer } from "../../services/customers";
import { customerSchema, toCustomer } from "./schema";

const route = createRoute({
  operationId: "getCustomer",
  method: "get",
  path: "/api/customers/{id}",
  tags: ["customers"],
  summary: "Un cliente (también si está borrado: ver deletedAt y erasedAt)",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: { params: z.object({ id: uuidParam("id", "Id del cliente") }) },
  responses: {
    200: {
      description: "El cliente",
      headers: etagHeader,
      content: { "application/json": { schema: customerSchema } },
    },
    ...readErrorResponses,
  },
});

export function registerGetCustomer(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const customer = await loadCustomer(c.var.deps.db, id);
    if (!customer) throw notFound("Customer", id);
    c.header("etag", etagFor(customer.rowVersion));
    return c.json(toCustomer(customer), 200);
  });
}
