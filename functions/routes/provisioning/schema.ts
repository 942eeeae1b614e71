import { z } from "@hono/zod-openapi";
import { recordWithoutProtoKey } from "../../text-input";

// Mapa código de feature o límite → valor. "__proto__" es un 400, no una entrada descartada.
const featureEntries = () =>
  recordWithoutProtoKey(
    z.record(
      z.string().regex(/^[A-Za-z][A-Za-z0-9_]{1,63}$/, "feature code or limit name"),
      z.union([z.boolean(), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]),
    ),
  );

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
    customFeatures: featureEntries()
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
    tenantInstanceId: z.uuid().openapi({
      description: "Instancia creada",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    tenantCode: z
      .string()
      .openapi({ description: "Código global del tenant", example: "acme-norte-5c1d2e3f" }),
    status: z
      .literal("provisioning")
      .openapi({ description: "El provisioning está en curso", example: "provisioning" }),
    taskId: z.uuid().openapi({
      description: "Tarea que ejecuta los pasos",
      example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }),
    createdAt: z
      .string()
      .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("ProvisionAccepted");

export type ProvisionResponse = z.infer<typeof provisionResponseSchema>;

const isoExample = "2026-01-24T13:20:00.000Z";

export const taskStepSchema = z.object({
  name: z.string().openapi({ description: "Nombre del paso", example: "register_tenant" }),
  status: z
    .enum(["running", "succeeded", "failed"])
    .openapi({ description: "Estado del paso", example: "succeeded" }),
  attempts: z.number().int().openapi({ description: "Veces que se intentó", example: 1 }),
  startedAt: z.string().openapi({ description: "Último inicio (ISO 8601)", example: isoExample }),
  finishedAt: z
    .string()
    .nullable()
    .openapi({ description: "Fin (ISO 8601) o null si sigue", example: isoExample }),
  error: z.string().nullable().openapi({ description: "Último error o null", example: null }),
});

export const taskSchema = z
  .object({
    taskId: z.uuid().openapi({
      description: "Id de la tarea",
      example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }),
    tenantInstanceId: z.uuid().openapi({
      description: "Instancia de la tarea",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    kind: z
      .enum(["provision", "deprovision", "update_features", "rotate_credentials"])
      .openapi({ description: "Tipo de tarea", example: "provision" }),
    status: z.enum(["queued", "running", "succeeded", "failed", "dead_lettered"]).openapi({
      description: "queued también indica que espera un reintento",
      example: "succeeded",
    }),
    attempts: z.number().int().openapi({ description: "Entregas procesadas", example: 1 }),
    lastError: z.string().nullable().openapi({ description: "Último error o null", example: null }),
    correlationId: z
      .string()
      .openapi({ description: "Correlación de la petición", example: "crm-order-2026-0001" }),
    steps: z.array(taskStepSchema).openapi({ description: "Pasos en orden de ejecución" }),
    createdAt: z.string().openapi({ description: "Creación (ISO 8601)", example: isoExample }),
    updatedAt: z
      .string()
      .openapi({ description: "Última modificación (ISO 8601)", example: isoExample }),
    startedAt: z
      .string()
      .nullable()
      .openapi({ description: "Primer inicio (ISO 8601) o null", example: isoExample }),
    finishedAt: z
      .string()
      .nullable()
      .openapi({ description: "Fin (ISO 8601) o null", example: isoExample }),
  })
  .openapi("ProvisioningTask");

// ---------- Operaciones sobre una instancia existente (deprovision, update_features) ----------

export const featureMapSchema = featureEntries()
  .refine((m) => Object.keys(m).length > 0, { message: "At least one feature or limit" })
  .refine((m) => Object.keys(m).length <= 200, { message: "At most 200 entries" })
  // Los refine no salen en el documento: min/maxProperties dicen lo mismo.
  .openapi("FeatureUpdate", {
    minProperties: 1,
    maxProperties: 200,
    description:
      "Mapa plano: un booleano habilita (true) o deshabilita (false) una feature; un número fija un límite",
    example: { max_users: 200, advanced_reports: true },
  });

export type FeatureMap = z.infer<typeof featureMapSchema>;

export const featureUpdateResponseSchema = z
  .object({
    tenantInstanceId: z.uuid().openapi({
      description: "Instancia afectada",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    taskId: z.uuid().openapi({
      description: "Tarea que aplica los overrides",
      example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }),
    kind: z
      .literal("update_features")
      .openapi({ description: "Tipo de tarea", example: "update_features" }),
    status: z
      .literal("updating_features")
      .openapi({ description: "La tarea está en cola", example: "updating_features" }),
    features: z.record(z.string(), z.union([z.boolean(), z.number()])).openapi({
      description: "Overrides pedidos, normalizados (FEATURE_CODE, limit_name)",
      example: { max_users: 200, ADVANCED_REPORTS: true },
    }),
  })
  .openapi("FeatureUpdateAccepted");

export type FeatureUpdateResponse = z.infer<typeof featureUpdateResponseSchema>;

export const credentialRotationResponseSchema = z
  .object({
    tenantInstanceId: z.uuid().openapi({
      description: "Instancia Enterprise cuya base cambia de contraseña",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    taskId: z.uuid().openapi({
      description: "Tarea que rota la contraseña",
      example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }),
    kind: z
      .literal("rotate_credentials")
      .openapi({ description: "Tipo de tarea", example: "rotate_credentials" }),
    status: z
      .literal("rotating_credentials")
      .openapi({ description: "La tarea está en cola", example: "rotating_credentials" }),
  })
  .openapi("CredentialRotationAccepted");

export type CredentialRotationResponse = z.infer<typeof credentialRotationResponseSchema>;

export const deprovisionQuerySchema = z.strictObject({
  purge: z.enum(["true", "false"]).optional().openapi({
    description:
      "true: además de dar de baja, borrar los datos del tenant (se registra en la tarea)",
    example: "false",
  }),
});

export const deprovisionResponseSchema = z
  .object({
    tenantInstanceId: z.uuid().openapi({
      description: "Instancia que se da de baja",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    taskId: z.uuid().openapi({
      description: "Tarea de deprovision",
      example: "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }),
    status: z
      .literal("deprovisioning")
      .openapi({ description: "La baja está en curso", example: "deprovisioning" }),
    purge: z.boolean().openapi({ description: "Si se pidió borrar los datos", example: false }),
  })
  .openapi("DeprovisionAccepted");

export type DeprovisionResponse = z.infer<typeof deprovisionResponseSchema>;
