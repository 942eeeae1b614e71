import { and, asc, eq, inArray, isNotNull, isNull, lt, lte, sql } from "drizzle-orm";
import type { EventEnvelope } from "../contracts/events";
import type { Bus } from "../core/bus";
import { errorMessage } from "../core/http/db-errors";
import { newId } from "../core/ids";
import { eventFields, type Logger } from "../core/logger";
import { outboxEvents } from "./schema";
import { type Database, type Executor, rowsOf } from "./types";

export interface NewEvent {
  subject: string;
  type: string;
  data: Record<string, unknown>;
  correlationId?: string | null;
}

export interface QueuedEvent {
  subject: string;
  envelope: EventEnvelope;
}

/**
 * Arma el INSERT de varios eventos en el outbox, para ejecutarlo junto al cambio (db/batch.ts).
 * Un solo INSERT conserva el orden de los eventos en `seq`, que es el orden de publicación.
 */
export function outboxInsert(tx: Executor, events: NewEvent[]) {
  const queued: QueuedEvent[] = events.map((event) => ({
    subject: event.subject,
    envelope: {
      id: newId(),
      type: event.type,
      occurredAt: new Date().toISOString(),
      correlationId: event.correlationId ?? null,
      data: event.data,
    },
  }));
  const statement = tx.insert(outboxEvents).values(
    queued.map(({ subject, envelope }) => ({
      id: envelope.id,
      subject,
      type: envelope.type,
      payload: envelope,
      correlationId: envelope.correlationId,
    })),
  );
  return { statement, queued };
}

/** Escribe el evento en el outbox dentro de la transacción del cambio. */
export async function enqueueEvent(tx: Executor, event: NewEvent): Promise<QueuedEvent> {
  const { statement, queued } = outboxInsert(tx, [event]);
  await statement;
  const [only] = queued;
  if (!only) throw new Error("outbox insert built no event");
  return only;
}

/**
 * Marca publicados en lotes: las peticiones concurrentes comparten un solo UPDATE. Si el proceso
 * muere antes de marcar, el relay vuelve a publicar y JetStream lo descarta por Nats-Msg-Id
 * (y los consumidores son idempotentes por id de evento).
 */
class PublishedMarker {
  private pending: string[] = [];
  private next: Promise<void> | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly db: Database) {}

  mark(ids: string[]): Promise<void> {
    this.pending.push(...ids);
    this.next ??= (async () => {
      // Espera al lote en curso: mientras tanto se juntan más ids en este.
      await this.running?.catch(() => {});
      const batch = this.pending;
      this.pending = [];
      this.next = undefined;
      this.running = this.flush(batch);
      await this.running;
    })();
    return this.next;
  }

  private async flush(ids: string[]): Promise<void> {
    await this.db
      .update(outboxEvents)
      .set({ publishedAt: sql`now()`, attempts: sql`${outboxEvents.attempts} + 1` })
      .where(inArray(outboxEvents.id, ids));
  }
}

const markers = new WeakMap<Database, PublishedMarker>();

function markerFor(db: Database): PublishedMarker {
  let marker = markers.get(db);
  if (!marker) {
    marker = new PublishedMarker(db);
    markers.set(db, marker);
  }
  return marker;
}

/**
 * Cuántos eventos publica el llamador él mismo; los demás quedan para el relay. Un cambio de plan
 * con miles de instancias publicaba de a uno miles de eventos antes de responder (segundos, y
 * hasta el límite de 30 s de Lambda); el relay los publica igual, en orden, fuera de la petición.
 */
export const INLINE_PUBLISH_LIMIT = 100;

/**
 * Publica eventos recién confirmados. Si el broker falla, el evento queda pendiente
 * y el relay lo publicará: el llamador nunca pierde lo que ya se le confirmó.
 */
export async function publishQueued(
  db: Database,
  bus: Bus | undefined,
  events: QueuedEvent[],
  logger: Logger,
): Promise<number> {
  if (!bus || events.length === 0) return 0;
  const inline = events.slice(0, INLINE_PUBLISH_LIMIT);
  if (inline.length < events.length) {
    logger.info(
      { deferred: events.length - inline.length },
      "events beyond the inline limit left to the outbox relay",
    );
  }
  const published: string[] = [];
  for (const event of inline) {
    try {
      await bus.publishEvent(event.subject, event.envelope);
      published.push(event.envelope.id);
    } catch (err) {
      logger.warn(
        {
          err,
          ...eventFields(logger, {
            eventId: event.envelope.id,
            subject: event.subject,
            correlationId: event.envelope.correlationId,
          }),
        },
        "event publish deferred to outbox relay",
      );
      break;
    }
  }
  if (published.length > 0) {
    try {
      await markerFor(db).mark(published);
    } catch (err) {
      // Ya está en JetStream: si no se pudo marcar, el relay lo republica y se deduplica.
      logger.warn({ err, eventIds: published }, "outbox publish mark failed; relay will retry");
    }
  }
  return published.length;
}

export const RELAY_LOCK_ID = 727_274_002;
/**
 * La transacción del relay (con su candado) sigue abierta mientras publica. Si su enlace con
 * Postgres enmudece (partición sin RST), el servidor la mantendría horas (keepalive TCP): con este
 * tope de inactividad dentro de la transacción la corta y otro relay sigue. Cada publicación tarda
 * como mucho 3 s, así que un relay sano nunca llega a él.
 */
export const RELAY_STALL_TIMEOUT_MS = 15_000;

/** Fallos seguidos de un mismo evento con NATS sano antes de apartarlo (parked_at). */
export const PARK_AFTER_ATTEMPTS = 5;
/**
 * Un evento apartado se reintenta pasado este plazo desde el último intento: apartar solo deja
 * pasar a los demás; un stream que vuelve (recreado, elección de líder) no pierde el evento.
 */
export const PARKED_RETRY_MS = 60_000;
/** Apartados reintentados por pasada, para que no retrasen a los pendientes nuevos. */
const PARKED_RETRY_BATCH = 10;

export interface RelayResult {
  locked: boolean;
  published: number;
  failed: boolean;
  /** Eventos apartados en esta pasada. */
  parked: number;
  /** Eventos apartados que esta pasada logró publicar (incluidos en `published`). */
  unparked: number;
}

/** ¿JetStream responde? Distingue "este evento no se puede publicar" de "NATS está caído". */
async function jetStreamHealthy(bus: Bus): Promise<boolean> {
  if (!bus.isConnected()) return false;
  try {
    await (await bus.jsm()).getAccountInfo();
    return true;
  } catch {
    return false;
  }
}

/** Lo que identifica un evento en las líneas del relay: con su correlación, la traza de la petición sigue. */
function eventTrail(row: { id: string; subject: string; correlationId: string | null }) {
  return {
    eventId: row.id,
    subject: row.subject,
    ...(row.correlationId ? { correlationId: row.correlationId } : {}),
  };
}

/**
 * Una pasada del relay: publica en orden lo pendiente. Solo un relay a la vez
 * (advisory lock de transacción); si otro lo tiene, no hace nada. Un evento que falla con
 * JetStream sano se reintenta en pasadas siguientes y, tras PARK_AFTER_ATTEMPTS, se aparta para
 * que no frene a los demás para siempre.
 */
export async function relayOnce(
  db: Database,
  bus: Bus,
  logger: Logger,
  options: {
    batchSize?: number;
    graceMs?: number;
    parkedRetryMs?: number;
    stallTimeoutMs?: number;
  } = {},
): Promise<RelayResult> {
  const batchSize = options.batchSize ?? 100;
  const stallTimeoutMs = options.stallTimeoutMs ?? RELAY_STALL_TIMEOUT_MS;
  const graceMs = options.graceMs ?? 1_000;
  const parkedRetryMs = options.parkedRetryMs ?? PARKED_RETRY_MS;
  // Con NATS desconectado no se abre la transacción: en PGlite (una sola conexión) retenerla
  // durante el timeout de publicación frenaría a todo el proceso.
  if (!bus.isConnected())
    return { locked: false, published: 0, failed: true, parked: 0, unparked: 0 };
  return db.transaction(async (tx) => {
    await tx.execute(
      sql`select set_config('idle_in_transaction_session_timeout', ${String(stallTimeoutMs)}, true)`,
    );
    const [lock] = rowsOf<{ locked: boolean }>(
      await tx.execute(sql`select pg_try_advisory_xact_lock(${RELAY_LOCK_ID}) as locked`),
    );
    if (!lock?.locked)
      return { locked: false, published: 0, failed: false, parked: 0, unparked: 0 };
    // El periodo de gracia deja a la función publicar lo suyo sin carrera con el relay.
    const pending = await tx
      .select()
      .from(outboxEvents)
      .where(
        and(
          isNull(outboxEvents.publishedAt),
          isNull(outboxEvents.parkedAt),
          lt(outboxEvents.createdAt, sql`now() - make_interval(secs => ${graceMs / 1000})`),
        ),
      )
      .orderBy(asc(outboxEvents.seq))
      .limit(batchSize);
    let published = 0;
    let parked = 0;
    for (const row of pending) {
      try {
        await publishRow(tx, bus, row);
        published++;
      } catch (err) {
        const lastError = errorMessage(err);
        const healthy = await jetStreamHealthy(bus);
        // Solo cuentan los fallos con JetStream sano: los de una caída no dicen nada del evento.
        const attempts = healthy ? row.attempts + 1 : row.attempts;
        const park = healthy && attempts >= PARK_AFTER_ATTEMPTS;
        await tx
          .update(outboxEvents)
          .set({ attempts, lastError, ...(park ? { parkedAt: sql`now()` } : {}) })
          .where(eq(outboxEvents.id, row.id));
        const fields = { err, ...eventTrail(row), attempts };
        if (park) {
          parked++;
          logger.error(
            { ...fields, retryInMs: parkedRetryMs },
            "outbox event parked: publishing keeps failing while NATS is up",
          );
          continue;
        }
        logger.warn(fields, "outbox relay publish failed");
        // NATS caído: se espera (backoff). Con NATS sano el evento se reintenta en la próxima
        // pasada antes que los siguientes, para conservar el orden mientras no se aparte.
        return { locked: true, published, failed: true, parked, unparked: 0 };
      }
    }
    const unparked = await retryParked(tx, bus, logger, parkedRetryMs);
    published += unparked;
    if (published > 0) logger.info({ published }, "outbox relay published pending events");
    return { locked: true, published, failed: false, parked, unparked };
  });
}

async function publishRow(tx: Executor, bus: Bus, row: typeof outboxEvents.$inferSelect) {
  await bus.publishEvent(row.subject, row.payload as EventEnvelope);
  await tx
    .update(outboxEvents)
    .set({
      publishedAt: sql`now()`,
      parkedAt: null,
      attempts: sql`${outboxEvents.attempts} + 1`,
      lastError: null,
    })
    .where(eq(outboxEvents.id, row.id));
}

/** Reintenta los apartados cuyo plazo venció; devuelve cuántos se publicaron. */
async function retryParked(
  tx: Executor,
  bus: Bus,
  logger: Logger,
  parkedRetryMs: number,
): Promise<number> {
  const due = await tx
    .select()
    .from(outboxEvents)
    .where(
      and(
        isNull(outboxEvents.publishedAt),
        isNotNull(outboxEvents.parkedAt),
        lte(outboxEvents.parkedAt, sql`now() - make_interval(secs => ${parkedRetryMs / 1000})`),
      ),
    )
    .orderBy(asc(outboxEvents.seq))
    .limit(PARKED_RETRY_BATCH);
  let unparked = 0;
  for (const row of due) {
    const fields = { ...eventTrail(row), parkedAt: row.parkedAt };
    try {
      await publishRow(tx, bus, row);
      unparked++;
      logger.info(fields, "parked outbox event published on retry");
    } catch (err) {
      const healthy = await jetStreamHealthy(bus);
      await tx
        .update(outboxEvents)
        .set({
          parkedAt: sql`now()`,
          lastError: errorMessage(err),
          ...(healthy ? { attempts: sql`${outboxEvents.attempts} + 1` } : {}),
        })
        .where(eq(outboxEvents.id, row.id));
      logger.error(
        { ...fields, err, retryInMs: parkedRetryMs },
        "parked outbox event still failing",
      );
      if (!healthy) break;
    }
  }
  return unparked;
}
