import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  ifMatchHeader,
  jsonBody,
  preconditionFailed,
  uuidParam,
} from "../../openapi";
import { etagFor, expectedVersion } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { createCustomer, softDeleteCustomer, updateCustomer } from "../../services/customers";
import { eraseCustomerNow } from "../../services/gdpr";
import { createCustomerSchema, customerSchema, toCustomer, updateCustomerSchema } from "./schema";

const idParams = z.object({ id: uuidParam("id", "Id del cliente") });
const customerBody = (description: string) => ({
  description,
  headers: etagHeader,
  content: { "application/json": { schema: customerSchema } },
});

const create = createRoute({
  operationId: "createCustomer",
  method: "post",
  path: "/api/customers",
  tags: ["customers"],
  summary: "Crea un cliente (taxId único por país)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { body: jsonBody(createCustomerSchema) },
  responses: { 201: customerBody("Creado"), ...errorResponses },
});

const update = createRoute({
  operationId: "updateCustomer",
  method: "patch",
  path: "/api/customers/{id}",
  tags: ["customers"],
  summary: "Modifica un cliente (If-Match opcional; 409 si fue borrado por GDPR)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams, headers: ifMatchHeader, body: jsonBody(updateCustomerSchema) },
  responses: { 200: customerBody("Modificado"), ...errorResponses, 412: preconditionFailed },
});

const remove = createRoute({
  operationId: "deleteCustomer",
  method: "delete",
  path: "/api/customers/{id}",
  tags: ["customers"],
  summary: "Borrado lógico (GDPR): desactiva el cliente y suspende sus instancias",
  description:
    "Los datos personales se borran definitivamente tras GDPR_RETENTION_DAYS días " +
    "(o al momento con POST /api/customers/{id}/erase). Repetirlo no cambia nada.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams, headers: ifMatchHeader },
  responses: { 204: { description: "Borrado" }, ...errorResponses, 412: preconditionFailed },
});

const erase = createRoute({
  operationId: "eraseCustomer",
  method: "post",
  path: "/api/customers/{id}/erase",
  tags: ["customers"],
  summary: "Derecho al olvido: borra ya los datos personales del cliente",
  description:
    "Borra lógicamente si hacía falta, reemplaza razón social, taxId y correo, revoca sus " +
    "clientes OAuth y tacha esos datos de la auditoría. Conserva los ids.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams },
  responses: { 200: customerBody("El cliente borrado"), ...errorResponses },
});

export function registerCustomerMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const customer = await createCustomer(serviceContext(c), c.req.valid("json"));
    c.header("location", `/api/customers/${customer.id}`);
    c.header("etag", etagFor(customer.rowVersion));
    return c.json(toCustomer(customer), 201);
  });
  app.openapi(update, async (c) => {
    const customer = await updateCustomer(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(customer.rowVersion));
    return c.json(toCustomer(customer), 200);
  });
  app.openapi(remove, async (c) => {
    await softDeleteCustomer(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
  app.openapi(erase, async (c) => {
    const customer = await eraseCustomerNow(serviceContext(c), c.req.valid("param").id);
    c.header("etag", etagFor(customer.rowVersion));
    return c.json(toCustomer(customer), 200);
  });
}
