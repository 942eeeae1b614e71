import { z } from "@hono/zod-openapi";
import type { subscriptionFeatureOverrides, subscriptions } from "../../../db/schema";
import { instant } from "../instant";

export const subscriptionStatuses = ["pending", "active", "suspended", "cancelled"] as const;

const uuid = (description: string, example: string) => z.uuid().openapi({ description, example });
const timestamp = (description: string) =>
  z.string().openapi({ description, example: "2026-01-24T13:20:00.000Z" });

export const subscriptionSchema = z
  .object({
    id: uuid("Id de la suscripción", "3b2a1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"),
    customerId: uuid("Cliente (el de la instancia)", "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f"),
    tenantInstanceId: uuid("Instancia suscrita (1:1)", "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"),
    productId: uuid("Producto de la instancia y del plan", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
    planId: uuid("Plan contratado", "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f"),
    planCode: z.string().openapi({ description: "Código del plan", example: "VET_PROFESSIONAL" }),
    status: z
      .enum(subscriptionStatuses)
      .openapi({ description: "Estado de la suscripción", example: "active" }),
    startsAt: timestamp("Inicio de la vigencia (ISO 8601)"),
    expiresAt: z.string().nullable().openapi({
      description: "Fin de la vigencia (ISO 8601); null si no vence",
      example: "2027-01-01T00:00:00.000Z",
    }),
    createdAt: timestamp("Creación (ISO 8601)"),
    updatedAt: timestamp("Última modificación (ISO 8601)"),
  })
  .openapi("Subscription");

export const createSubscriptionSchema = z
  .strictObject({
    tenantInstanceId: uuid(
      "Instancia aún sin suscripción (cliente y producto salen de ella)",
      "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    ),
    planId: uuid(
      "Plan del mismo producto que la instancia",
      "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f",
    ),
    status: z
      .enum(["pending", "active", "suspended"])
      .default("pending")
      .openapi({ description: "Estado inicial (pending por defecto)", example: "active" }),
    startsAt: instant(
      "Inicio de la vigencia; ahora si se omite",
      "2026-02-01T00:00:00Z",
    ).optional(),
    expiresAt: instant("Fin de la vigencia; posterior a startsAt", "2027-02-01T00:00:00Z")
      .nullable()
      .optional(),
  })
  .openapi("CreateSubscription");

export const updateSubscriptionSchema = z
  .strictObject({
    planId: uuid(
      "Nuevo plan, del mismo producto",
      "9f8e7d6c-5b4a-4c3d-8e1f-0a9b8c7d6e5f",
    ).optional(),
    status: z
      .enum(subscriptionStatuses)
      .optional()
      .openapi({ description: "Nuevo estado", example: "suspended" }),
    startsAt: instant("Inicio de la vigencia", "2026-02-01T00:00:00Z").optional(),
    expiresAt: instant(
      "Fin de la vigencia (null: no vence); posterior a startsAt",
      "2027-02-01T00:00:00Z",
    )
      .nullable()
      .optional(),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), {
    message: "At least one of planId, status, startsAt or expiresAt is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateSubscription", { minProperties: 1 });

export type CreateSubscriptionInput = z.infer<typeof createSubscriptionSchema>;
export type UpdateSubscriptionInput = z.infer<typeof updateSubscriptionSchema>;
export type SubscriptionRow = typeof subscriptions.$inferSelect;

export function toSubscription(row: SubscriptionRow, planCode: string) {
  return {
    id: row.id,
    customerId: row.customerId,
    tenantInstanceId: row.tenantInstanceId,
    productId: row.productId,
    planId: row.planId,
    planCode,
    status: row.status,
    startsAt: row.startsAt.toISOString(),
    expiresAt: row.expiresAt ? row.expiresAt.toISOString() : null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

// ---------- Overrides ----------

const featureCode = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{1,63}$/, "UPPER_SNAKE_CASE feature code")
  .openapi({ description: "Código de una feature del producto", example: "ADVANCED_REPORTS" });
const limitName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{1,63}$/, "lower_snake_case limit name")
  .openapi({ description: "Nombre de un límite del producto", example: "max_users" });

export const overrideSchema = z
  .object({
    id: uuid("Id del override", "6e5d4c3b-2a19-4f8e-9d7c-6b5a4f3e2d1c"),
    subscriptionId: uuid("Suscripción", "3b2a1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"),
    kind: z.enum(["feature", "limit"]).openapi({
      description: "feature: Enable/Disable; limit: valor numérico",
      example: "feature",
    }),
    featureCode: z
      .string()
      .nullable()
      .openapi({ description: "Feature (si kind=feature)", example: "ADVANCED_REPORTS" }),
    type: z
      .enum(["enable", "disable"])
      .nullable()
      .openapi({ description: "Enable o Disable (si kind=feature)", example: "enable" }),
    limitName: z
      .string()
      .nullable()
      .openapi({ description: "Límite (si kind=limit)", example: null }),
    value: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "Valor del límite (si kind=limit)", example: null }),
    createdAt: timestamp("Creación (ISO 8601)"),
  })
  .openapi("SubscriptionOverride");

// Un solo objeto con refinamiento (no una unión): así cada error nombra su campo.
export const createOverrideSchema = z
  .strictObject({
    featureCode: featureCode.optional(),
    type: z.enum(["enable", "disable"]).optional().openapi({
      description: "Con featureCode: enable la activa, disable la apaga (siempre gana)",
      example: "disable",
    }),
    limitName: limitName.optional(),
    value: z
      .number()
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .openapi({ description: "Con limitName: valor que reemplaza al del plan", example: 100 }),
  })
  .superRefine((v, ctx) => {
    const feature = v.featureCode !== undefined || v.type !== undefined;
    const limit = v.limitName !== undefined || v.value !== undefined;
    const need = (path: string, message: string) =>
      ctx.addIssue({ code: "custom", path: [path], message });
    if (feature && limit) {
      need("limitName", "Give either featureCode and type, or limitName and value, not both");
    } else if (feature) {
      if (v.featureCode === undefined) need("featureCode", "Required together with type");
      if (v.type === undefined) need("type", "Required together with featureCode");
    } else if (limit) {
      if (v.limitName === undefined) need("limitName", "Required together with value");
      if (v.value === undefined) need("value", "Required together with limitName");
    } else {
      need("featureCode", "Give either featureCode and type, or limitName and value");
    }
  })
  .openapi("CreateSubscriptionOverride", {
    description:
      "Override de una feature ({featureCode, type}) o de un límite ({limitName, value}), " +
      "nunca ambos",
    example: { featureCode: "ADVANCED_REPORTS", type: "enable" },
  });

export type CreateOverrideBody = z.infer<typeof createOverrideSchema>;
export type CreateOverrideInput =
  | { featureCode: string; type: "enable" | "disable" }
  | { limitName: string; value: number };

/** El cuerpo ya validado, como unión discriminada para el servicio. */
export function overrideInputOf(body: CreateOverrideBody): CreateOverrideInput {
  if (body.featureCode !== undefined && body.type !== undefined) {
    return { featureCode: body.featureCode, type: body.type };
  }
  if (body.limitName !== undefined && body.value !== undefined) {
    return { limitName: body.limitName, value: body.value };
  }
  throw new Error("override body passed validation without a complete shape");
}

export type OverrideRow = typeof subscriptionFeatureOverrides.$inferSelect;

export function toOverride(row: OverrideRow) {
  return {
    id: row.id,
    subscriptionId: row.subscriptionId,
    kind: row.featureCode ? ("feature" as const) : ("limit" as const),
    featureCode: row.featureCode,
    type: row.overrideType,
    limitName: row.limitName,
    value: row.value,
    createdAt: row.createdAt.toISOString(),
  };
}
