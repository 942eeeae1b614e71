import { createHash } from "node:crypto";
import {
  AckPolicy,
  type Consumer,
  type ConsumerMessages,
  JetStreamApiError,
  type JsMsg,
} from "@nats-io/jetstream";
import { type MsgHdrs, nanos, headers as natsHeaders } from "@nats-io/nats-core";
import { z } from "zod";
import { type EventEnvelope, eventEnvelopeSchema } from "../../contracts/events";
import { advisoryStream, type Domain, headers, streams } from "../../contracts/streams";
import { type Bus, ensureStreams, headerValue } from "../../core/bus";
import { parseJsonOrUndefined } from "../../core/ids";
import type { Logger } from "../../core/logger";
import { afterFailure, MAX_DELIVER, retryDelayMs } from "../../core/retry-policy";
import type { DeadLetterStore } from "../../db/dead-letters";
import type { ProcessedStore } from "../../db/processed";
import { alertOperators } from "./dead-letter-alert";
import { errorMessage, isPermanent, PermanentError } from "./errors";
import type { WorkerMetrics } from "./metrics";

export interface HandlerContext<T> {
  data: T;
  envelope: EventEnvelope;
  subject: string;
  deliveryCount: number;
  logger: Logger;
  /** Extiende el plazo de ack durante pasos largos. */
  heartbeat(): void;
  /**
   * Se aborta cuando el runtime deja de esperar al handler (vence handlerTimeoutMs, o el plazo de
   * drenado al parar el proceso): lo que siga corriendo ya no tiene el mensaje y debe soltar lo
   * que retenga (p. ej. un lease).
   */
  signal: AbortSignal;
}

export interface DeadLetterInfo {
  envelope: EventEnvelope | undefined;
  subject: string;
  streamSequence: number;
  deliveries: number;
  error: string;
  permanent: boolean;
}

export interface DeadLetterHandled {
  operatorsAlerted: boolean;
}

export interface WorkerDefinition<T> {
  /** Nombre del consumer durable (compartido por todos los procesos de este worker). */
  name: string;
  domain: Domain;
  filterSubject: string;
  schema: z.ZodType<T>;
  handle(ctx: HandlerContext<T>): Promise<void>;
  /**
   * Mensaje ya procesado según el estado propio del worker; si existe, sustituye a
   * processed_messages. `attempt` es el intento de esta entrega (sin él, uno posterior al primero).
   */
  alreadyProcessed?(envelope: EventEnvelope, data: T, attempt?: number): Promise<boolean>;
  onRetry?(ctx: HandlerContext<T>, error: string, delayMs: number): Promise<void>;
  /**
   * Efectos propios del worker al pasar un mensaje a la DLQ. Si ya avisó a operaciones con su
   * propio correo (más rico), lo dice y el runtime no manda el aviso genérico.
   */
  onDeadLetter?(info: DeadLetterInfo, data: T | undefined): Promise<DeadLetterHandled | undefined>;
  /** Campos de log propios del mensaje (p. ej. taskId). */
  logFields?(data: T): Record<string, unknown>;
}

export interface WorkerOptions {
  bus: Bus;
  logger: Logger;
  /** Copia consultable de la DLQ (GET /api/dlq, npm run dlq). */
  deadLetters?: DeadLetterStore;
  /** Idempotencia por (consumer, id de evento): una reentrega no repite el trabajo. */
  processed?: ProcessedStore;
  metrics?: WorkerMetrics;
  concurrency?: number;
  ackWaitMs?: number;
  /**
   * Tope de una entrega. Un handler colgado (socket que no responde) latiría para siempre y el
   * mensaje nunca volvería a entregarse: al vencer, la entrega falla como transitoria y se
   * reintenta (los pasos son idempotentes).
   */
  handlerTimeoutMs?: number;
}

export class HandlerTimeoutError extends Error {
  override name = "HandlerTimeoutError";
}

/**
 * Una copia devuelta en un apagado recibe de JetStream un presupuesto nuevo de entregas: si el
 * worker muere en su último intento lógico no llega el advisory y JetStream la reentrega. Esa
 * entrega de más no ejecuta nada: va a la DLQ como lo haría el advisory.
 */
class DeliveryBudgetExhaustedError extends Error {
  override name = "DeliveryBudgetExhaustedError";
}

/** Razón del abort de un handler que seguía en curso al vencer el plazo de drenado. */
export class WorkerStoppingError extends Error {
  override name = "WorkerStoppingError";
}

/**
 * Deja margen bajo el grace period del orquestador (40 s en compose, 45 s en Kubernetes) para
 * cerrar relay, broker y base después de drenar.
 */
export const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;

/** Espera `work` hasta que `signal` se aborte; entonces rechaza con su razón (el trabajo sigue). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Espera `work` como mucho `ms`, o hasta que otro aborte `abort`; al vencer aborta `abort` y
 * rechaza (el trabajo sigue, pero ya no se espera).
 */
async function withTimeout<T>(work: Promise<T>, ms: number, abort: AbortController): Promise<T> {
  const timer = setTimeout(
    () => abort.abort(new HandlerTimeoutError(`handler did not finish within ${ms} ms`)),
    ms,
  );
  try {
    return await untilAborted(work, abort.signal);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Espera con tope para lo que corre tras el handler (marca de procesado, reintento, DLQ): una
 * consulta colgada no puede retener el mensaje latiendo para siempre ni bloquear el apagado.
 */
async function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  work.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface StopOptions {
  /**
   * Cuánto se espera a los handlers en curso. Después sus mensajes se devuelven (nak sin demora)
   * para que otro proceso los tome ya, y se aborta su `ctx.signal`.
   */
  drainTimeoutMs?: number;
}

export interface RunningWorker {
  name: string;
  stop(options?: StopOptions): Promise<void>;
}

/** Un mensaje cuyo handler sigue en curso: al vencer el drenado se devuelve al broker. */
interface HeldMessage {
  msg: JsMsg;
  /** Intento lógico: fallos de copias anteriores más las entregas de esta. */
  attempt: number;
  abort: AbortController;
  released: boolean;
}

export async function ensureConsumer(
  bus: Bus,
  def: Pick<WorkerDefinition<unknown>, "name" | "domain" | "filterSubject">,
  ackWaitMs: number,
): Promise<Consumer> {
  const jsm = await bus.jsm();
  const stream = streams[def.domain].name;
  const config = {
    durable_name: def.name,
    ack_policy: AckPolicy.Explicit,
    max_deliver: MAX_DELIVER,
    ack_wait: nanos(ackWaitMs),
    filter_subject: def.filterSubject,
    max_ack_pending: 1_000,
  };
  try {
    await jsm.consumers.info(stream, def.name);
    await jsm.consumers.update(stream, def.name, {
      max_deliver: config.max_deliver,
      ack_wait: config.ack_wait,
      filter_subject: config.filter_subject,
      max_ack_pending: config.max_ack_pending,
    });
  } catch {
    await jsm.consumers.add(stream, config);
  }
  return bus.js.consumers.get(stream, def.name);
}

interface DeadMessage {
  stream: string;
  data: Uint8Array;
  /** Cabeceras del mensaje original (su correlación sirve aunque el sobre no se pueda leer). */
  headers: MsgHdrs | undefined;
}

/** La correlación del sobre o, si no se pudo leer, la de la cabecera del mensaje original. */
function correlationOf(msg: DeadMessage, info: DeadLetterInfo): string | undefined {
  return info.envelope?.correlationId ?? msg.headers?.get(headers.correlationId) ?? undefined;
}

/** Sin NUL: ni `text` ni `jsonb` de Postgres lo admiten, y un mensaje así no llegaría nunca a la DLQ. */
function storable(text: string): string {
  return text.replaceAll("\u0000", "\uFFFD");
}

function storableOrNull(text: string | undefined): string | null {
  return text ? storable(text) : null;
}

function storableJson(value: unknown): unknown {
  if (typeof value === "string") return storable(value);
  if (Array.isArray(value)) return value.map(storableJson);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [storable(k), storableJson(v)]),
    );
  }
  return value;
}

/**
 * Qué mensaje es: el id de su evento o, si no se pudo leer, un hash de su contenido. Un stream
 * recreado repite secuencias: con la secuencia sola, un mensaje nuevo se tomaría por uno viejo.
 * Mismo cálculo que la migración 0020.
 */
function messageKeyOf(envelope: EventEnvelope | undefined, rawPayload: string): string {
  return envelope?.id ?? createHash("sha256").update(rawPayload, "utf8").digest("hex").slice(0, 32);
}

async function publishDeadLetter(
  bus: Bus,
  msg: DeadMessage,
  info: DeadLetterInfo,
  messageKey: string,
): Promise<void> {
  const h = natsHeaders();
  h.set(headers.originalSubject, info.subject);
  h.set(headers.streamSequence, String(info.streamSequence));
  h.set(headers.deliveries, String(info.deliveries));
  h.set(headers.lastError, headerValue(info.error));
  h.set(headers.errorKind, info.permanent ? "permanent" : "transient");
  const correlationId = correlationOf(msg, info);
  if (correlationId) h.set(headers.correlationId, headerValue(correlationId));
  await bus.js.publish(streams[domainOfStream(msg.stream)].dlqSubject, msg.data, {
    headers: h,
    // Idempotente: el mismo mensaje nunca entra dos veces en la DLQ.
    msgID: `dlq:${msg.stream}:${info.streamSequence}:${messageKey}`,
  });
}

/**
 * DLQ completa: publicación en `<dominio>.dlq`, copia consultable, efectos del worker y aviso a
 * operaciones. Cada paso es idempotente: si algo falla, se repite entero.
 */
async function deadLetter<T>(
  def: WorkerDefinition<T>,
  options: WorkerOptions,
  msg: DeadMessage,
  info: DeadLetterInfo,
  data: T | undefined,
  logger: Logger,
): Promise<void> {
  const rawPayload = storable(new TextDecoder().decode(msg.data));
  const messageKey = messageKeyOf(info.envelope, rawPayload);
  await publishDeadLetter(options.bus, msg, info, messageKey);
  await options.deadLetters?.record({
    domain: def.domain,
    stream: msg.stream,
    streamSequence: info.streamSequence,
    messageKey,
    subject: info.subject,
    eventId: info.envelope?.id ?? null,
    eventType: storableOrNull(info.envelope?.type),
    correlationId: storableOrNull(correlationOf(msg, info)),
    envelope: info.envelope ? storableJson(info.envelope) : null,
    rawPayload,
    error: storable(info.error),
    errorKind: info.permanent ? "permanent" : "transient",
    deliveries: info.deliveries,
  });
  const handled = await def.onDeadLetter?.(info, data);
  if (!handled?.operatorsAlerted) {
    await alertOperators(
      options.bus,
      { ...info, domain: def.domain, worker: def.name, stream: msg.stream },
      logger,
    );
  }
  options.metrics?.deadLettered.inc({ worker: def.name });
}

/** Ya procesado: por el estado propio del worker si lo sabe, si no por processed_messages. */
async function wasProcessed<T>(
  def: WorkerDefinition<T>,
  options: WorkerOptions,
  envelope: EventEnvelope,
  data: T,
  attempt?: number,
): Promise<boolean> {
  if (def.alreadyProcessed) return def.alreadyProcessed(envelope, data, attempt);
  return (await options.processed?.seen(def.name, envelope.id)) ?? false;
}

const maxDeliveriesAdvisorySchema = z.object({
  stream: z.string(),
  consumer: z.string(),
  stream_seq: z.number(),
  deliveries: z.number(),
});

export interface AdvisoryListener {
  stop(): Promise<void>;
}

/**
 * Un worker que muere en su último intento no llega a publicar en la DLQ: JetStream deja de
 * reentregar y emite el advisory MAX_DELIVERIES. El advisory queda en FARUTECH_ADVISORIES y un
 * consumer durable por worker (compartido por sus procesos) lo completa. Si la base o el broker
 * fallan al hacerlo, el advisory se reintenta con la política de siempre y sin tope de entregas:
 * nunca se pierde el mensaje, aunque en ese momento no hubiera ningún worker escuchando.
 */
export async function listenMaxDeliveries<T>(
  def: WorkerDefinition<T>,
  options: WorkerOptions,
  logger: Logger,
): Promise<AdvisoryListener> {
  const stream = streams[def.domain].name;
  const durable = `${def.name}-advisories`;
  const jsm = await options.bus.jsm();
  try {
    await jsm.consumers.info(advisoryStream.name, durable);
  } catch {
    await jsm.consumers.add(advisoryStream.name, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: advisoryStream.subjectFor(stream, def.name),
      max_deliver: -1,
      ack_wait: nanos(30_000),
    });
  }
  const consumer = await options.bus.js.consumers.get(advisoryStream.name, durable);
  const messages = await consumer.consume({ max_messages: 16 });
  const loop = (async () => {
    for await (const m of messages) {
      // Un advisory ilegible no mejora reintentándolo: sin stream_seq no hay mensaje que llevar a
      // la DLQ. Se registra y se termina en vez de reintentarlo para siempre.
      const advisory = maxDeliveriesAdvisorySchema.safeParse(
        parseJsonOrUndefined(new TextDecoder().decode(m.data)),
      );
      if (!advisory.success) {
        logger.error(
          { advisorySequence: m.seq },
          "unreadable MAX_DELIVERIES advisory; terminated without dead-lettering",
        );
        m.term();
        continue;
      }
      try {
        await handleMaxDeliveriesAdvisory(def, options, logger, stream, advisory.data);
        m.ack();
      } catch (err) {
        const delayMs = retryDelayMs(m.info.deliveryCount);
        logger.error(
          { err, attempt: m.info.deliveryCount, delayMs },
          "handling MAX_DELIVERIES advisory failed; will retry",
        );
        m.nak(delayMs);
      }
    }
  })().catch((err: unknown) => logger.error({ err }, "MAX_DELIVERIES listener stopped"));
  return {
    async stop() {
      await messages.close();
      await loop;
    },
  };
}

async function handleMaxDeliveriesAdvisory<T>(
  def: WorkerDefinition<T>,
  options: WorkerOptions,
  logger: Logger,
  stream: string,
  advisory: z.infer<typeof maxDeliveriesAdvisorySchema>,
): Promise<void> {
  const jsm = await options.bus.jsm();
  const stored = await jsm.streams.getMessage(stream, { seq: advisory.stream_seq });
  if (!stored) {
    logger.warn(
      { streamSequence: advisory.stream_seq },
      "MAX_DELIVERIES advisory for a message no longer in the stream; nothing to dead-letter",
    );
    return;
  }
  // Un mensaje que no es JSON también va a la DLQ (con su contenido crudo), no a un bucle.
  const envelope = eventEnvelopeSchema.safeParse(
    parseJsonOrUndefined(new TextDecoder().decode(stored.data)),
  );
  const data = envelope.success ? def.schema.safeParse(envelope.data.data) : undefined;
  // El último intento pudo terminar el trabajo y perder solo el ack: no es un fallo.
  if (
    envelope.success &&
    data?.success &&
    (await wasProcessed(def, options, envelope.data, data.data))
  ) {
    logger.info(
      { streamSequence: advisory.stream_seq, correlationId: envelope.data.correlationId },
      "MAX_DELIVERIES advisory for a message already processed; not dead-lettered",
    );
    return;
  }
  await deadLetter(
    def,
    options,
    { stream, data: stored.data, headers: stored.header },
    {
      envelope: envelope.success ? envelope.data : undefined,
      subject: stored.subject,
      streamSequence: advisory.stream_seq,
      // Con los intentos fallidos de copias anteriores (mensaje devuelto en un apagado).
      deliveries: priorAttemptsOf(stored.header) + advisory.deliveries,
      error: "worker stopped responding on its last delivery (MAX_DELIVERIES advisory)",
      permanent: false,
    },
    data?.success ? data.data : undefined,
    logger,
  );
  logger.error(
    {
      streamSequence: advisory.stream_seq,
      correlationId: envelope.success ? envelope.data.correlationId : undefined,
    },
    "message dead-lettered from MAX_DELIVERIES advisory",
  );
}

function domainOfStream(stream: string): Domain {
  const found = (Object.keys(streams) as Domain[]).find((d) => streams[d].name === stream);
  if (!found) throw new Error(`unknown stream ${stream}`);
  return found;
}

/** Intentos fallidos que trae un mensaje de sus copias anteriores (0 si es el original). */
export function priorAttemptsOf(h: MsgHdrs | undefined): number {
  const n = Number(h?.get(headers.priorAttempts) ?? "0");
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/** Intento lógico de una entrega: fallos de copias anteriores más las entregas de esta copia. */
function attemptOf(msg: JsMsg): number {
  return priorAttemptsOf(msg.headers) + msg.info.deliveryCount;
}

/** Intentos de publicar la copia de un mensaje devuelto (mismo Nats-Msg-Id: repetir es seguro). */
const RELEASE_ATTEMPTS = 3;

/**
 * Devuelve al broker un mensaje que no llegó a fallar (el proceso se apaga). Un nak gastaría una
 * de las 5 entregas de JetStream: tras unos cuantos despliegues seguidos, una tarea sana acabaría
 * en la DLQ. Se publica una copia que cuenta solo los intentos que sí fallaron y se confirma el
 * original. Si la copia no se confirma, no se hace nak: pudo guardarse igual (ack de publicación
 * perdido) y copia y original correrían a la vez; el original vuelve al vencer el ack wait, cuando
 * la copia ya estará hecha y marcada.
 */
async function releaseToBroker(
  bus: Bus,
  msg: JsMsg,
  attempt: number,
  logger: Logger,
): Promise<void> {
  const h = natsHeaders();
  for (const key of msg.headers?.keys() ?? []) {
    // Los de control de JetStream son del original; la copia lleva los suyos.
    if (key.startsWith("Nats-") || key === headers.priorAttempts) continue;
    for (const value of msg.headers?.values(key) ?? []) h.append(key, value);
  }
  h.set(headers.priorAttempts, String(attempt - 1));
  for (let n = 1; ; n++) {
    try {
      await bus.js.publish(msg.subject, msg.data, {
        headers: h,
        // Reintentos y liberaciones repetidas (ack perdido) se descartan por este id.
        msgID: `released:${msg.info.stream}:${msg.seq}`,
        timeout: 2_000,
      });
      msg.ack();
      return;
    } catch (err) {
      if (n >= RELEASE_ATTEMPTS) {
        logger.warn(
          { err, streamSequence: msg.seq },
          "could not re-queue a released message; it returns when its ack wait expires (uses one delivery)",
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 200 * n));
    }
  }
}

/**
 * Tope de cada paso tras el handler (marca de procesado, reintento, DLQ). Holgado: el paso de DLQ
 * de provisioning puede esperar a que venza el lease de otra ejecución (30 s).
 */
export const BOOKKEEPING_TIMEOUT_MS = 60_000;

/** Intentos de guardar la marca de procesado antes de confirmar sin ella. */
export const MARK_ATTEMPTS = 3;

/**
 * Guarda la marca de un mensaje cuyo handler ya terminó bien. Nunca lanza: reintenta un momento
 * (latiendo) y, si la base sigue fallando, confirma igual. Sin marca, solo una reentrega tardía
 * repetiría el trabajo; tratarlo como fallo lo repetiría seguro.
 */
async function markProcessed(
  store: ProcessedStore,
  consumer: string,
  key: string,
  msg: JsMsg,
  log: Logger,
  timeoutMs: number,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await bounded(store.mark(consumer, key), timeoutMs, "storing the processed marker");
      return;
    } catch (err) {
      if (attempt >= MARK_ATTEMPTS) {
        log.error(
          { err, attempts: attempt, consumer, processedKey: key },
          "processed marker could not be stored; acknowledging anyway (the work is done; a redelivery of this message would repeat it)",
        );
        return;
      }
      log.warn({ err, markAttempt: attempt }, "storing the processed marker failed; retrying");
      msg.working();
      await new Promise((r) => setTimeout(r, retryDelayMs(attempt)));
      msg.working();
    }
  }
}

// Espera máxima de cada petición de mensajes: acota también lo que tarda en parar.
const FETCH_EXPIRES_MS = 2_000;
/** Cada cuánto, sin mensajes, se comprueba que el consumer durable siga existiendo. */
const CONSUMER_CHECK_MS = 5_000;
/** Códigos de error de la API de JetStream (ADR-5 de NATS). */
const CONSUMER_NOT_FOUND = 10014;
const STREAM_NOT_FOUND = 10059;
const FETCH_RETRY_MS = 1_000;

// El único bucle de consumo con reintentos y DLQ; todos los workers lo usan.
export async function startWorker<T>(
  def: WorkerDefinition<T>,
  options: WorkerOptions,
): Promise<RunningWorker> {
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const ackWaitMs = options.ackWaitMs ?? 30_000;
  const handlerTimeoutMs = options.handlerTimeoutMs ?? 15 * 60_000;
  // Lo que no es el handler (marca, reintento, DLQ) es trabajo corto contra la base y el bus.
  const bookkeepingMs = Math.min(handlerTimeoutMs, BOOKKEEPING_TIMEOUT_MS);
  const logger = options.logger.child({ worker: def.name });
  let consumer = await ensureConsumer(options.bus, def, ackWaitMs);
  let consumerCheckedAt = Date.now();
  /**
   * Un stream recreado (volumen de JetStream perdido, un operador) se lleva el consumer durable:
   * sin él, fetch vuelve vacío para siempre y el worker no procesaría nada sin decirlo.
   */
  const checkConsumer = async () => {
    if (Date.now() - consumerCheckedAt < CONSUMER_CHECK_MS) return;
    consumerCheckedAt = Date.now();
    try {
      const jsm = await options.bus.jsm();
      const gone = await jsm.consumers.info(streams[def.domain].name, def.name).then(
        () => undefined,
        (err: unknown) => {
          const code = err instanceof JetStreamApiError ? err.code : undefined;
          if (code === CONSUMER_NOT_FOUND || code === STREAM_NOT_FOUND) return code;
          throw err;
        },
      );
      if (gone === undefined) return;
      logger.warn({ jetStreamErrorCode: gone }, "durable consumer is gone; recreating it");
      if (gone === STREAM_NOT_FOUND) await ensureStreams(options.bus);
      consumer = await ensureConsumer(options.bus, def, ackWaitMs);
    } catch (err) {
      logger.warn({ err }, "could not check the durable consumer");
    }
  };
  // Antes de pedir mensajes: si el listener no arranca, no queda un lazo de consumo sin dueño.
  const advisories = await listenMaxDeliveries(def, options, logger);
  const inFlight = new Set<Promise<void>>();
  let slots = concurrency;
  const waiters: (() => void)[] = [];
  const acquire = async () => {
    if (slots > 0) {
      slots--;
      return;
    }
    await new Promise<void>((resolve) => waiters.push(resolve));
  };
  const release = () => {
    const next = waiters.shift();
    if (next) next();
    else slots++;
  };
  /** Reserva todos los huecos libres además del ya adquirido. */
  const takeFreeSlots = () => {
    const taken = slots;
    slots = 0;
    return taken;
  };
  let stopping = false;
  let batch: ConsumerMessages | undefined;
  let wakeUp: (() => void) | undefined;
  const held = new Set<HeldMessage>();
  /** Devoluciones al broker en curso: stop() las espera antes de soltar la conexión. */
  const releasing = new Set<Promise<void>>();
  const releaseOne = (msg: JsMsg, attempt: number) => {
    const p = releaseToBroker(options.bus, msg, attempt, logger).finally(() => releasing.delete(p));
    releasing.add(p);
  };

  // Sin demora y sin contar como fallo: el intento no falló, el proceso se va.
  let drainExpired = false;
  let expireDrain = () => {};
  /** Se cumple al vencer el plazo de drenado de stop(): lo que aún espera deja de esperar. */
  const drainDeadline = new Promise<void>((resolve) => {
    expireDrain = () => {
      drainExpired = true;
      resolve();
    };
  });
  /** Espera ms, o menos si antes vence el plazo de drenado. */
  const untilDrainDeadline = async (ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise((r) => {
        timer = setTimeout(r, ms);
      }),
      drainDeadline,
    ]);
    clearTimeout(timer);
  };
  const releaseHeld = (drainTimeoutMs: number) => {
    expireDrain();
    if (held.size === 0) return;
    logger.warn(
      { messages: held.size, drainTimeoutMs },
      "drain deadline reached; returning unfinished messages to the broker",
    );
    for (const h of held) {
      h.released = true;
      releaseOne(h.msg, h.attempt);
      h.abort.abort(new WorkerStoppingError(`worker stopped after a ${drainTimeoutMs} ms drain`));
    }
    held.clear();
  };

  const process = async (msg: JsMsg) => {
    // Las políticas de reintento y DLQ cuentan intentos, no entregas de esta copia.
    const deliveryCount = attemptOf(msg);
    let envelope: EventEnvelope | undefined;
    let data: T | undefined;
    let handlerCtx: HandlerContext<T> | undefined;
    let log = logger.child({
      subject: msg.subject,
      streamSequence: msg.seq,
      attempt: deliveryCount,
    });
    const timer = options.metrics?.duration.startTimer({ worker: def.name });
    const holding: HeldMessage = {
      msg,
      attempt: deliveryCount,
      abort: new AbortController(),
      released: false,
    };
    held.add(holding);
    const heartbeatTimer = setInterval(
      () => msg.working(),
      // Tres latidos por plazo de ack, también con plazos cortos (un piso de 1 s los dejaba llegar tarde).
      Math.max(100, Math.floor(ackWaitMs / 3)),
    );
    try {
      try {
        envelope = eventEnvelopeSchema.parse(msg.json());
      } catch (err) {
        throw new PermanentError(`message is not a valid event envelope: ${errorMessage(err)}`);
      }
      // Ya con el sobre: hasta el log de un mensaje venenoso lleva su correlación.
      log = log.child({ correlationId: envelope.correlationId, eventId: envelope.id });
      const parsed = def.schema.safeParse(envelope.data);
      if (!parsed.success)
        throw new PermanentError(`message data failed its schema: ${parsed.error.message}`);
      data = parsed.data;
      const fields = def.logFields?.(data);
      if (fields) log = log.child(fields);
      // Por id de evento: una petición puede emitir varios eventos legítimos con la misma
      // correlación; las peticiones repetidas ya se deduplican por correlationId en la API.
      const key = envelope.id;
      // Un worker que sabe por su propio estado si ya hizo el trabajo no necesita el registro
      // genérico: una consulta y un commit menos por mensaje.
      const processed = def.alreadyProcessed ? undefined : options.processed;
      // También con tope: una consulta colgada (socket a la base que no responde) retendría el
      // mensaje latiendo para siempre.
      if (
        await withTimeout(
          wasProcessed(def, options, envelope, data, deliveryCount),
          handlerTimeoutMs,
          holding.abort,
        )
      ) {
        held.delete(holding);
        log.info("message already processed; acknowledging");
        msg.ack();
        return;
      }
      if (deliveryCount > MAX_DELIVER) {
        throw new DeliveryBudgetExhaustedError(
          "worker stopped responding on its last delivery (redelivered copy beyond the delivery budget)",
        );
      }
      log.info("processing message");
      handlerCtx = {
        data,
        envelope,
        subject: msg.subject,
        deliveryCount,
        logger: log,
        heartbeat: () => msg.working(),
        signal: holding.abort.signal,
      };
      const handling = def.handle(handlerCtx);
      // Si vence el tope, el handler colgado sigue sin latir ni confirmar: que no quede un rechazo sin atender.
      handling.catch(() => {});
      await withTimeout(handling, handlerTimeoutMs, holding.abort);
      held.delete(holding);
      // El trabajo ya está hecho: un fallo al guardar la marca no puede llevarlo a reintentarse.
      if (processed) await markProcessed(processed, def.name, key, msg, log, bookkeepingMs);
      msg.ack();
      options.metrics?.processed.inc({ worker: def.name });
      timer?.({ outcome: "success" });
      log.info("message processed");
    } catch (err) {
      held.delete(holding);
      if (holding.released) {
        log.info("message returned to the broker on shutdown; another process takes it");
        return;
      }
      const error = errorMessage(err);
      const exhausted = err instanceof DeliveryBudgetExhaustedError;
      const permanent = isPermanent(err);
      const outcome = afterFailure(deliveryCount, permanent);
      timer?.({ outcome: "failure" });
      if (outcome.action === "retry") {
        log.warn({ err, delayMs: outcome.delayMs }, "message failed; will retry");
        const retrying = handlerCtx && def.onRetry?.(handlerCtx, error, outcome.delayMs);
        if (retrying) {
          await bounded(retrying, bookkeepingMs, "retry bookkeeping").catch((e: unknown) =>
            log.error({ err: e }, "retry bookkeeping failed"),
          );
        }
        msg.nak(outcome.delayMs);
        options.metrics?.retried.inc({ worker: def.name });
        return;
      }
      const info: DeadLetterInfo = {
        envelope,
        subject: msg.subject,
        streamSequence: msg.seq,
        // Sin ejecutar la entrega de más: cuentan los intentos que sí corrieron.
        deliveries: exhausted ? deliveryCount - 1 : deliveryCount,
        error,
        permanent,
      };
      // Sin DLQ no se descarta nada: se reintenta la publicación antes de terminar el mensaje.
      // Vencido el plazo de apagado no se espera más aquí: sin confirmar, el mensaje vuelve al
      // vencer su ack wait y otro proceso lo lleva a la DLQ (publicación y registro idempotentes).
      const leftAtDeadline = (err?: unknown) =>
        log.warn(
          { err },
          "drain deadline reached while dead-lettering; the message returns after its ack wait",
        );
      for (let attempt = 1; ; attempt++) {
        const dead = bounded(
          deadLetter(
            def,
            options,
            { stream: msg.info.stream, data: msg.data, headers: msg.headers },
            info,
            data,
            log,
          ),
          bookkeepingMs,
          "dead-lettering",
        ).then(() => "done" as const);
        // Si pierde la carrera con el plazo, su error no queda sin atender.
        dead.catch(() => {});
        let outcome: "done" | "deadline";
        try {
          outcome = await Promise.race([dead, drainDeadline.then(() => "deadline" as const)]);
        } catch (dlqErr) {
          if (attempt >= 3) {
            log.error({ err: dlqErr }, "dead-lettering failed; message left unacknowledged");
            break;
          }
          msg.working();
          await untilDrainDeadline(retryDelayMs(attempt));
          if (drainExpired) {
            leftAtDeadline(dlqErr);
            break;
          }
          continue;
        }
        if (outcome === "deadline") {
          leftAtDeadline();
          break;
        }
        // Sin motivo: nats-server 2.9 solo reconoce `+TERM` exacto; con motivo lo ignoraba y el
        // mensaje volvía a cada ack wait hasta agotar MaxDeliver (el motivo ya está en la DLQ).
        msg.term();
        log.error({ err, deliveries: deliveryCount, permanent }, "message dead-lettered");
        break;
      }
    } finally {
      held.delete(holding);
      clearInterval(heartbeatTimer);
    }
  };

  const start = (msg: JsMsg) => {
    const p = process(msg)
      .catch((err: unknown) => logger.error({ err }, "unexpected worker failure"))
      .finally(() => {
        inFlight.delete(p);
        release();
      });
    inFlight.add(p);
  };

  /*
   * Se piden solo tantos mensajes como huecos libres: todo mensaje recibido empieza en el acto
   * (con su latido). Con un búfer de prefetch, los que esperaban hueco no latían y JetStream los
   * reentregaba a otro proceso mientras este seguía ocupado.
   */
  const loop = (async () => {
    while (!stopping) {
      await acquire();
      if (stopping) {
        release();
        break;
      }
      const wanted = 1 + takeFreeSlots();
      let received = 0;
      try {
        batch = await consumer.fetch({ max_messages: wanted, expires: FETCH_EXPIRES_MS });
        for await (const msg of batch) {
          if (stopping) {
            // Llegó tras la orden de parar y no empezó: otro proceso lo toma ya.
            releaseOne(msg, attemptOf(msg));
            continue;
          }
          received++;
          start(msg);
        }
        if (received === 0 && !stopping) await checkConsumer();
      } catch (err) {
        if (!stopping) {
          logger.warn({ err }, "fetching messages failed; retrying");
          await checkConsumer();
          await new Promise<void>((resolve) => {
            wakeUp = resolve;
            setTimeout(resolve, FETCH_RETRY_MS);
          });
        }
      } finally {
        batch = undefined;
        for (let i = received; i < wanted; i++) release();
      }
    }
  })();

  options.metrics?.track(def.name, async () => {
    const jsm = await options.bus.jsm();
    const info = await jsm.consumers.info(streams[def.domain].name, def.name);
    return { pending: info.num_pending, ackPending: info.num_ack_pending };
  });
  logger.info({ concurrency, ackWaitMs, handlerTimeoutMs }, "worker started");
  return {
    name: def.name,
    async stop(stopOptions: StopOptions = {}) {
      const drainTimeoutMs = stopOptions.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
      // Deja de pedir mensajes y termina los que tiene, pero solo hasta el plazo: un handler largo
      // (hasta handlerTimeoutMs) no puede retener el apagado ni sus mensajes hasta el ack wait.
      const deadline = setTimeout(() => releaseHeld(drainTimeoutMs), drainTimeoutMs);
      stopping = true;
      await batch?.close();
      wakeUp?.();
      // Un lazo que espera hueco despierta con el primer mensaje que termine, o aquí.
      release();
      await loop.catch(() => {});
      await advisories.stop();
      await Promise.allSettled([...inFlight]);
      clearTimeout(deadline);
      await Promise.allSettled([...releasing]);
      logger.info("worker stopped");
    },
  };
}
