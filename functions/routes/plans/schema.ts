import { z } from "@hono/zod-openapi";

export const productSchema = z
  .object({
    id: z.uuid().openapi({ example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" }),
    code: z.string().openapi({ example: "FARUTECH_VET" }),
    name: z.string().openapi({ example: "Farutech Vet - Sistema Veterinario" }),
    description: z.string().openapi({ example: "Gestión de clínicas veterinarias" }),
    version: z.string().openapi({ example: "1.0.0" }),
    createdAt: z.string().openapi({ example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("Product");

export const planSchema = z
  .object({
    id: z.uuid().openapi({ example: "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f" }),
    productId: z.uuid().openapi({ example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" }),
    code: z.string().openapi({ example: "VET_PROFESSIONAL" }),
    name: z.string().openapi({ example: "Plan Profesional Veterinario" }),
    tier: z.enum(["standard", "professional", "enterprise"]).openapi({ example: "professional" }),
    price: z
      .string()
      .openapi({ description: "Decimal como texto para no perder precisión", example: "79.00" }),
    currency: z.string().openapi({ example: "USD" }),
    maxUsers: z.number().int().openapi({ example: 50 }),
    includedFeatures: z
      .array(z.string())
      .openapi({ example: ["BATCH_CONTROL", "DIGITAL_RECORDS"] }),
    limits: z.record(z.string(), z.number()).openapi({ example: { storage_gb: 50 } }),
    createdAt: z.string().openapi({ example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("Plan");
