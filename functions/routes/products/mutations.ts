import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { CATALOG_WRITE } from "../../middleware/roles";
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
import {
  addProductLimit,
  createProduct,
  deleteProduct,
  updateProduct,
} from "../../services/products";
import {
  addLimitSchema,
  createProductSchema,
  productSchema,
  toProduct,
  updateProductSchema,
} from "./schema";

const idParams = z.object({ id: uuidParam("id", "Id del producto") });

const create = createRoute({
  operationId: "createProduct",
  method: "post",
  path: "/api/products",
  tags: ["products"],
  summary: "Crea un producto",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { body: jsonBody(createProductSchema) },
  responses: {
    201: {
      description: "Creado",
      headers: etagHeader,
      content: { "application/json": { schema: productSchema } },
    },
    ...errorResponses,
  },
});

const update = createRoute({
  operationId: "updateProduct",
  method: "patch",
  path: "/api/products/{id}",
  tags: ["products"],
  summary: "Modifica un producto (If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: idParams, headers: ifMatchHeader, body: jsonBody(updateProductSchema) },
  responses: {
    200: {
      description: "Modificado",
      headers: etagHeader,
      content: { "application/json": { schema: productSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const remove = createRoute({
  operationId: "deleteProduct",
  method: "delete",
  path: "/api/products/{id}",
  tags: ["products"],
  summary: "Borra un producto sin planes ni instancias",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: idParams, headers: ifMatchHeader },
  responses: { 204: { description: "Borrado" }, ...errorResponses, 412: preconditionFailed },
});

const addLimit = createRoute({
  operationId: "addProductLimit",
  method: "post",
  path: "/api/products/{id}/limits",
  tags: ["products"],
  summary: "Agrega un límite numérico al producto",
  security: bearerSecurity,
  middleware: writeGuard(CATALOG_WRITE),
  request: { params: idParams, body: jsonBody(addLimitSchema) },
  responses: {
    201: {
      description: "Agregado",
      headers: etagHeader,
      content: { "application/json": { schema: productSchema } },
    },
    ...errorResponses,
  },
});

export function registerProductMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const { product, limits } = await createProduct(serviceContext(c), c.req.valid("json"));
    c.header("location", `/api/products/${product.id}`);
    c.header("etag", etagFor(product.rowVersion));
    return c.json(toProduct(product, limits), 201);
  });
  app.openapi(update, async (c) => {
    const { id } = c.req.valid("param");
    const { product, limits } = await updateProduct(
      serviceContext(c),
      id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(product.rowVersion));
    return c.json(toProduct(product, limits), 200);
  });
  app.openapi(remove, async (c) => {
    await deleteProduct(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
  app.openapi(addLimit, async (c) => {
    const { product, limits } = await addProductLimit(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
    );
    c.header("etag", etagFor(product.rowVersion));
    return c.json(toProduct(product, limits), 201);
  });
}
