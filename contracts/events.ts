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
 * Minutos tras el fin de mes antes de facturarlo: las filas llevan la hora en que empezó su
 * transacción, así que una que empezó el día 31 y confirma pasada la medianoche ya tiene que estar
 * a la vista. Ninguna transacción del orquestador dura tanto.
 */
export const BILLING_CLOSE_GRACE_MINUTES = 10;

export const PERIOD_FORMAT = /^[0-9]{4}-(0[1-9]|1[0-2])$/;

/** Un mes bien escrito (YYYY-MM) desde FIRST_BILLING_PERIOD; si ya cerró lo dice la base. */
export function isPeriodFormat(period: string): boolean {
  return PERIOD_FORMAT.test(period) && period >= FIRST_BILLING_PERIOD;
}

/**
 * ¿Se puede facturar el periodo (YYYY-MM) a la hora `now` (la de la base)? Un mes ya cerrado
 * (más el margen), desde FIRST_BILLING_PERIOD. La factura cobra lo que estuvo activo en el mes con
 * el plan y el precio del cierre, y no se rehace: un mes abierto (o uno por venir) quedaría
 * facturado con lo que aún puede cambiar (una baja o un cambio de plan antes de fin de mes).
 */
export function isBillablePeriod(period: string, now: Date): boolean {
  return isPeriodFormat(period) && period <= lastClosedPeriod(now);
}

/** El último mes facturable (YYYY-MM, UTC) a la hora `now`: el anterior, pasado el margen. */
export function lastClosedPeriod(now = new Date()): string {
  const t = new Date(now.getTime() - BILLING_CLOSE_GRACE_MINUTES * 60_000);
  const last = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth() - 1, 1));
  return `${last.getUTCFullYear()}-${String(last.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** Inicio y fin (excluido) del periodo YYYY-MM, en UTC. */
export function periodBounds(period: string): { start: Date; end: Date } {
  const [y, m] = period.split("-").map(Number);
  const start = new Date(Date.UTC(y ?? 1970, (m ?? 1) - 1, 1));
  const end = new Date(Date.UTC(y ?? 1970, m ?? 1, 1));
  return { start, end };
}

/** Desde cuándo se puede facturar el periodo (fin de mes más el margen). */
export function periodClosesAt(period: string): Date {
  return new Date(periodBounds(period).end.getTime() + BILLING_CLOSE_GRACE_MINUTES * 60_000);
}

// Solo la forma: si el mes ya cerró lo decide el worker con el reloj de la base (el del host
// puede ir atrasado o adelantado respecto del de la API que lo aceptó).
export const billingCycleSchema = z.object({
  period: z
    .string()
    .refine(isPeriodFormat, `period must be a month (YYYY-MM) from ${FIRST_BILLING_PERIOD}`),
});

export const entitlementsChangedSchema = z.object({
  tenantInstanceId: z.uuid(),
  reason: z.string(),
});
