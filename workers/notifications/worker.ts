import { eq } from "drizzle-orm";
import type { z } from "zod";
import {
  deadLetteredNotificationSchema,
  type EventEnvelope,
  notificationSchema,
  provisioningFailedNotificationSchema,
  welcomeNotificationSchema,
} from "../../contracts/events";
import { subjects } from "../../contracts/streams";
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

const BY_SUBJECT = {
  [subjects.welcomeNotification]: ["welcome", welcomeNotificationSchema],
  [subjects.provisioningFailedNotification]: [
    "provisioning_failed",
    provisioningFailedNotificationSchema,
  ],
  [subjects.deadLetteredNotification]: ["dead_lettered", deadLetteredNotificationSchema],
} as const;

type Parsed =
  | { kind: "welcome"; notification: z.infer<typeof welcomeNotificationSchema> }
  | {
      kind: "provisioning_failed";
      notification: z.infer<typeof provisioningFailedNotificationSchema>;
    }
  | { kind: "dead_lettered"; notification: DeadLetteredNotification };

/**
 * Qué aviso es lo dice el subject, no la forma de los datos: uno de un tipo nuevo (de una versión
 * más nueva) que trajera tenantInstanceId y customerId salía como bienvenida. Un subject que esta
 * versión no conoce se reintenta (otro worker, ya actualizado, puede tomarlo) hasta la DLQ.
 */
function parseFor(subject: string, data: unknown): Parsed {
  const entry = (BY_SUBJECT as Record<string, (typeof BY_SUBJECT)[keyof typeof BY_SUBJECT]>)[
    subject
  ];
  if (!entry) {
    throw new Error(`no notification for subject ${subject} in this worker version`);
  }
  const [kind, schema] = entry;
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    throw new PermanentError(`notification data does not match its subject ${subject}`);
  }
  return { kind, notification: parsed.data } as Parsed;
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
      const data = parseFor(ctx.subject, ctx.data);
      if (data.kind === "dead_lettered") {
        await deps.mailer.send({
          to: deps.opsEmail,
          ...deadLetterMail(data.notification, ctx.envelope),
          messageId: ctx.envelope.id,
          signal: ctx.signal,
        });
        logSent(deps.mailer, ctx.logger, "dead_lettered");
        return;
      }
      const info = await instanceContext(deps.db, data.notification.tenantInstanceId);
      if (data.kind === "welcome") {
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
        const failure = data.notification;
        await deps.mailer.send({
          to: deps.opsEmail,
          subject: `[Farutech] Provisioning en DLQ: ${info.tenantCode}`,
          text: [
            `La tarea ${failure.taskId} de la instancia ${info.tenantCode} (${info.customerName})`,
            `falló ${failure.deliveries} veces y quedó en la DLQ.`,
            `Último error: ${failure.error}`,
            `Correlación: ${ctx.envelope.correlationId ?? "-"}`,
            "",
            "Inspeccione y reprocese: npm run dlq -- list",
          ].join("\n"),
          messageId: ctx.envelope.id,
          signal: ctx.signal,
        });
      }
      logSent(deps.mailer, ctx.logger, data.kind);
    },
  };
}
