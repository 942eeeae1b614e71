// Streams y subjects de JetStream (seed 001 §4): cada dominio tiene sus tareas y su DLQ.
export const domains = ["provisioning", "notifications", "billing", "integration"] as const;
export type Domain = (typeof domains)[number];

export interface StreamSpec {
  name: string;
  domain: Domain;
  tasksSubject: string;
  dlqSubject: string;
}

export const streams: Record<Domain, StreamSpec> = {
  provisioning: {
    name: "PROVISIONING",
    domain: "provisioning",
    tasksSubject: "provisioning.tasks.>",
    dlqSubject: "provisioning.dlq",
  },
  notifications: {
    name: "NOTIFICATIONS",
    domain: "notifications",
    tasksSubject: "notifications.tasks.>",
    dlqSubject: "notifications.dlq",
  },
  billing: {
    name: "BILLING",
    domain: "billing",
    tasksSubject: "billing.tasks.>",
    dlqSubject: "billing.dlq",
  },
  integration: {
    name: "INTEGRATION",
    domain: "integration",
    tasksSubject: "integration.tasks.>",
    dlqSubject: "integration.dlq",
  },
};

/**
 * Cuánto guarda JetStream un mensaje de tareas o de DLQ. Sin tope, cada tarea publicada quedaba en
 * disco para siempre; un mes cubre de sobra reintentos y una caída larga de los workers (la DLQ
 * además queda en dlq_entries). Las marcas de idempotencia viven un poco más que el mensaje.
 */
export const TASK_MESSAGE_RETENTION_DAYS = 30;

/**
 * Advisories MAX_DELIVERIES de nuestros streams, guardados en un stream propio: si ningún worker
 * escucha en ese momento o la base no responde, el advisory espera y no se pierde el mensaje.
 */
export const advisoryStream = {
  name: "FARUTECH_ADVISORIES",
  subjectFor: (stream: string, consumer: string) =>
    `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${consumer}`,
} as const;

export const subjects = {
  provision: "provisioning.tasks.provision",
  deprovision: "provisioning.tasks.deprovision",
  updateFeatures: "provisioning.tasks.update_features",
  rotateCredentials: "provisioning.tasks.rotate_credentials",
  welcomeNotification: "notifications.tasks.welcome",
  provisioningFailedNotification: "notifications.tasks.provisioning_failed",
  deadLetteredNotification: "notifications.tasks.dead_lettered",
  entitlementsChanged: "integration.tasks.entitlements_changed",
  billingCycle: "billing.tasks.cycle",
} as const;

/** Eventos de dominio de cada mutación del plano de control (entidad y acción). */
export function domainEventSubject(entity: string, action: string): string {
  return `integration.tasks.${entity}.${action}`;
}

/** Cabeceras propias que acompañan a cada mensaje (además de Nats-Msg-Id). */
export const headers = {
  correlationId: "Farutech-Correlation-Id",
  eventType: "Farutech-Event-Type",
  originalSubject: "Farutech-Original-Subject",
  streamSequence: "Farutech-Stream-Sequence",
  deliveries: "Farutech-Deliveries",
  lastError: "Farutech-Last-Error",
  errorKind: "Farutech-Error-Kind",
  /** Intentos fallidos de copias anteriores del mensaje (devuelto al broker en un apagado). */
  priorAttempts: "Farutech-Prior-Attempts",
} as const;
