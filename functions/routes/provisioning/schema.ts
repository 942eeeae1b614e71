import { z } from "@hono/zod-openapi";

export const provisionRequestSchema = z
  .strictObject({
    customerId: z.uuid().openapi({
      description: "Cliente dueño de la instancia",
      example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f",
    }),
    productId: z.uuid().openapi({
      description: "Producto a desplegar",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    planId: z.uuid().openapi({
      description: "Plan del mismo producto",
      example: "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f",
    }),
    instanceCode: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, "lowercase letters, digits and hyphens, 1-40 chars")
      .openapi({ description: "Código único dentro del cliente", example: "norte" }),
    databaseTier: z.enum(["standard", "enterprise"]).openapi({
      description: "standard: base compartida; enterprise: base propia",
      example: "standard",
    }),
    environment: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,19}$/, "lowercase letters, digits and hyphens, 1-20 chars")
      .default("production")
      .openapi({ description: "Entorno de la instancia", example: "production" }),
    customFeatures: z
      .record(
        z.string().regex(/^[A-Za-z][A-Za-z0-9_]{1,63}$/, "feature code or limit name"),
        z.union([z.boolean(), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]),
      )
      .default({})
      .openapi({
        description:
          "Overrides de la suscripción: un booleano habilita o deshabilita una feature; un número fija un límite",
        example: { max_users: 100, ADVANCED_REPORTS: true },
      }),
    correlationId: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/)
      .optional()
      .openapi({
        description: "Repetir la petición con el mismo id no provisiona dos veces",
        example: "crm-order-2026-0001",
      }),
  })
  .openapi("ProvisionRequest");

export type ProvisionRequest = z.infer<typeof provisionRequestSchema>;

export const provisionResponseSchema = z
  .object({
    tenantInstanceId: z.uuid().openapi({ example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f" }),
    tenantCode: z.string().openapi({ example: "acme-norte-5c1d2e3f" }),
    status: z.literal("provisioning"),
    taskId: z.uuid().openapi({ example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b" }),
    createdAt: z.string().openapi({ example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("ProvisionAccepted");

export type ProvisionResponse = z.infer<typeof provisionResponseSchema>;

export const taskStepSchema = z.object({
  name: z.string().openapi({ example: "register_tenant" }),
  status: z.enum(["running", "succeeded", "failed"]),
  attempts: z.number().int(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  error: z.string().nullable(),
});

export const taskSchema = z
  .object({
    taskId: z.uuid(),
    tenantInstanceId: z.uuid(),
    kind: z.enum(["provision", "deprovision", "update_features"]),
    status: z.enum(["queued", "running", "succeeded", "failed", "dead_lettered"]).openapi({
      description: "queued también indica que espera un reintento",
      example: "succeeded",
    }),
    attempts: z.number().int().openapi({ description: "Entregas procesadas", example: 1 }),
    lastError: z.string().nullable(),
    correlationId: z.string(),
    steps: z.array(taskStepSchema),
    createdAt: z.string(),
    updatedAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .openapi("ProvisioningTask");
