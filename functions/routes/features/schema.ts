import { z } from "@hono/zod-openapi";
import type { features } from "../../../db/schema";

const code = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{1,63}$/, "UPPER_SNAKE_CASE, 2-64 chars")
  .openapi({
    description: "Código de la feature, único dentro del producto",
    example: "BATCH_CONTROL",
  });

const name = z
  .string()
  .min(1)
  .max(200)
  .openapi({ description: "Nombre visible", example: "Control de lotes de medicamentos" });

const description = z
  .string()
  .max(2000)
  .openapi({ description: "Descripción", example: "Trazabilidad de lotes y vencimientos" });

const isPremium = z
  .boolean()
  .openapi({ description: "Feature premium (solo en planes superiores)", example: false });

export const featureSchema = z
  .object({
    id: z.uuid().openapi({
      description: "Id de la feature",
      example: "7e6d5c4b-3a29-4f18-8e07-d6c5b4a39281",
    }),
    moduleId: z.uuid().openapi({
      description: "Módulo al que pertenece",
      example: "5d7c1a0e-3b2f-4c6d-9e8f-7a6b5c4d3e2f",
    }),
    productId: z.uuid().openapi({
      description: "Producto (siempre el del módulo)",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    code,
    name: z
      .string()
      .openapi({ description: "Nombre visible", example: "Control de lotes de medicamentos" }),
    description: z
      .string()
      .openapi({ description: "Descripción", example: "Trazabilidad de lotes y vencimientos" }),
    isPremium,
    createdAt: z
      .string()
      .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
    updatedAt: z.string().openapi({
      description: "Última modificación (ISO 8601)",
      example: "2026-01-24T13:20:00.000Z",
    }),
  })
  .openapi("Feature");

export const createFeatureSchema = z
  .strictObject({
    code,
    name,
    description: description.default(""),
    isPremium: isPremium.default(false),
  })
  .openapi("CreateFeature");

export const updateFeatureSchema = z
  .strictObject({
    name: name.optional(),
    description: description.optional(),
    isPremium: isPremium.optional(),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), {
    message: "At least one of name, description or isPremium is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateFeature", { minProperties: 1 });

export type FeatureRow = typeof features.$inferSelect;

export function toFeature(f: FeatureRow) {
  return {
    id: f.id,
    moduleId: f.moduleId,
    productId: f.productId,
    code: f.code,
    name: f.name,
    description: f.description,
    isPremium: f.isPremium,
    createdAt: f.createdAt.toISOString(),
    updatedAt: f.updatedAt.toISOString(),
  };
}
