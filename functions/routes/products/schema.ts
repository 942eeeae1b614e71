import { z } from "@hono/zod-openapi";
import type { productLimits, products } from "../../../db/schema";

const code = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{1,63}$/, "UPPER_SNAKE_CASE, 2-64 chars")
  .openapi({ description: "Código único del producto", example: "FARUTECH_VET" });

const limitName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{1,63}$/, "lower_snake_case, 2-64 chars")
  .openapi({ description: "Nombre del límite", example: "storage_gb" });

export const productLimitSchema = z
  .object({
    name: limitName,
    description: z
      .string()
      .max(500)
      .default("")
      .openapi({ description: "Qué mide", example: "Almacenamiento en GB" }),
  })
  .openapi("ProductLimit");

export const productSchema = z
  .object({
    id: z
      .uuid()
      .openapi({ description: "Id del producto", example: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" }),
    code,
    name: z
      .string()
      .openapi({ description: "Nombre comercial", example: "Farutech Vet - Sistema Veterinario" }),
    description: z
      .string()
      .openapi({ description: "Descripción", example: "Gestión de clínicas veterinarias" }),
    version: z.string().openapi({ description: "Versión del software", example: "1.0.0" }),
    limits: z
      .array(productLimitSchema)
      .openapi({ description: "Límites numéricos que reconoce (max_users siempre)" }),
    createdAt: z
      .string()
      .openapi({ description: "Creación (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
    updatedAt: z.string().openapi({
      description: "Última modificación (ISO 8601)",
      example: "2026-01-24T13:20:00.000Z",
    }),
  })
  .openapi("Product");

export const createProductSchema = z
  .strictObject({
    code,
    name: z
      .string()
      .min(1)
      .max(200)
      .openapi({ description: "Nombre comercial", example: "Farutech POS" }),
    description: z
      .string()
      .max(2000)
      .default("")
      .openapi({ description: "Descripción", example: "Punto de venta" }),
    version: z
      .string()
      .min(1)
      .max(40)
      .default("1.0.0")
      .openapi({ description: "Versión del software", example: "1.0.0" }),
    limits: z
      .array(productLimitSchema)
      .max(50)
      // Un nombre repetido es un error del cuerpo que lo nombra, no un 409 de la clave primaria.
      .superRefine((limits, ctx) => {
        const seen = new Set<string>();
        limits.forEach((l, i) => {
          if (seen.has(l.name)) {
            ctx.addIssue({ code: "custom", path: [i, "name"], message: "Duplicated limit name" });
          }
          seen.add(l.name);
        });
      })
      .default([])
      .openapi({
        description: "Límites además de max_users",
        example: [{ name: "registers", description: "Cajas" }],
      }),
  })
  .openapi("CreateProduct");

export const updateProductSchema = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .openapi({ description: "Nombre comercial", example: "Farutech POS" }),
    description: z
      .string()
      .max(2000)
      .optional()
      .openapi({ description: "Descripción", example: "Punto de venta" }),
    version: z
      .string()
      .min(1)
      .max(40)
      .optional()
      .openapi({ description: "Versión del software", example: "1.1.0" }),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), {
    message: "At least one of name, description or version is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateProduct", { minProperties: 1 });

export const addLimitSchema = z
  .strictObject({
    name: limitName,
    description: z
      .string()
      .max(500)
      .default("")
      .openapi({ description: "Qué mide", example: "Cajas registradoras" }),
  })
  .openapi("AddProductLimit");

export type ProductRow = typeof products.$inferSelect;
export type ProductLimitRow = typeof productLimits.$inferSelect;

export function toProduct(p: ProductRow, limits: ProductLimitRow[]) {
  return {
    id: p.id,
    code: p.code,
    name: p.name,
    description: p.description,
    version: p.version,
    limits: limits
      .filter((l) => l.productId === p.id)
      .map((l) => ({ name: l.name, description: l.description }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}
