import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { AppError } from "../../../core/errors";
import { newId, randomToken } from "../../../core/ids";
import { secretContext } from "../../../core/secret-box";
import { webhookEndpoints } from "../../../db/schema";
import type { AdminEnv } from "../../env";
import { readGuard, writeGuard } from "../../middleware/guards";
import { TENANT_READ, TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  pageSchema,
  paginationQuery,
  uuidParam,
} from "../../openapi";
import { notFound } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import { domainEvent, mutate } from "../../services/mutation";
import { keyset, toPage } from "../../services/pagination";

const webhookSchema = z
  .object({
    id: z
      .uuid()
      .openapi({ description: "Id del endpoint", example: "6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e" }),
    productId: z
      .uuid()
      .nullable()
      .openapi({ description: "Producto (o null si es por instancia)", example: null }),
    tenantInstanceId: z.uuid().nullable().openapi({
      description: "Instancia (o null si es por producto)",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    url: z.string().openapi({
      description: "URL que recibe los eventos",
      example: "https://vet.example/hooks/farutech",
    }),
    active: z.boolean().openapi({ description: "Si recibe eventos", example: true }),
    createdAt: z.string().openapi({ description: "Alta", example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("WebhookEndpoint");

const createSchema = z
  .strictObject({
    productId: z.uuid().optional().openapi({
      description: "Todas las instancias del producto",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    tenantInstanceId: z
      .uuid()
      .optional()
      .openapi({ description: "Una instancia", example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f" }),
    url: z
      .url({ protocol: /^https?$/ })
      // fetch no envía una URL con usuario y contraseña: nunca se entregaría. La autenticación del
      // receptor es la firma (y el secreto, que se muestra al crearlo).
      .refine((u) => URL.canParse(u) && !new URL(u).username && !new URL(u).password, {
        message: "A webhook URL cannot carry a user or password; verify the signature instead",
      })
      .openapi({
        description: "Destino (http o https), sin usuario ni contraseña",
        example: "https://vet.example/hooks/farutech",
      }),
  })
  .refine((v) => (v.productId === undefined) !== (v.tenantInstanceId === undefined), {
    message: "Give exactly one of productId or tenantInstanceId",
    path: ["productId"],
  })
  .openapi("CreateWebhookEndpoint");

const created = webhookSchema
  .extend({
    secret: z.string().nullable().openapi({
      description:
        "Secreto HMAC-SHA256 de la firma; se muestra solo aquí (null al repetir con Idempotency-Key)",
      example: "whsec_4fQ9…",
    }),
  })
  .openapi("WebhookEndpointCreated");

type Row = typeof webhookEndpoints.$inferSelect;
const toWebhook = (r: Row) => ({
  id: r.id,
  productId: r.productId,
  tenantInstanceId: r.tenantInstanceId,
  url: r.url,
  active: r.active,
  createdAt: r.createdAt.toISOString(),
});

const withoutSecret = (body: string) => {
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    return "secret" in parsed ? JSON.stringify({ ...parsed, secret: null }) : body;
  } catch {
    return body;
  }
};

const createRouteDef = createRoute({
  operationId: "createWebhookEndpoint",
  method: "post",
  path: "/api/webhooks",
  tags: ["webhooks"],
  summary: "Registra un endpoint de webhooks (entitlements.changed firmado con HMAC)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE, { redactStoredBody: withoutSecret }),
  request: { body: { required: true, content: { "application/json": { schema: createSchema } } } },
  responses: {
    201: { description: "Registrado", content: { "application/json": { schema: created } } },
    ...errorResponses,
  },
});

const listRoute = createRoute({
  operationId: "listWebhookEndpoints",
  method: "get",
  path: "/api/webhooks",
  tags: ["webhooks"],
  summary: "Endpoints de webhooks registrados (sin secretos)",
  security: bearerSecurity,
  middleware: readGuard(TENANT_READ),
  request: {
    query: paginationQuery.extend({
      productId: z.uuid().optional().openapi({
        description: "Filtra por producto",
        example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
      }),
      tenantInstanceId: z.uuid().optional().openapi({
        description: "Filtra por instancia",
        example: "7c9e6679-7425-40de-944b-e07fc1f90ae7",
      }),
    }),
  },
  responses: {
    200: {
      description: "Una página",
      content: {
        "application/json": { schema: pageSchema(webhookSchema, "WebhookEndpointPage") },
      },
    },
    ...errorResponses,
  },
});

const deleteRoute = createRoute({
  operationId: "deleteWebhookEndpoint",
  method: "delete",
  path: "/api/webhooks/{id}",
  tags: ["webhooks"],
  summary: "Da de baja un endpoint",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params: z.object({ id: uuidParam("id", "Id del endpoint") }) },
  responses: { 204: { description: "Borrado" }, ...errorResponses },
});

export function registerWebhooks(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(createRouteDef, async (c) => {
    const box = c.var.deps.secretBox;
    if (!box)
      throw new AppError(
        "unavailable",
        "Webhooks need ENCRYPTION_KEYS to store their signing secrets",
      );
    const input = c.req.valid("json");
    const secret = `whsec_${randomToken(24)}`;
    // El id va en el contexto del secreto cifrado: se fija antes de insertar.
    const id = newId();
    const sealed = await box.encrypt(secret, secretContext.webhookSecret(id));
    const row = await mutate(serviceContext(c), async (tx) => {
      const [inserted] = await tx
        .insert(webhookEndpoints)
        .values({
          id,
          productId: input.productId ?? null,
          tenantInstanceId: input.tenantInstanceId ?? null,
          url: input.url,
          secretEncrypted: sealed,
          encryptionKeyId: box.activeKeyId,
        })
        .returning();
      if (!inserted) throw new Error("webhook insert returned nothing");
      return {
        result: inserted,
        audit: [
          {
            action: "webhook.created",
            entityType: "webhook_endpoint",
            entityId: inserted.id,
            after: toWebhook(inserted),
          },
        ],
        events: [domainEvent("webhook", "created", { webhookId: inserted.id })],
      };
    });
    c.header("location", `/api/webhooks/${row.id}`);
    return c.json({ ...toWebhook(row), secret }, 201);
  });
  app.openapi(listRoute, async (c) => {
    const q = c.req.valid("query");
    const page = keyset(webhookEndpoints.createdAt, webhookEndpoints.id, q.cursor);
    const rows = await c.var.deps.db
      .select()
      .from(webhookEndpoints)
      .where(
        and(
          q.productId ? eq(webhookEndpoints.productId, q.productId) : undefined,
          q.tenantInstanceId
            ? eq(webhookEndpoints.tenantInstanceId, q.tenantInstanceId)
            : undefined,
          page.after,
        ),
      )
      .orderBy(...page.orderBy)
      .limit(q.limit + 1);
    return c.json(toPage(rows, q.limit, toWebhook), 200);
  });
  app.openapi(deleteRoute, async (c) => {
    const { id } = c.req.valid("param");
    await mutate(serviceContext(c), async (tx) => {
      const [gone] = await tx
        .delete(webhookEndpoints)
        .where(eq(webhookEndpoints.id, id))
        .returning();
      if (!gone) throw notFound("Webhook endpoint", id);
      return {
        result: undefined,
        audit: [
          {
            action: "webhook.deleted",
            entityType: "webhook_endpoint",
            entityId: id,
            before: toWebhook(gone),
          },
        ],
        events: [domainEvent("webhook", "deleted", { webhookId: id })],
      };
    });
    return c.body(null, 204);
  });
}
