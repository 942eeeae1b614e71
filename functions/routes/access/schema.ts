import { z } from "@hono/zod-openapi";

export const adminRoles = ["platform_admin", "catalog_manager", "support"] as const;

// Sin banderas: el OpenAPI publica el regex sin sus barras y una bandera quedaba como "/u" al final
// del pattern (no aceptaba nada). Los Cc son U+0000-U+001F y U+007F-U+009F: equivale a \p{Cc}.
// biome-ignore lint/suspicious/noControlCharactersInRegex: nombra los Cc para excluirlos.
const NO_CONTROL_CHARACTERS = /^[^\x00-\x1f\x7f-\x9f]+$/;

const clientName = z
  .string()
  .min(1)
  .max(200)
  .regex(NO_CONTROL_CHARACTERS, "no control characters")
  .openapi({ description: "Nombre para reconocer el cliente", example: "CRM de ventas" });

export const createAdminClientSchema = z
  .strictObject({
    name: clientName,
    roles: z
      .array(z.enum(adminRoles))
      .min(1)
      .max(adminRoles.length)
      .refine((r) => new Set(r).size === r.length, { message: "Roles must not repeat" })
      .openapi({
        uniqueItems: true,
        description: "Roles del cliente (platform_admin, catalog_manager o support)",
        example: ["catalog_manager"],
      }),
  })
  .openapi("CreateAdminClient");

export const createTenantClientSchema = z
  .strictObject({ name: clientName })
  .openapi("CreateTenantClient");

const clientFields = {
  clientId: z
    .string()
    .openapi({ description: "client_id para POST /oauth/token", example: "adm_Q2x9vT4kLm8pWz1a" }),
  name: clientName,
  kind: z
    .enum(["admin", "tenant"])
    .openapi({ description: "admin: operadores; tenant: una app hija", example: "admin" }),
  customerId: z.uuid().nullable().openapi({
    description: "Cliente del tenant (null en clientes admin)",
    example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f",
  }),
  instanceIds: z.array(z.uuid()).openapi({
    description: "Instancias que el token puede leer",
    example: ["5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"],
  }),
  roles: z
    .array(z.string())
    .openapi({ description: "Roles del token", example: ["catalog_manager"] }),
  createdAt: z
    .string()
    .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
};

export const apiClientSchema = z
  .object({
    ...clientFields,
    revokedAt: z
      .string()
      .nullable()
      .openapi({ description: "Revocación (ISO 8601) o null si está vigente", example: null }),
  })
  .openapi("ApiClient");

export const apiClientCredentialsSchema = z
  .object({
    ...clientFields,
    clientSecret: z.string().nullable().openapi({
      description:
        "Secreto: se muestra solo en esta respuesta (null si es la repetición de un POST con la misma Idempotency-Key: el secreto nunca se guarda)",
      example: "fsec_Zq3x7w-EXAMPLE-ONLY-8Jk0aP1rT5vY9mB2nC6dE0fG4hJ",
    }),
  })
  .openapi("ApiClientCredentials");

export const clientIdParam = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._~-]+$/, "a client id")
  .openapi({
    param: { name: "clientId", in: "path" },
    description: "client_id",
    example: "adm_Q2x9vT4kLm8pWz1a",
  });

export type ApiClientView = z.infer<typeof apiClientSchema>;
