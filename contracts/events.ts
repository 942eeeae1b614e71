import { z } from "zod";

export const eventEnvelopeSchema = z.object({
  id: z.uuid(),
  type: z.string(),
  occurredAt: z.string(),
  correlationId: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
});
export type EventEnvelope = z.infer<typeof eventEnvelopeSchema>;

export const provisioningTaskMessageSchema = z.object({
  taskId: z.uuid(),
  tenantInstanceId: z.uuid(),
  kind: z.enum(["provision", "deprovision", "update_features", "rotate_credentials"]),
});
export type ProvisioningTaskMessage = z.infer<typeof provisioningTaskMessageSchema>;

export const welcomeNotificationSchema = z.object({
  tenantInstanceId: z.uuid(),
  customerId: z.uuid(),
  /** Ya no se publica (dato derivado del nombre legal); se acepta en mensajes viejos. */
  tenantCode: z.string().optional(),
});

export const provisioningFailedNotificationSchema = z.object({
  taskId: z.uuid(),
  tenantInstanceId: z.uuid(),
  error: z.string(),
  deliveries: z.number().int(),
});

/**
 * Aviso a operaciones de un mensaje en la DLQ de cualquier dominio. Solo metadatos: el payload
 * (con datos personales) se consulta en la DLQ.
 */
export const deadLetteredNotificationSchema = z.object({
  domain: z.string(),
  worker: z.string(),
  subject: z.string(),
  streamSequence: z.number().int(),
  eventId: z.string().nullable(),
  eventType: z.string().nullable(),
  deliveries: z.number().int(),
  errorKind: z.enum(["permanent", "transient"]),
  error: z.string(),
});

export const notificationSchema = z.union([
  welcomeNotificationSchema,
  provisioningFailedNotificationSchema,
  deadLetteredNotificationSchema,
]);

/** Primer periodo facturable: antes no había Farutech (y Date.UTC lee 00xx como 19xx). */
export const FIRST_BILLING_PERIOD = "2000-01";

/**
 * ¿Se puede facturar el periodo (YYYY-MM)? Un mes ya cerrado, desde FIRST_BILLING_PERIOD. La
 * factura cobra lo que estuvo activo en el mes con el plan y el precio del cierre, y no se
 * rehace: un mes abierto (o uno por venir) quedaría facturado con lo que aún puede cambiar
 * (una baja o un cambio de plan antes de fin de mes).
 */
export function isBillablePeriod(period: string, now = new Date()): boolean {
  if (!/^[0-9]{4}-(0[1-9]|1[0-2])$/.test(period)) return false;
  return period >= FIRST_BILLING_PERIOD && period <= lastClosedPeriod(now);
}

/** El último mes cerrado (YYYY-MM, UTC): el anterior al de `now`. */
export function lastClosedPeriod(now = new Date()): string {
  const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  return `${last.getUTCFullYear()}-${String(last.getUTCMonth() + 1).padStart(2, "0")}`;
}

// Con la hora del worker, que nunca es anterior a la de la petición: lo aceptado sigue valiendo.
export const billingCycleSchema = z.object({
  period: z
    .string()
    .refine(
      (p) => isBillablePeriod(p),
      `period must be a closed month (YYYY-MM) from ${FIRST_BILLING_PERIOD} to last month`,
    ),
});

export const entitlementsChangedSchema = z.object({
  tenantInstanceId: z.uuid(),
  reason: z.string(),
});
