import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { AppError } from "../../../core/errors";
import type { AdminEnv } from "../../env";
import { withoutSecretField, writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  etagHeader,
  ifMatchHeader,
  jsonBody,
  noStoreHeader,
  preconditionFailed,
  uuidParam,
} from "../../openapi";
import { etagFor, expectedVersion } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import {
  createWebhook,
  deleteWebhook,
  rotateWebhookSecret,
  updateWebhook,
} from "../../services/webhooks";
import {
  createdWebhookSchema,
  createWebhookSchema,
  rotatedWebhookSchema,
  rotateWebhookSecretSchema,
  toWebhook,
  updateWebhookSchema,
  webhookSchema,
} from "./schema";

const idParams = z.object({ id: uuidParam("id", "Id del endpoint") });

const create = createRoute({
  operationId: "createWebhookEndpoint",
  method: "post",
  path: "/api/webhooks",
  tags: ["webhooks"],
  summary: "Registra un endpoint de webhooks (entitlements.changed firmado con HMAC)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE, { redactStoredBody: withoutSecretField("secret") }),
  request: { body: jsonBody(createWebhookSchema) },
  responses: {
    201: {
      description: "Registrado",
      headers: { ...etagHeader, ...noStoreHeader },
      content: { "application/json": { schema: createdWebhookSchema } },
    },
    ...errorResponses,
  },
});

const update = createRoute({
  operationId: "updateWebhookEndpoint",
  method: "patch",
  path: "/api/webhooks/{id}",
  tags: ["webhooks"],
  summary: "Cambia la URL de un endpoint o lo pausa/reanuda (If-Match opcional)",
  description: "El secreto de firma no se muestra; se cambia con rotate-secret.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams, headers: ifMatchHeader, body: jsonBody(updateWebhookSchema) },
  responses: {
    200: {
      description: "Modificado",
      headers: etagHeader,
      content: { "application/json": { schema: webhookSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const rotate = createRoute({
  operationId: "rotateWebhookSecret",
  method: "post",
  path: "/api/webhooks/{id}/rotate-secret",
  tags: ["webhooks"],
  summary: "Genera un secreto de firma nuevo (el anterior sigue firmando durante el solape)",
  description:
    "Devuelve el secreto nuevo una sola vez. Mientras dure el solape cada entrega lleva dos firmas `v1=` (la del nuevo primero): el receptor acepta si alguna coincide con el secreto que tenga. Idempotency-Key es obligatoria aquí (400 sin ella): un reintento sin clave generaría otro secreto y el anterior pasaría a ser el que nadie vio, dejando fuera al receptor.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE, { redactStoredBody: withoutSecretField("secret") }),
  request: { params: idParams, body: jsonBody(rotateWebhookSecretSchema) },
  responses: {
    200: {
      description: "Rotado",
      headers: { ...etagHeader, ...noStoreHeader },
      content: { "application/json": { schema: rotatedWebhookSchema } },
    },
    ...errorResponses,
  },
});

const remove = createRoute({
  operationId: "deleteWebhookEndpoint",
  method: "delete",
  path: "/api/webhooks/{id}",
  tags: ["webhooks"],
  summary: "Da de baja un endpoint (If-Match opcional)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: idParams, headers: ifMatchHeader },
  responses: { 204: { description: "Borrado" }, ...errorResponses, 412: preconditionFailed },
});

export function registerWebhookMutations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(create, async (c) => {
    const { row, secret } = await createWebhook(
      serviceContext(c),
      c.var.deps.secretBox,
      c.req.valid("json"),
    );
    c.header("location", `/api/webhooks/${row.id}`);
    c.header("etag", etagFor(row.rowVersion));
    c.header("cache-control", "no-store");
    // Solo platform_admin registra y cambia endpoints: ve la URL entera.
    return c.json({ ...toWebhook(row, { fullUrl: true }), secret }, 201);
  });
  app.openapi(update, async (c) => {
    const row = await updateWebhook(
      serviceContext(c),
      c.req.valid("param").id,
      c.req.valid("json"),
      expectedVersion(c),
    );
    c.header("etag", etagFor(row.rowVersion));
    return c.json(toWebhook(row, { fullUrl: true }), 200);
  });
  app.openapi(rotate, async (c) => {
    if (c.req.header("idempotency-key") === undefined) {
      throw new AppError(
        "validation_failed",
        "Rotating a webhook secret needs an Idempotency-Key: a retry without one would generate another secret and drop the one the receiver still has",
        { fields: [{ path: "header.Idempotency-Key", message: "Required for this operation" }] },
      );
    }
    const { row, secret } = await rotateWebhookSecret(
      serviceContext(c),
      c.var.deps.secretBox,
      c.req.valid("param").id,
      c.req.valid("json").overlapSeconds,
    );
    c.header("etag", etagFor(row.rowVersion));
    // Lleva un secreto: ningún intermediario lo guarda.
    c.header("cache-control", "no-store");
    return c.json({ ...toWebhook(row, { fullUrl: true }), secret }, 200);
  });
  app.openapi(remove, async (c) => {
    await deleteWebhook(serviceContext(c), c.req.valid("param").id, expectedVersion(c));
    return c.body(null, 204);
  });
}
