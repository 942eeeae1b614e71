import { z } from "@hono/zod-openapi";
import type { PlanDetails } from "../../services/plans";
import { recordWithoutProtoKey } from "../../text-input";

// Monedas ISO 4217 que conoce el runtime (ICU completo en Node 20): "XYZ" no pasa.
const ISO_4217 = new Set(Intl.supportedValuesOf("currency"));

const code = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{1,63}$/, "UPPER_SNAKE_CASE, 2-64 chars")
  .openapi({ description: "Código único del plan", example: "VET_PROFESSIONAL" });

const tier = z
  .enum(["standard", "professional", "enterprise"])
  .openapi({ description: "Nivel del plan", example: "professional" });

const name = z
  .string()
  .min(1)
  .max(200)
  .openapi({ description: "Nombre comercial", example: "Plan Profesional Veterinario" });

// numeric(12,2): hasta 10 dígitos enteros y exactamente 2 decimales, nunca negativo.
const price = z
  .string()
  .regex(/^(0|[1-9]\d{0,9})\.\d{2}$/, "Non-negative decimal with exactly 2 decimals, e.g. 79.00")
  .openapi({ description: "Precio mensual como decimal en texto (2 decimales)", example: "79.00" });

const currency = z
  .string()
  .regex(/^[A-Z]{3}$/, "ISO 4217 code, e.g. USD")
  .refine((c) => ISO_4217.has(c), "Unknown ISO 4217 currency")
  .openapi({ description: "Moneda ISO 4217", example: "USD" });

const maxUsers = z
  .number()
  .int()
  .min(1)
  .max(2_147_483_647)
  .openapi({ description: "Usuarios máximos (el límite max_users)", example: 50 });

const includedFeatures = z
  .array(
    z
      .string()
      .regex(/^[A-Z][A-Z0-9_]{1,63}$/, "UPPER_SNAKE_CASE feature code")
      .openapi({ description: "Código de feature del producto", example: "BATCH_CONTROL" }),
  )
  .max(500)
  .openapi({
    description: "Códigos de features del producto incluidas en el plan",
    example: ["APPOINTMENTS_SCHEDULING", "BATCH_CONTROL", "DIGITAL_RECORDS"],
  });

// "__proto__" es un 400 como cualquier otro nombre inválido, no un límite descartado en silencio.
const limits = recordWithoutProtoKey(
  z.record(
    z.string().regex(/^[a-z][a-z0-9_]{1,63}$/, "lower_snake_case limit name"),
    z.number().int().min(0).openapi({ description: "Valor del límite", example: 50 }),
  ),
).openapi({
  description: "Límites numéricos del producto (sin max_users: usar maxUsers)",
  example: { monthly_appointments: 3000, storage_gb: 50 },
});

export const planSchema = z
  .object({
    id: z
      .uuid()
      .openapi({ description: "Id del plan", example: "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f" }),
    productId: z.uuid().openapi({
      description: "Producto del plan",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    code,
    name: z
      .string()
      .openapi({ description: "Nombre comercial", example: "Plan Profesional Veterinario" }),
    tier,
    price: z
      .string()
      .openapi({ description: "Decimal como texto para no perder precisión", example: "79.00" }),
    currency: z.string().openapi({ description: "Moneda ISO 4217", example: "USD" }),
    maxUsers: z
      .number()
      .int()
      .openapi({ description: "Usuarios máximos (el límite max_users)", example: 50 }),
    includedFeatures: z.array(z.string()).openapi({
      description: "Features incluidas, en orden alfabético",
      example: ["BATCH_CONTROL", "DIGITAL_RECORDS"],
    }),
    limits: z.record(z.string(), z.number()).openapi({
      description: "Límites del plan por nombre",
      example: { storage_gb: 50 },
    }),
    createdAt: z
      .string()
      .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
    updatedAt: z.string().openapi({
      description: "Última modificación (ISO 8601)",
      example: "2026-01-24T13:20:00.000Z",
    }),
  })
  .openapi("Plan");

export const createPlanSchema = z
  .strictObject({
    productId: z.uuid().openapi({
      description: "Producto del plan",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    code,
    name,
    tier,
    price,
    currency: currency.default("USD"),
    maxUsers,
    includedFeatures: includedFeatures.default([]),
    limits: limits.default({}),
  })
  .openapi("CreatePlan");

export const updatePlanSchema = z
  .strictObject({
    name: name.optional(),
    price: price.optional(),
    currency: currency.optional(),
    maxUsers: maxUsers.optional(),
    includedFeatures: includedFeatures.optional(),
    limits: limits.optional(),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), {
    message:
      "At least one of name, price, currency, maxUsers, includedFeatures or limits is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdatePlan", { minProperties: 1 });

export function toPlan(d: PlanDetails) {
  const p = d.plan;
  return {
    id: p.id,
    productId: p.productId,
    code: p.code,
    name: p.name,
    tier: p.tier,
    price: p.price,
    currency: p.currency,
    maxUsers: p.maxUsers,
    includedFeatures: d.includedFeatures,
    limits: d.limits,
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}
