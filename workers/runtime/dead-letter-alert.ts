import type { z } from "zod";
import type { deadLetteredNotificationSchema, EventEnvelope } from "../../contracts/events";
import { type Domain, subjects } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { hashedUuid } from "../../core/hashed-id";
import { eventFields, type Logger } from "../../core/logger";

export interface DeadLetterAlert {
  domain: Domain;
  worker: string;
  /** Stream del mensaje muerto: con la secuencia lo identifica en la DLQ. */
  stream: string;
  subject: string;
  streamSequence: number;
  envelope: EventEnvelope | undefined;
  deliveries: number;
  error: string;
  permanent: boolean;
}

/**
 * Id estable por mensaje muerto: si el paso a la DLQ se repite (reintento, advisory), JetStream
 * descarta la copia por Nats-Msg-Id y el NotificationWorker por id de evento; un solo correo.
 * El id del evento distingue una secuencia reutilizada tras recrear el stream.
 */
export function deadLetterAlertId(alert: DeadLetterAlert): string {
  return hashedUuid(
    `dead-letter-alert:${alert.stream}:${alert.streamSequence}:${alert.envelope?.id ?? ""}`,
  );
}

/**
 * Avisa a operaciones (NotificationWorker, correo a OPS_ALERT_EMAIL) de un mensaje en la DLQ.
 * Publicación confirmada por JetStream: si falla, lanza y el paso a la DLQ se reintenta entero.
 * Las notificaciones no se avisan a sí mismas (un correo que no sale no puede avisar de que no
 * sale): quedan en el log de error y en la métrica dead_lettered.
 */
export async function alertOperators(
  bus: Bus,
  alert: DeadLetterAlert,
  logger: Logger,
): Promise<void> {
  // Desde el consumer, el logger ya lleva la secuencia, el evento y la correlación del mensaje.
  const fields = eventFields(logger, {
    domain: alert.domain,
    streamSequence: alert.streamSequence,
    eventId: alert.envelope?.id,
    correlationId: alert.envelope?.correlationId,
  });
  if (alert.domain === "notifications") {
    logger.error(
      { ...fields, deliveries: alert.deliveries, error: alert.error },
      "notification dead-lettered; operators are not e-mailed for the notifications domain (see the dead_lettered metric and the DLQ)",
    );
    return;
  }
  const data: z.infer<typeof deadLetteredNotificationSchema> = {
    domain: alert.domain,
    worker: alert.worker,
    subject: alert.subject,
    streamSequence: alert.streamSequence,
    eventId: alert.envelope?.id ?? null,
    eventType: alert.envelope?.type ?? null,
    deliveries: alert.deliveries,
    errorKind: alert.permanent ? "permanent" : "transient",
    // Como la cabecera de la DLQ: el error completo queda en dlq_entries.
    error: alert.error.slice(0, 500),
  };
  const id = deadLetterAlertId(alert);
  await bus.publishEvent(subjects.deadLetteredNotification, {
    id,
    type: "notification.dead_lettered",
    occurredAt: new Date().toISOString(),
    correlationId: alert.envelope?.correlationId ?? null,
    data,
  });
  logger.info({ ...fields, alertEventId: id }, "operators alerted of a dead-lettered message");
}
