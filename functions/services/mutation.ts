import { and, eq, isNull, type SQLWrapper, sql } from "drizzle-orm";
import { domainEventSubject } from "../../contracts/streams";
import type { BusProvider } from "../../core/bus-provider";
import { AppError } from "../../core/errors";
import type { Logger } from "../../core/logger";
import { type AuditEntry, auditInsert } from "../../db/audit";
import { executeAll } from "../../db/batch";
import { type NewEvent, outboxInsert, publishQueued, type QueuedEvent } from "../../db/outbox";
import { idempotencyKeys } from "../../db/schema";
import type { Database, Executor, Tx } from "../../db/types";

export interface ServiceContext {
  db: Database;
  bus: BusProvider;
  logger: Logger;
  actor: string;
  correlationId: string;
  baseDomain: string;
  /** Si se pasa de esta hora (epoch ms) antes de confirmar, la mutación se revierte (503). */
  commitDeadline?: number | undefined;
  /** Reserva de Idempotency-Key de la petición: se marca confirmada en la transacción del cambio. */
  idempotency?: IdempotencyReservation | undefined;
}

/** La reserva (actor, clave) que tomó una petición, identificada por su created_at. */
export interface IdempotencyReservation {
  actor: string;
  key: string;
  reservedAt: Date;
}

/**
 * Marca confirmada la reserva, dentro de la transacción del cambio: si luego no se guarda la
 * respuesta (caída entre el commit y ese UPDATE), un reintento ve que el cambio ya se aplicó y no
 * lo repite. Si un reintento ya tomó la reserva (esta petición pasó de su plazo), se revierte.
 */
export async function confirmIdempotencyReservation(
  tx: Executor,
  reservation: IdempotencyReservation,
): Promise<void> {
  const k = idempotencyKeys;
  const [confirmed] = await tx
    .update(k)
    .set({ committedAt: sql`now()` })
    .where(
      and(
        eq(k.actor, reservation.actor),
        eq(k.key, reservation.key),
        eq(k.createdAt, reservation.reservedAt),
        isNull(k.status),
      ),
    )
    .returning({ actor: k.actor });
  if (!confirmed) {
    throw new AppError(
      "unavailable",
      "The request took too long and was rolled back; retry it with the same Idempotency-Key",
    );
  }
}

export interface MutationOutcome<T> {
  result: T;
  audit: Omit<AuditEntry, "actor" | "correlationId">[];
  events?: Omit<NewEvent, "correlationId">[];
}

/**
 * Toda mutación pasa por aquí: el cambio, sus filas de auditoría y sus eventos de outbox se
 * confirman en una transacción (si la auditoría falla, el cambio se revierte); luego se publica.
 */
export async function mutate<T>(
  ctx: ServiceContext,
  work: (tx: Tx) => Promise<MutationOutcome<T>>,
): Promise<T> {
  const { result, queued } = await ctx.db.transaction(async (tx) => {
    const outcome = await work(tx);
    // Auditoría y outbox en una sola sentencia: un viaje a la base por mutación, no uno por fila.
    const statements: SQLWrapper[] = [];
    if (outcome.audit.length > 0) {
      statements.push(
        auditInsert(
          tx,
          outcome.audit.map((entry) => ({
            ...entry,
            actor: ctx.actor,
            correlationId: ctx.correlationId,
          })),
        ),
      );
    }
    let queued: QueuedEvent[] = [];
    const events = outcome.events ?? [];
    if (events.length > 0) {
      const outbox = outboxInsert(
        tx,
        events.map((event) => ({ ...event, correlationId: ctx.correlationId })),
      );
      statements.push(outbox.statement);
      queued = outbox.queued;
    }
    await executeAll(tx, statements);
    if (ctx.idempotency) await confirmIdempotencyReservation(tx, ctx.idempotency);
    if (ctx.commitDeadline !== undefined && Date.now() > ctx.commitDeadline) {
      // Su reserva de Idempotency-Key puede haber pasado a un reintento: confirmar ahora podría
      // aplicar el cambio dos veces. Se revierte y el cliente reintenta con la misma clave.
      throw new AppError(
        "unavailable",
        "The request took too long and was rolled back; retry it with the same Idempotency-Key",
      );
    }
    return { result: outcome.result, queued };
  });
  if (queued.length > 0) await publishQueued(ctx.db, await ctx.bus.get(), queued, ctx.logger);
  return result;
}

/** Evento de dominio de una mutación (`integration.tasks.<entidad>.<acción>`). */
export function domainEvent(
  entity: string,
  action: string,
  data: Record<string, unknown>,
): Omit<NewEvent, "correlationId"> {
  return { subject: domainEventSubject(entity, action), type: `${entity}.${action}`, data };
}
