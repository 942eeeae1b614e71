import { z } from "@hono/zod-openapi";
import { redactUrl } from "../../../core/redact-url";
import type { webhookEndpoints } from "../../../db/schema";

export const webhookSchema = z
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
      description:
        "URL que recibe los eventos; entera solo para platform_admin, para el resto solo su origen (`https://vet.example/…`)",
      example: "https://vet.example/hooks/farutech",
    }),
    active: z.boolean().openapi({ description: "Si recibe eventos", example: true }),
    previousSecretExpiresAt: z.string().nullable().openapi({
      description:
        "Tras rotar el secreto: hasta cuándo firma también el anterior (cabecera con dos `v1=`); null si solo firma el actual",
      example: "2026-01-25T13:20:00.000Z",
    }),
    createdAt: z.string().openapi({ description: "Alta", example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("WebhookEndpoint");

// La misma validación al registrar y al cambiar la URL.
// Tope de longitud: una URL de webhook real cabe de sobra, y el texto de sus errores va a la DLQ.
export const MAX_WEBHOOK_URL_LENGTH = 2048;

const webhookUrl = z
  .url({ protocol: /^https?$/ })
  .max(MAX_WEBHOOK_URL_LENGTH)
  // fetch no envía una URL con usuario y contraseña: nunca se entregaría. La autenticación del
  // receptor es la firma (y el secreto, que se muestra al crearlo).
  .refine((u) => URL.canParse(u) && !new URL(u).username && !new URL(u).password, {
    message: "A webhook URL cannot carry a user or password; verify the signature instead",
  })
  .openapi({
    description: "Destino (http o https, hasta 2048 caracteres), sin usuario ni contraseña",
    example: "https://vet.example/hooks/farutech",
  });

export const createWebhookSchema = z
  .strictObject({
    productId: z.uuid().optional().openapi({
      description: "Todas las instancias del producto",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    tenantInstanceId: z
      .uuid()
      .optional()
      .openapi({ description: "Una instancia", example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f" }),
    url: webhookUrl,
  })
  .refine((v) => (v.productId === undefined) !== (v.tenantInstanceId === undefined), {
    message: "Give exactly one of productId or tenantInstanceId",
    path: ["productId"],
  })
  .openapi("CreateWebhookEndpoint");

export const updateWebhookSchema = z
  .strictObject({
    url: webhookUrl.optional(),
    active: z
      .boolean()
      .optional()
      .openapi({ description: "false: deja de recibir eventos sin darlo de baja", example: false }),
  })
  .refine((v) => v.url !== undefined || v.active !== undefined, {
    message: "At least one of url or active is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateWebhookEndpoint", { minProperties: 1 });

export const createdWebhookSchema = webhookSchema
  .extend({
    secret: z.string().nullable().openapi({
      description:
        "Secreto HMAC-SHA256 de la firma; se muestra solo aquí (null al repetir con Idempotency-Key)",
      example: "whsec_4fQ9…",
    }),
  })
  .openapi("WebhookEndpointCreated");

/** Tope del solape: una semana basta para que el receptor cambie su secreto. */
export const MAX_SECRET_OVERLAP_SECONDS = 7 * 86_400;

export const rotateWebhookSecretSchema = z
  .strictObject({
    overlapSeconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_SECRET_OVERLAP_SECONDS)
      .default(86_400)
      .openapi({
        description:
          "Segundos en que el secreto actual sigue firmando junto al nuevo (por defecto 86400; 0 lo invalida ya, p. ej. tras una filtración; como mucho 604800)",
        example: 86_400,
      }),
  })
  .openapi("RotateWebhookSecret");

export const rotatedWebhookSchema = createdWebhookSchema.openapi("WebhookSecretRotated");

export type CreateWebhookInput = z.infer<typeof createWebhookSchema>;
export type UpdateWebhookInput = z.infer<typeof updateWebhookSchema>;
export type WebhookRow = typeof webhookEndpoints.$inferSelect;

/**
 * Lo que se muestra de un endpoint: nunca el secreto, ni cifrado. La URL entera solo a quien puede
 * cambiarla (platform_admin); al resto, su origen (la ruta o la query pueden llevar un token).
 */
export const toWebhook = (r: WebhookRow, options: { fullUrl: boolean }) => ({
  id: r.id,
  productId: r.productId,
  tenantInstanceId: r.tenantInstanceId,
  url: options.fullUrl ? r.url : redactUrl(r.url),
  active: r.active,
  // Una fecha ya pasada se muestra tal cual hasta que el mantenimiento la borra: dice cuándo acabó.
  previousSecretExpiresAt: r.previousSecretExpiresAt?.toISOString() ?? null,
  createdAt: r.createdAt.toISOString(),
});

/** Lo que se audita: la auditoría la lee support, así que la URL va sin ruta. */
export const auditedWebhook = (r: WebhookRow) => toWebhook(r, { fullUrl: false });
