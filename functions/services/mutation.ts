import type { SQLWrapper } from "drizzle-orm";
import { domainEventSubject } from "../../contracts/streams";
import type { BusProvider } from "../../core/bus-provider";
import { AppError } from "../../core/errors";
import type { Logger } from "../../core/logger";
import { type AuditEntry, auditInsert } from "../../db/audit";
import { executeAll } from "../../db/batch";
import { type NewEvent, outboxInsert, publishQueued, type QueuedEvent } from "../../db/outbox";
import type { Database, Tx } from "../../db/types";

export interface ServiceContext {
  db: Database;
  bus: BusProvider;
  logger: Logger;
  actor: string;
  correlationId: string;
  baseDomain: string;
  /** Si se pasa de esta hora (epoch ms) antes de confirmar, la mutación se revierte (503). */
  commitDeadline?: number | undefined;
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
