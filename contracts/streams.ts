// Streams y subjects de JetStream (seed 001 §4): cada dominio tiene sus tareas y su DLQ.
export const domains = ["provisioning", "notifications", "billing", "integration"] as const;
export type Domain = (typeof domains)[number];

export interface StreamSpec {
  name: string;
  domain: Domain;
  tasksSubject: string;
  dlqSubject: string;
  /**
   * Tope propio del stream. Sin él, todos comparten el max_file_store del servidor y uno lleno
   * (el de eventos de dominio, p. ej.) deja sin lugar a los demás: ni tareas ni DLQ se publican.
   */
  maxBytes: number;
  /**
   * Lleno: "new" rechaza lo nuevo (queda en el outbox y se reintenta: una tarea sin procesar no
   * se pierde); "old" descarta lo más viejo (eventos de dominio, que nadie más espera).
   */
  discard: "new" | "old";
}

const MiB = 1024 * 1024;

export const streams: Record<Domain, StreamSpec> = {
  provisioning: {
    name: "PROVISIONING",
    domain: "provisioning",
    tasksSubject: "provisioning.tasks.>",
    dlqSubject: "provisioning.dlq",
    maxBytes: 256 * MiB,
    discard: "new",
  },
  notifications: {
    name: "NOTIFICATIONS",
    domain: "notifications",
    tasksSubject: "notifications.tasks.>",
    dlqSubject: "notifications.dlq",
    maxBytes: 256 * MiB,
    discard: "new",
  },
  billing: {
    name: "BILLING",
    domain: "billing",
    tasksSubject: "billing.tasks.>",
    dlqSubject: "billing.dlq",
    maxBytes: 64 * MiB,
    discard: "new",
  },
  integration: {
    name: "INTEGRATION",
    domain: "integration",
    tasksSubject: "integration.tasks.>",
    dlqSubject: "integration.dlq",
    maxBytes: 1024 * MiB,
    discard: "old",
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
// Los topes suman 1,6 GiB: caben en el max_file_store más chico que se usa (2 GB, nats-server de
// `npm start` y de las pruebas); JetStream reserva el tope de cada stream al crearlo.
export const advisoryStream = {
  name: "FARUTECH_ADVISORIES",
  maxBytes: 64 * MiB,
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
