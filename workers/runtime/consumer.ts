import { createHash } from "node:crypto";
import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AckPolicy,
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiError,
  type JsMsg,
} from "@nats-io/jetstream";
import { type MsgHdrs, nanos, headers as natsHeaders } from "@nats-io/nats-core";
import { z } from "zod";
import { type EventEnvelope, eventEnvelopeSchema } from "../../contracts/events";
import { advisoryStream, type Domain, headers, streams } from "../../contracts/streams";
import { type Bus, ensureStreams, headerValue } from "../../core/bus";
import { isDatabaseUnavailable } from "../../core/http/db-errors";
import { parseJsonOrUndefined } from "../../core/ids";
import type { Logger } from "../../core/logger";
import { afterFailure, backoffDelayMs, MAX_DELIVER, retryDelayMs } from "../../core/retry-policy";
import type { DeadLetterStore, RecordedDeadLetter } from "../../db/dead-letters";
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
   * propio correo (más rico), lo dice y el runtime no manda el aviso genérico. `signal` se aborta
   * cuando el runtime deja de esperarlo (tope de la contabilidad o plazo de drenado): una espera
   * larga debe cortarse y lanzar, pues se repetirá entero en otra entrega. `logger` es el del
   * mensaje (worker, secuencia, intento, correlación, evento y logFields): sus líneas dicen de qué
   * mensaje son, también cuando llega por el advisory MAX_DELIVERIES.
   */
  onDeadLetter?(
    info: DeadLetterInfo,
    data: T | undefined,
    signal?: AbortSignal,
    logger?: Logger,
  ): Promise<DeadLetterHandled | undefined>;
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
  /**
   * Cuánto se retiene, como mucho, un mensaje cuya entrega falló porque la base no responde
   * (reinicio, failover): se reintenta en el lugar sin gastar entregas. Pasado el plazo sigue la
   * política de reintentos de siempre.
   */
  databaseOutageHoldMs?: number;
}

/**
 * Un failover de Postgres dura de segundos a un minuto: sin esto, los 5 intentos (7,5 s) se
 * agotaban y cada mensaje de ese rato iba a la DLQ (y cada alta, a failed). Con tope: una consulta
 * que tira el servidor cada vez no puede retenerse para siempre.
 */
export const DEFAULT_DATABASE_OUTAGE_HOLD_MS = 10 * 60_000;

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

/**
 * La DLQ de este mensaje empezó (su entrada existe) pero no terminó (p. ej. falló el aviso): la
 * reentrega la completa sin volver a ejecutar el handler.
 */
class UnfinishedDeadLetterError extends Error {
  override name = "UnfinishedDeadLetterError";
  constructor(readonly entry: RecordedDeadLetter) {
    super(entry.error);
  }
}

/** Razón del abort de un handler que seguía en curso al vencer el plazo de drenado. */
export class WorkerStoppingError extends Error {
  override name = "WorkerStoppingError";
}

/**
 * Tope de la devolución al broker de los mensajes que siguen en curso al vencer el drenado: el
 * apagado la espera antes de cerrar relay, broker y base (main.ts le reserva este margen).
 */
export const RELEASE_BUDGET_MS = 2_000;

/** Margen que main.ts deja tras el drenado para cerrar relay, broker y base. */
export const CLOSE_BUDGET_MS = 4_000;

/** Lo que se promete ante un SIGTERM: el proceso sale en este plazo pase lo que pase. */
export const SHUTDOWN_DEADLINE_MS = 30_000;

/** Holgura para que drenado, devolución y cierre no lleguen justo al plazo. */
export const SHUTDOWN_SLACK_MS = 500;

/**
 * Drenado por defecto: con la devolución y el cierre, cabe en los 30 s prometidos (y bajo el
 * grace period del orquestador: 40 s en compose, 45 s en Kubernetes).
 */
export const DEFAULT_DRAIN_TIMEOUT_MS =
  SHUTDOWN_DEADLINE_MS - RELEASE_BUDGET_MS - CLOSE_BUDGET_MS - SHUTDOWN_SLACK_MS;

const DEFAULT_HANDLER_TIMEOUT_MS = 15 * 60_000;

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

/**
 * `bounded`, y además deja de esperar cuando se aborta `stop` (el plazo de drenado). Al
 * abandonarlo, por tope o por plazo, aborta la señal que recibió `work` para que corte sus esperas.
 */
async function abandonable<T>(
  work: (signal: AbortSignal) => Promise<T>,
  ms: number,
  what: string,
  stop: AbortSignal,
): Promise<T> {
  const own = new AbortController();
  try {
    return await untilAborted(bounded(work(own.signal), ms, what), stop);
  } catch (err) {
    own.abort(err);
    throw err;
  }
}

/** Espera `ms`, o menos si antes se aborta `signal`. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => {});
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
  /** Logger actual del mensaje: crece con el sobre y los campos del worker. */
  log(): Logger;
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

/** Correlación de la cabecera del mensaje (sin sobre legible es la única que hay). */
function headerCorrelation(h: MsgHdrs | undefined): { correlationId: string } | undefined {
  const correlationId = h?.get(headers.correlationId);
  return correlationId ? { correlationId } : undefined;
}

/**
 * Campos de log de un mensaje leído fuera del handler (advisory, devolución al broker): los mismos
 * que el handler, para filtrar todas sus líneas por correlación, evento o campos del worker.
 */
function messageFields<T>(
  def: Pick<WorkerDefinition<T>, "logFields">,
  h: MsgHdrs | undefined,
  envelope: EventEnvelope | undefined,
  data: T | undefined,
): Record<string, unknown> {
  return {
    ...(envelope
      ? { correlationId: envelope.correlationId, eventId: envelope.id }
      : headerCorrelation(h)),
    ...(data !== undefined ? def.logFields?.(data) : undefined),
  };
}

/** Sobre y datos de un mensaje fuera del handler, si se pueden leer; nunca lanza. */
function readMessage<T>(
  def: Pick<WorkerDefinition<T>, "schema">,
  payload: Uint8Array,
): { envelope: EventEnvelope | undefined; data: T | undefined } {
  const envelope = eventEnvelopeSchema.safeParse(
    parseJsonOrUndefined(new TextDecoder().decode(payload)),
  );
  if (!envelope.success) return { envelope: undefined, data: undefined };
  const data = def.schema.safeParse(envelope.data.data);
  return { envelope: envelope.data, data: data.success ? data.data : undefined };
}

/**
 * Qué falla en un sobre: campo y motivo de zod, sin valores (el texto va a la DLQ, a la cabecera
 * lastError y al correo de operaciones).
 */
function envelopeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
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
  signal: AbortSignal,
): Promise<void> {
  const rawPayload = storable(new TextDecoder().decode(msg.data));
  const messageKey = messageKeyOf(info.envelope, rawPayload);
  await publishDeadLetter(options.bus, msg, info, messageKey);
  // Abandonado (tope o apagado): no sigue a medias; otra entrega lo repite entero.
  signal.throwIfAborted();
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
  signal.throwIfAborted();
  const handled = await def.onDeadLetter?.(info, data, signal, logger);
  // Un hook que cortó su espera al abortarse no hizo su parte: ni aviso genérico ni métrica.
  signal.throwIfAborted();
  if (!handled?.operatorsAlerted) {
    await alertOperators(
      options.bus,
      { ...info, domain: def.domain, worker: def.name, stream: msg.stream },
      logger,
    );
  }
  // Marca de procesado al final: si un paso anterior falla (el aviso, con NATS lento), la
  // reentrega repite la DLQ entera en vez de confirmarse como ya hecha sin aviso ni métrica. Hecha,
  // un consumer recreado que relee el stream no lo ejecuta de nuevo (su reproceso lleva otro id).
  if (info.envelope && !def.alreadyProcessed)
    await options.processed?.mark(def.name, info.envelope.id);
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
  /**
   * Deja de recibir advisories y espera al que se esté atendiendo, como mucho hasta que se aborte
   * `deadline`: entonces lo abandona sin confirmarlo (vuelve a entregarse; atenderlo es idempotente).
   */
  stop(options?: { deadline?: AbortSignal }): Promise<void>;
}

/** Plazo de ack de un advisory; se late mientras se atiende (el hook puede esperar un lease). */
const ADVISORY_ACK_WAIT_MS = 30_000;

/**
 * Latido de un mensaje desde un temporizador: con la conexión ya cerrada (apagado) `working()`
 * lanza, y dentro de un setInterval sería una excepción sin capturar.
 */
function beat(msg: JsMsg): void {
  try {
    msg.working();
  } catch {
    // Sin conexión no hay latido que dar; el ack wait decide.
  }
}

/** Tope de lo que corre tras el handler, según el tope del handler de estas opciones. */
function bookkeepingMsOf(options: WorkerOptions): number {
  return Math.min(options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS, BOOKKEEPING_TIMEOUT_MS);
}

/** Código de JetStream si el error dice que falta el stream o el consumer; si no, lo relanza. */
function missingCode(err: unknown): number {
  const code = err instanceof JetStreamApiError ? err.code : undefined;
  if (code === CONSUMER_NOT_FOUND || code === STREAM_NOT_FOUND) return code;
  throw err;
}

/** Código de JetStream si falta el stream o el consumer consultado; undefined si existe. */
async function missingResource(info: Promise<unknown>): Promise<number | undefined> {
  return info.then(() => undefined, missingCode);
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
  const bookkeepingMs = bookkeepingMsOf(options);
  /** Desde qué secuencia del stream de advisories empieza un consumer recreado (sin ella, todo). */
  const addDurable = async (startSeq?: number) => {
    const jsm = await options.bus.jsm();
    await jsm.consumers.add(advisoryStream.name, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: advisoryStream.subjectFor(stream, def.name),
      max_deliver: -1,
      ack_wait: nanos(ADVISORY_ACK_WAIT_MS),
      ...(startSeq !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq }
        : {}),
    });
  };
  /** Cuándo se creó el stream de advisories: si cambia, su numeración empezó de nuevo. */
  const streamCreated = async () =>
    (await (await options.bus.jsm()).streams.info(advisoryStream.name)).created;
  try {
    await (await options.bus.jsm()).consumers.info(advisoryStream.name, durable);
  } catch {
    await addDurable();
  }
  /**
   * Hasta dónde confirmó el consumer (ack floor) la última vez que se vio, en qué stream: uno
   * recreado sigue desde ahí en vez de volver a llevar a la DLQ (y a avisar) los ya atendidos.
   */
  let confirmed = { streamCreated: await streamCreated(), floor: 0 };
  /**
   * Advisories devueltos para reintentar: el piso no pasa del primero de ellos. Llegan de uno en
   * uno y en orden, así que todo lo demás hasta el mayor atendido está confirmado.
   */
  const retrying = new Set<number>();
  let highest = 0;
  const settled = (seq: number) => {
    retrying.delete(seq);
    highest = Math.max(highest, seq);
    const floor = retrying.size > 0 ? Math.min(...retrying) - 1 : highest;
    confirmed = { ...confirmed, floor: Math.max(confirmed.floor, floor) };
  };
  let stopped = false;
  /** Se aborta al vencer el plazo de stop(): lo que se esté atendiendo se abandona. */
  const abandon = new AbortController();
  // Cada espera acotada por el plazo le suma un listener; no es una fuga (se quitan al terminar).
  setMaxListeners(0, abandon.signal);

  const handle = async (m: JsMsg) => {
    if (abandon.signal.aborted) {
      // Recibido tras el plazo: otro proceso lo toma ya.
      m.nak();
      return;
    }
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
      settled(m.seq);
      return;
    }
    const heartbeat = setInterval(() => beat(m), ADVISORY_ACK_WAIT_MS / 3);
    // Pasa a ser el logger del mensaje en cuanto se lee: también el fallo y el plazo lo usan.
    const scope = {
      log: logger.child({ advisorySequence: m.seq, streamSequence: advisory.data.stream_seq }),
    };
    try {
      await abandonable(
        (signal) => handleMaxDeliveriesAdvisory(def, options, scope, stream, advisory.data, signal),
        bookkeepingMs,
        "handling a MAX_DELIVERIES advisory",
        abandon.signal,
      );
      m.ack();
      settled(m.seq);
    } catch (err) {
      if (abandon.signal.aborted) {
        // Sin ack: la DLQ pudo quedar a medias; otro proceso lo repite entero ya.
        scope.log.warn(
          "drain deadline reached while handling a MAX_DELIVERIES advisory; returned unacknowledged",
        );
        m.nak();
        return;
      }
      const delayMs = retryDelayMs(m.info.deliveryCount);
      // `attempt` es el intento del mensaje (ya en el logger); el advisory cuenta aparte.
      scope.log.error(
        { err, advisoryAttempt: m.info.deliveryCount, delayMs },
        "handling MAX_DELIVERIES advisory failed; will retry",
      );
      m.nak(delayMs);
      retrying.add(m.seq);
    } finally {
      clearInterval(heartbeat);
    }
  };

  const loops = new Set<Promise<void>>();
  const consume = async (): Promise<ConsumerMessages> => {
    const consumer = await options.bus.js.consumers.get(advisoryStream.name, durable);
    // De uno en uno, como el lazo de trabajo: solo el que se atiende late; uno esperando en el
    // búfer tras un hook largo (un lease) vencería su ack wait y se atendería dos veces.
    const messages = await consumer.consume({ max_messages: 1 });
    const loop = (async () => {
      for await (const m of messages) await handle(m);
    })()
      .catch((err: unknown) => logger.error({ err }, "MAX_DELIVERIES listener stopped"))
      .finally(() => loops.delete(loop));
    loops.add(loop);
    return messages;
  };
  let messages = await consume();

  /*
   * Un stream recreado (volumen de JetStream perdido, un operador) se lleva el consumer durable y
   * el lazo de consumo sigue pidiendo a un consumer que no existe: los mensajes cuyo worker murió
   * en su última entrega no llegarían nunca a la DLQ. Se comprueba aparte del lazo de trabajo
   * (que solo lo hace cuando no tiene mensajes) y se recrea con un lazo nuevo.
   */
  let checking: Promise<void> | undefined;
  const check = async () => {
    const jsm = await options.bus.jsm();
    const info = await jsm.consumers
      .info(advisoryStream.name, durable)
      .then((found) => found, missingCode);
    if (typeof info === "object") {
      // Lo que el servidor da por confirmado (p. ej. por otro proceso que comparte el consumer).
      confirmed = { ...confirmed, floor: Math.max(confirmed.floor, info.ack_floor.stream_seq) };
      return;
    }
    if (stopped) return;
    logger.warn(
      { jetStreamErrorCode: info, consumer: durable },
      "MAX_DELIVERIES advisory consumer is gone; recreating it",
    );
    if (info === STREAM_NOT_FOUND) await ensureStreams(options.bus);
    // El lazo viejo termina lo que tenga antes de que el nuevo pueda recibir lo mismo.
    await messages.close();
    await Promise.allSettled([...loops]);
    if (stopped) return;
    const created = await streamCreated();
    // Mismo stream: desde lo que no llegó a confirmarse. Stream nuevo: todo lo que tenga.
    await addDurable(created === confirmed.streamCreated ? confirmed.floor + 1 : undefined);
    if (created !== confirmed.streamCreated) {
      retrying.clear();
      highest = 0;
    }
    confirmed = {
      streamCreated: created,
      floor: created === confirmed.streamCreated ? confirmed.floor : 0,
    };
    if (stopped) return;
    messages = await consume();
  };
  const tick = () => {
    // Con el broker caído no hay nada que comprobar (ni un aviso cada 5 s que lo repita).
    if (checking || stopped || !options.bus.isConnected()) return;
    checking = check()
      .catch((err: unknown) =>
        logger.warn({ err }, "could not check the MAX_DELIVERIES advisory consumer"),
      )
      .finally(() => {
        checking = undefined;
      });
  };
  const checkTimer = setInterval(tick, CONSUMER_CHECK_MS);
  checkTimer.unref();

  return {
    async stop({ deadline }: { deadline?: AbortSignal } = {}) {
      stopped = true;
      clearInterval(checkTimer);
      if (deadline) {
        const expire = () => abandon.abort(deadline.reason);
        if (deadline.aborted) expire();
        else deadline.addEventListener("abort", expire, { once: true });
      }
      // El cierre tampoco retiene el apagado pasado el plazo (un broker que no responde). Una
      // comprobación en curso termina antes: si no, podía abrir un consumo tras el cierre.
      await untilAborted(
        (async () => {
          await checking;
          await messages.close();
          await Promise.allSettled([...loops]);
        })(),
        abandon.signal,
      ).catch(() => {});
    },
  };
}

async function handleMaxDeliveriesAdvisory<T>(
  def: WorkerDefinition<T>,
  options: WorkerOptions,
  scope: { log: Logger },
  stream: string,
  advisory: z.infer<typeof maxDeliveriesAdvisorySchema>,
  signal: AbortSignal,
): Promise<void> {
  const jsm = await options.bus.jsm();
  const stored = await jsm.streams.getMessage(stream, { seq: advisory.stream_seq });
  if (!stored) {
    scope.log.warn(
      "MAX_DELIVERIES advisory for a message no longer in the stream; nothing to dead-letter",
    );
    return;
  }
  // Un mensaje que no es JSON también va a la DLQ (con su contenido crudo), no a un bucle.
  const { envelope, data } = readMessage(def, stored.data);
  // Con los intentos fallidos de copias anteriores (mensaje devuelto en un apagado).
  const deliveries = priorAttemptsOf(stored.header) + advisory.deliveries;
  // Desde aquí, las líneas (del runtime y del hook) llevan el contexto del mensaje, como las
  // del handler: el intento es el del mensaje, no el del advisory.
  const log = scope.log.child({
    subject: stored.subject,
    attempt: deliveries,
    ...messageFields(def, stored.header, envelope, data),
  });
  scope.log = log;
  // El último intento pudo terminar el trabajo y perder solo el ack: no es un fallo.
  if (envelope && data !== undefined && (await wasProcessed(def, options, envelope, data))) {
    log.info("MAX_DELIVERIES advisory for a message already processed; not dead-lettered");
    return;
  }
  await deadLetter(
    def,
    options,
    { stream, data: stored.data, headers: stored.header },
    {
      envelope,
      subject: stored.subject,
      streamSequence: advisory.stream_seq,
      deliveries,
      error: "worker stopped responding on its last delivery (MAX_DELIVERIES advisory)",
      permanent: false,
    },
    data,
    log,
    signal,
  );
  log.error("message dead-lettered from MAX_DELIVERIES advisory");
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
 * Espera de cada publicación de la copia. Corta: un broker sano confirma en milisegundos, y los
 * intentos con sus pausas caben en RELEASE_BUDGET_MS.
 */
const RELEASE_PUBLISH_TIMEOUT_MS = 600;

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
  const giveUpAt = Date.now() + RELEASE_BUDGET_MS;
  for (let n = 1; ; n++) {
    // El original sigue siendo de este proceso hasta rendirse: su ack wait cuenta desde entonces y
    // la copia (si se guardó) ya estará hecha y marcada cuando vuelva.
    msg.working();
    try {
      await bus.js.publish(msg.subject, msg.data, {
        headers: h,
        // Reintentos y liberaciones repetidas (ack perdido) se descartan por este id.
        msgID: `released:${msg.info.stream}:${msg.seq}`,
        timeout: Math.max(1, Math.min(RELEASE_PUBLISH_TIMEOUT_MS, giveUpAt - Date.now())),
      });
      msg.ack();
      return;
    } catch (err) {
      const wait = 100 * n;
      // Otro intento solo si cabe (pausa y algo de espera) en el presupuesto.
      if (n >= RELEASE_ATTEMPTS || giveUpAt - Date.now() < wait + 100) {
        // El logger del mensaje ya lleva su secuencia, intento y correlación.
        logger.warn(
          { err, attempts: n },
          "could not re-queue a released message; it returns when its ack wait expires (uses one delivery)",
        );
        return;
      }
      await sleep(wait);
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
  drain: AbortSignal,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await untilAborted(
        bounded(store.mark(consumer, key), timeoutMs, "storing the processed marker"),
        drain,
      );
      return;
    } catch (err) {
      // Vencido el drenado se confirma sin marca, como tras MARK_ATTEMPTS fallos: el ack es lo que
      // evita la reentrega (la marca solo cubre un ack perdido); sin él el trabajo se repetiría seguro.
      if (drain.aborted) {
        log.error(
          { err, attempts: attempt, consumer, processedKey: key },
          "drain deadline reached before the processed marker was stored; acknowledging anyway (the work is done)",
        );
        return;
      }
      if (attempt >= MARK_ATTEMPTS) {
        log.error(
          { err, attempts: attempt, consumer, processedKey: key },
          "processed marker could not be stored; acknowledging anyway (the work is done; a redelivery of this message would repeat it)",
        );
        return;
      }
      log.warn({ err, markAttempt: attempt }, "storing the processed marker failed; retrying");
      msg.working();
      await pause(retryDelayMs(attempt), drain);
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
  const handlerTimeoutMs = options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS;
  const outageHoldMs = options.databaseOutageHoldMs ?? DEFAULT_DATABASE_OUTAGE_HOLD_MS;
  // Lo que no es el handler (marca, reintento, DLQ) es trabajo corto contra la base y el bus.
  const bookkeepingMs = bookkeepingMsOf(options);
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
      const gone = await missingResource(jsm.consumers.info(streams[def.domain].name, def.name));
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
  /**
   * Copias del mismo evento que este proceso tiene a la vez (publicado dos veces con otro
   * Nats-Msg-Id): se turnan, y la segunda mira la marca de procesado cuando la primera terminó.
   * Sin turno, ambas la veían sin marcar y el handler corría dos veces (un correo repetido).
   */
  const sameEvent = new Map<string, Promise<void>>();
  /** Devoluciones al broker en curso: stop() las espera antes de soltar la conexión. */
  const releasing = new Set<Promise<void>>();
  const releaseOne = (msg: JsMsg, attempt: number, log: Logger) => {
    const p = releaseToBroker(options.bus, msg, attempt, log).finally(() => releasing.delete(p));
    releasing.add(p);
  };
  /** Logger de un mensaje que llegó tras la orden de parar y no empezó. */
  const unstartedLog = (msg: JsMsg, attempt: number) => {
    const { envelope, data } = readMessage(def, msg.data);
    return logger.child({
      subject: msg.subject,
      streamSequence: msg.seq,
      attempt,
      ...messageFields(def, msg.headers, envelope, data),
    });
  };

  // Sin demora y sin contar como fallo: el intento no falló, el proceso se va.
  /** Se aborta al vencer el plazo de drenado de stop(): lo que aún espera deja de esperar. */
  const drain = new AbortController();
  // Cada espera acotada por el plazo le suma un listener; no es una fuga (se quitan al terminar).
  setMaxListeners(0, drain.signal);
  const releaseHeld = (drainTimeoutMs: number) => {
    drain.abort(new WorkerStoppingError(`drain deadline of ${drainTimeoutMs} ms reached`));
    if (held.size === 0) return;
    logger.warn(
      { messages: held.size, drainTimeoutMs },
      "drain deadline reached; returning unfinished messages to the broker",
    );
    for (const h of held) {
      h.released = true;
      releaseOne(h.msg, h.attempt, h.log());
      h.abort.abort(new WorkerStoppingError(`worker stopped after a ${drainTimeoutMs} ms drain`));
    }
    held.clear();
  };

  /** Retención en curso de un mensaje por una caída de la base: desde cuándo y cuántas esperas. */
  interface Outage {
    since: number;
    waits: number;
  }

  /** Corre la entrega; devuelve la retención si la base no respondió y hay que volver a correrla. */
  const processOnce = async (msg: JsMsg, outage?: Outage): Promise<Outage | undefined> => {
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
    // Solo el handler: la espera tras otra copia del mismo evento y las consultas previas no cuentan
    // (una copia que esperó 15 min a otra colgada no es un handler de 15 min).
    let timer: ((labels: { outcome: string }) => number) | undefined;
    const holding: HeldMessage = {
      msg,
      attempt: deliveryCount,
      abort: new AbortController(),
      released: false,
      // El de ese momento: la devolución al broker se registra con lo que ya se sepa del mensaje.
      log: () => log,
    };
    held.add(holding);
    const heartbeatTimer = setInterval(
      () => beat(msg),
      // Tres latidos por plazo de ack, también con plazos cortos (un piso de 1 s los dejaba llegar tarde).
      Math.max(100, Math.floor(ackWaitMs / 3)),
    );
    let endTurn = () => {};
    try {
      // Sin el error de JSON.parse: cita el principio del payload (puede ser un secreto), y este
      // texto va a la DLQ, a la cabecera lastError y al correo de operaciones.
      const body = parseJsonOrUndefined(msg.string());
      const parsedEnvelope = body === undefined ? undefined : eventEnvelopeSchema.safeParse(body);
      if (!parsedEnvelope?.success) {
        // Sin sobre, la correlación de la cabecera es la que identifica el mensaje en el log.
        const correlation = headerCorrelation(msg.headers);
        if (correlation) log = log.child(correlation);
        throw new PermanentError(
          parsedEnvelope
            ? `message is not a valid event envelope: ${envelopeIssues(parsedEnvelope.error)}`
            : "message is not valid JSON",
        );
      }
      envelope = parsedEnvelope.data;
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
      const before = sameEvent.get(key);
      const turn = new Promise<void>((resolve) => {
        endTurn = resolve;
      });
      const chained = (before ?? Promise.resolve()).then(() => turn);
      sameEvent.set(key, chained);
      // La entrada se va cuando termina la cadena entera, no cuando una copia se rinde: una copia
      // que llegue después sigue esperando a las que aún corren.
      void chained.then(() => {
        if (sameEvent.get(key) === chained) sameEvent.delete(key);
      });
      // Sin el tope del handler: la copia anterior puede tenerlo más tiempo (consulta, handler y
      // contabilidad, cada uno con su tope) y esta no corrió nada que haya que dar por fallido.
      // Solo el apagado corta la espera (devuelve el mensaje al broker).
      if (before) {
        log.info("waiting for an earlier copy of this event to finish");
        await untilAborted(before, holding.abort.signal);
      }
      // Solo en una reentrega (una consulta): si su DLQ quedó a medias, se termina en vez de
      // ejecutar el handler otra vez (un acierto ahora dejaría una entrada de DLQ de algo hecho).
      if (deliveryCount > 1 && options.deadLetters?.find) {
        const earlier = await withTimeout(
          options.deadLetters.find(msg.info.stream, msg.seq, key),
          handlerTimeoutMs,
          holding.abort,
        );
        if (earlier) throw new UnfinishedDeadLetterError(earlier);
      }
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
      timer = options.metrics?.duration.startTimer({ worker: def.name });
      const handling = def.handle(handlerCtx);
      // Si vence el tope, el handler colgado sigue sin latir ni confirmar: que no quede un rechazo sin atender.
      handling.catch(() => {});
      await withTimeout(handling, handlerTimeoutMs, holding.abort);
      held.delete(holding);
      // El trabajo ya está hecho: un fallo al guardar la marca no puede llevarlo a reintentarse.
      if (processed)
        await markProcessed(processed, def.name, key, msg, log, bookkeepingMs, drain.signal);
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
      const resumed = err instanceof UnfinishedDeadLetterError ? err.entry : undefined;
      timer?.({ outcome: "failure" });
      timer = undefined;
      // La base no responde: no es un fallo del mensaje. Se retiene (el latido sigue) y se vuelve
      // a correr en el lugar, sin nak: el intento no cuenta. Una línea al empezar a esperar.
      const since = outage?.since ?? Date.now();
      if (!resumed && isDatabaseUnavailable(err) && Date.now() - since < outageHoldMs) {
        const waits = (outage?.waits ?? 0) + 1;
        if (waits === 1) log.warn({ err }, "database unavailable; holding the message");
        if (!stopping) {
          held.add(holding);
          await pause(backoffDelayMs(waits), drain.signal);
          held.delete(holding);
        }
        // Al apagar no se espera a la base: el mensaje vuelve ya al broker (otro proceso lo toma).
        if (stopping && !holding.released) {
          holding.released = true;
          releaseOne(msg, deliveryCount, log);
        }
        if (holding.released) {
          log.info("message returned to the broker on shutdown; another process takes it");
          return;
        }
        return { since, waits };
      }
      if (outage) log.warn({ err, heldMs: Date.now() - since }, "database outage hold ended");
      const error = errorMessage(err);
      const exhausted = err instanceof DeliveryBudgetExhaustedError;
      const permanent = resumed ? resumed.errorKind === "permanent" : isPermanent(err);
      const outcome = resumed
        ? ({ action: "dead_letter" } as const)
        : afterFailure(deliveryCount, permanent);
      if (outcome.action === "retry") {
        log.warn({ err, delayMs: outcome.delayMs }, "message failed; will retry");
        const retrying = handlerCtx && def.onRetry?.(handlerCtx, error, outcome.delayMs);
        if (retrying) {
          // Vencido el drenado se deja de esperar, como si fallara: el intento sí falló y cuenta
          // (nak con su espera); la siguiente entrega ya sabe tratar una tarea sin anotar.
          await untilAborted(
            bounded(retrying, bookkeepingMs, "retry bookkeeping"),
            drain.signal,
          ).catch((e: unknown) => log.error({ err: e }, "retry bookkeeping failed"));
        }
        msg.nak(outcome.delayMs);
        options.metrics?.retried.inc({ worker: def.name });
        return;
      }
      const info: DeadLetterInfo = {
        envelope,
        subject: msg.subject,
        streamSequence: msg.seq,
        // Sin ejecutar la entrega de más: cuentan los intentos que sí corrieron (al retomar una
        // DLQ a medias, los de su entrada).
        deliveries: resumed?.deliveries ?? (exhausted ? deliveryCount - 1 : deliveryCount),
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
        try {
          await abandonable(
            (signal) =>
              deadLetter(
                def,
                options,
                { stream: msg.info.stream, data: msg.data, headers: msg.headers },
                info,
                data,
                log,
                signal,
              ),
            bookkeepingMs,
            "dead-lettering",
            drain.signal,
          );
        } catch (dlqErr) {
          if (drain.signal.aborted) {
            leftAtDeadline(dlqErr);
            break;
          }
          if (attempt >= 3) {
            log.error({ err: dlqErr }, "dead-lettering failed; message left unacknowledged");
            break;
          }
          msg.working();
          await pause(retryDelayMs(attempt), drain.signal);
          if (drain.signal.aborted) {
            leftAtDeadline(dlqErr);
            break;
          }
          continue;
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
      endTurn();
    }
  };

  /** Una entrega: se vuelve a correr en el lugar mientras dure la retención por la base. */
  const process = async (msg: JsMsg) => {
    let outage: Outage | undefined;
    do outage = await processOnce(msg, outage);
    while (outage);
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
            const attempt = attemptOf(msg);
            releaseOne(msg, attempt, unstartedLog(msg, attempt));
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
      // Advisories y mensajes en curso drenan a la vez y con el mismo plazo: al vencer, ni el
      // hook de DLQ de un advisory ni la contabilidad de un mensaje retienen el apagado.
      await Promise.all([
        advisories.stop({ deadline: drain.signal }),
        Promise.allSettled([...inFlight]),
      ]);
      clearTimeout(deadline);
      await Promise.allSettled([...releasing]);
      logger.info("worker stopped");
    },
  };
}
