import { z } from "@hono/zod-openapi";

export const customerSchema = z
  .object({
    id: z.uuid().openapi({ example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f" }),
    legalName: z.string().openapi({ description: "Razón social", example: "Grupo Éxito S.A." }),
    taxId: z.string().openapi({
      description: "Identificación tributaria, única por país",
      example: "890900608-9",
    }),
    billingEmail: z.string().openapi({ example: "facturacion@grupoexito.example" }),
    country: z.string().openapi({ description: "ISO 3166-1 alfa-2", example: "CO" }),
    isActive: z.boolean().openapi({ example: true }),
    createdAt: z.string().openapi({ example: "2026-01-24T13:20:00.000Z" }),
  })
  .openapi("Customer");

export function toCustomer(row: {
  id: string;
  legalName: string;
  taxId: string;
  billingEmail: string;
  country: string;
  isActive: boolean;
  createdAt: Date;
}) {
  return {
    id: row.id,
    legalName: row.legalName,
    taxId: row.taxId,
    billingEmail: row.billingEmail,
    country: row.country,
    isActive: row.isActive,
    createdAt: row.createdAt.toISOString(),
  };
}
