import { z } from "@hono/zod-openapi";
import type { modules } from "../../../db/schema";

const code = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{1,63}$/, "UPPER_SNAKE_CASE, 2-64 chars")
  .openapi({ description: "Código del módulo, único dentro del producto", example: "INVENTORY" });

const name = z
  .string()
  .min(1)
  .max(200)
  .openapi({ description: "Nombre visible", example: "Gestión de inventario" });

const description = z
  .string()
  .max(2000)
  .openapi({ description: "Descripción", example: "Lotes, existencias y alertas de stock" });

export const moduleSchema = z
  .object({
    id: z
      .uuid()
      .openapi({ description: "Id del módulo", example: "5d7c1a0e-3b2f-4c6d-9e8f-7a6b5c4d3e2f" }),
    productId: z.uuid().openapi({
      description: "Producto al que pertenece",
      example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }),
    code,
    name: z.string().openapi({ description: "Nombre visible", example: "Gestión de inventario" }),
    description: z
      .string()
      .openapi({ description: "Descripción", example: "Lotes, existencias y alertas de stock" }),
    createdAt: z
      .string()
      .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
    updatedAt: z.string().openapi({
      description: "Última modificación (ISO 8601)",
      example: "2026-01-24T13:20:00.000Z",
    }),
  })
  .openapi("Module");

export const createModuleSchema = z
  .strictObject({ code, name, description: description.default("") })
  .openapi("CreateModule");

export const updateModuleSchema = z
  .strictObject({ name: name.optional(), description: description.optional() })
  .refine((v) => Object.values(v).some((x) => x !== undefined), {
    message: "At least one of name or description is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateModule", { minProperties: 1 });

export type ModuleRow = typeof modules.$inferSelect;

export function toModule(m: ModuleRow) {
  return {
    id: m.id,
    productId: m.productId,
    code: m.code,
    name: m.name,
    description: m.description,
    createdAt: m.createdAt.toISOString(),
    updatedAt: m.updatedAt.toISOString(),
  };
}
