import { eq } from "drizzle-orm";
import type { z } from "zod";
import {
  type deadLetteredNotificationSchema,
  type EventEnvelope,
  notificationSchema,
} from "../../contracts/events";
import type { Logger } from "../../core/logger";
import { customers, products, tenantInstances } from "../../db/schema";
import type { Database } from "../../db/types";
import type { WorkerDefinition } from "../runtime/consumer";
import { PermanentError } from "../runtime/errors";
import type { Mailer } from "./mailer";

export const NOTIFICATION_WORKER = "notification-worker";

type Notification = z.infer<typeof notificationSchema>;

export interface NotificationWorkerDeps {
  db: Database;
  mailer: Mailer;
  /** Buzón de operaciones para fallos de provisioning y tareas en la DLQ. */
  opsEmail: string;
}

async function instanceContext(db: Database, tenantInstanceId: string) {
  const [row] = await db
    .select({
      tenantCode: tenantInstances.tenantCode,
      subdomainUrl: tenantInstances.subdomainUrl,
      productName: products.name,
      customerName: customers.legalName,
      billingEmail: customers.billingEmail,
      erasedAt: customers.erasedAt,
    })
    .from(tenantInstances)
    .innerJoin(customers, eq(customers.id, tenantInstances.customerId))
    .innerJoin(products, eq(products.id, tenantInstances.productId))
    .where(eq(tenantInstances.id, tenantInstanceId));
  if (!row) throw new PermanentError(`tenant instance ${tenantInstanceId} does not exist`);
  return row;
}

type DeadLetteredNotification = z.infer<typeof deadLetteredNotificationSchema>;

/** Aviso genérico de la DLQ: solo metadatos, el payload se mira con las herramientas de la DLQ. */
function deadLetterMail(data: DeadLetteredNotification, envelope: EventEnvelope) {
  return {
    subject: `[Farutech] Mensaje en DLQ: ${data.domain} (${data.worker})`,
    text: [
      `Un mensaje de ${data.domain} quedó en la DLQ tras ${data.deliveries} entrega(s) (error ${data.errorKind === "permanent" ? "permanente" : "transitorio"}).`,
      `Worker: ${data.worker}`,
      `Subject: ${data.subject} (secuencia ${data.streamSequence})`,
      `Evento: ${data.eventId ?? "-"} (${data.eventType ?? "sobre ilegible"})`,
      `Correlación: ${envelope.correlationId ?? "-"}`,
      `Último error: ${data.error}`,
      "",
      `Inspeccione y reprocese: npm run dlq -- list (o GET /api/dlq?domain=${data.domain})`,
    ].join("\n"),
  };
}

/**
 * Sin SMTP_URL el correo no sale a ningún sitio: se dice en un warn por correo (solo el tipo; el
 * destinatario y el cuerpo son datos personales y no van al log).
 */
function logSent(mailer: Mailer, logger: Logger, notification: string): void {
  if (mailer.logOnly) logger.warn({ notification }, "notification not sent: SMTP_URL is not set");
  else logger.info({ notification }, "notification sent");
}

// Correo de bienvenida al cliente y alertas a operaciones (seed 001 §4, NotificationWorker).
export function notificationWorker(deps: NotificationWorkerDeps): WorkerDefinition<Notification> {
  return {
    name: NOTIFICATION_WORKER,
    domain: "notifications",
    filterSubject: "notifications.tasks.>",
    schema: notificationSchema,
    // El aviso de un provisioning fallido lleva su tarea: operaciones la sigue con el mismo filtro.
    logFields: (data) => ({
      ...("taskId" in data ? { taskId: data.taskId } : {}),
      ...("tenantInstanceId" in data ? { tenantInstanceId: data.tenantInstanceId } : {}),
    }),
    async handle(ctx) {
      const data = ctx.data;
      if ("domain" in data) {
        await deps.mailer.send({
          to: deps.opsEmail,
          ...deadLetterMail(data, ctx.envelope),
          messageId: ctx.envelope.id,
          signal: ctx.signal,
        });
        logSent(deps.mailer, ctx.logger, "dead_lettered");
        return;
      }
      const info = await instanceContext(deps.db, data.tenantInstanceId);
      if ("customerId" in data) {
        // Un cliente borrado por GDPR ya no recibe correos.
        if (info.erasedAt) {
          ctx.logger.info("welcome skipped: customer erased");
          return;
        }
        await deps.mailer.send({
          to: info.billingEmail,
          subject: `Bienvenido a ${info.productName}`,
          text: [
            `Hola ${info.customerName},`,
            "",
            `Su instancia ${info.tenantCode} de ${info.productName} está lista en https://${info.subdomainUrl}.`,
            "",
            "Equipo Farutech",
          ].join("\n"),
          messageId: ctx.envelope.id,
          signal: ctx.signal,
        });
      } else {
        await deps.mailer.send({
          to: deps.opsEmail,
          subject: `[Farutech] Provisioning en DLQ: ${info.tenantCode}`,
          text: [
            `La tarea ${data.taskId} de la instancia ${info.tenantCode} (${info.customerName})`,
            `falló ${data.deliveries} veces y quedó en la DLQ.`,
            `Último error: ${data.error}`,
            `Correlación: ${ctx.envelope.correlationId ?? "-"}`,
            "",
            "Inspeccione y reprocese: npm run dlq -- list",
          ].join("\n"),
          messageId: ctx.envelope.id,
          signal: ctx.signal,
        });
      }
      logSent(deps.mailer, ctx.logger, "customerId" in data ? "welcome" : "provisioning_failed");
    },
  };
}
