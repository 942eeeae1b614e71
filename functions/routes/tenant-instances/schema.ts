import { z } from "@hono/zod-openapi";

export const instanceStatuses = [
  "provisioning",
  "active",
  "failed",
  "suspended",
  "decommissioned",
] as const;

export const tenantInstanceSchema = z
  .object({
    id: z.uuid().openapi({
      description: "Id de la instancia",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    customerId: z.uuid().openapi({
      description: "Cliente dueño",
      example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f",
    }),
    customerName: z.string().openapi({ description: "Razón social", example: "Grupo Éxito S.A." }),
    productId: z.uuid().openapi({
      description: "Producto desplegado",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    productCode: z
      .string()
      .openapi({ description: "Código del producto", example: "FARUTECH_ERP" }),
    instanceCode: z
      .string()
      .openapi({ description: "Código único dentro del cliente", example: "norte" }),
    tenantCode: z.string().openapi({
      description: "Identificador global del tenant",
      example: "grupo-exito-s-a-norte-5c1d2e3f",
    }),
    environment: z.string().openapi({ description: "Entorno", example: "production" }),
    databaseTier: z.enum(["standard", "enterprise"]).openapi({
      description: "standard: base compartida; enterprise: base propia",
      example: "standard",
    }),
    status: z
      .enum(instanceStatuses)
      .openapi({ description: "Estado de la instancia", example: "active" }),
    kubernetesNamespace: z.string().openapi({
      description: "Namespace de Kubernetes",
      example: "tenant-grupo-exito-s-a-norte-5c1d2e3f",
    }),
    subdomainUrl: z.string().openapi({
      description: "Subdominio público",
      example: "norte.grupo-exito-s-a.farutech.com",
    }),
    subscription: z
      .object({
        id: z.uuid().openapi({
          description: "Id de la suscripción",
          example: "3b4c5d6e-7f8a-4b9c-8d0e-1f2a3b4c5d6e",
        }),
        planId: z.uuid().openapi({
          description: "Plan contratado",
          example: "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f",
        }),
        planCode: z
          .string()
          .openapi({ description: "Código del plan", example: "ERP_PROFESSIONAL" }),
        status: z
          .enum(["pending", "active", "suspended", "cancelled"])
          .openapi({ description: "Estado de la suscripción", example: "active" }),
        startsAt: z
          .string()
          .openapi({ description: "Inicio (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
        expiresAt: z
          .string()
          .nullable()
          .openapi({ description: "Vencimiento (ISO 8601) o null", example: null }),
      })
      .nullable()
      .openapi({ description: "Suscripción de la instancia (null si no tiene)" }),
    createdAt: z
      .string()
      .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
    updatedAt: z.string().openapi({
      description: "Última modificación (ISO 8601)",
      example: "2026-01-24T13:20:00.000Z",
    }),
    decommissionedAt: z.string().nullable().openapi({
      description: "Baja definitiva (ISO 8601) o null; la retención de datos cuenta desde aquí",
      example: null,
    }),
    dataDroppedAt: z.string().nullable().openapi({
      description: "Borrado de los datos del tenant (purge o fin de la retención) o null",
      example: null,
    }),
  })
  .openapi("TenantInstance");

export type TenantInstanceView = z.infer<typeof tenantInstanceSchema>;

export const updateTenantInstanceSchema = z
  .strictObject({
    environment: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,19}$/, "lowercase letters, digits and hyphens, 1-20 chars")
      .optional()
      .openapi({ description: "Entorno de la instancia", example: "staging" }),
    subdomainUrl: z
      .string()
      .max(253)
      .regex(
        /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/,
        "a lowercase DNS host name such as norte.cliente.farutech.com",
      )
      .optional()
      .openapi({
        description: "Subdominio público (nombre DNS en minúsculas)",
        example: "norte.grupo-exito.farutech.com",
      }),
  })
  .refine((v) => v.environment !== undefined || v.subdomainUrl !== undefined, {
    message: "At least one of environment or subdomainUrl is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateTenantInstance", { minProperties: 1 });

export const tenantCodeParam = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9][a-z0-9-]*$/, "a tenant code")
  .openapi({
    param: { name: "tenantCode", in: "path" },
    description: "Código global del tenant",
    example: "grupo-exito-s-a-norte-5c1d2e3f",
  });
