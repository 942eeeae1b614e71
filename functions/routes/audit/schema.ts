import { z } from "@hono/zod-openapi";
import { paginationQuery } from "../../openapi";
import { instant } from "../instant";

const text = (description: string, example: string) =>
  z.string().min(1).max(200).optional().openapi({ description, example });

export const auditQuerySchema = paginationQuery.extend({
  entityType: text("Tipo de entidad", "tenant_instance"),
  entityId: text("Id de la entidad", "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"),
  actor: text("Quién actuó (sub del token o worker:…)", "adm_Q2x9vT4kLm8pWz1a"),
  action: text("Acción", "tenant_instance.suspended"),
  correlationId: text("Correlación de la petición o tarea", "crm-order-2026-0001"),
  from: instant("Desde, incluido", "2026-01-01T00:00:00Z").optional(),
  to: instant("Hasta, excluido", "2026-02-01T00:00:00Z").optional(),
});

export const auditEntrySchema = z
  .object({
    id: z.number().int().openapi({ description: "Id creciente de la entrada", example: 1042 }),
    occurredAt: z
      .string()
      .openapi({ description: "Cuándo (ISO 8601)", example: "2026-01-24T13:20:00.000Z" }),
    actor: z.string().openapi({ description: "Quién", example: "adm_Q2x9vT4kLm8pWz1a" }),
    action: z.string().openapi({ description: "Qué", example: "tenant_instance.suspended" }),
    entityType: z.string().openapi({ description: "Tipo de entidad", example: "tenant_instance" }),
    entityId: z.string().openapi({
      description: "Id de la entidad",
      example: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    }),
    before: z
      .unknown()
      .openapi({ description: "Estado anterior (JSON) o null", example: { status: "active" } }),
    after: z
      .unknown()
      .openapi({ description: "Estado posterior (JSON) o null", example: { status: "suspended" } }),
    correlationId: z
      .string()
      .nullable()
      .openapi({ description: "Correlación", example: "3f0c3c1e-2b0a-4c43-9d5b-4b2f3a1f6c10" }),
  })
  .openapi("AuditEntry");
