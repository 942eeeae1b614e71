import { auditLog } from "./schema";
import type { Executor } from "./types";

export interface AuditEntry {
  actor: string;
  action: string;
  entityType: string;
  entityId: string;
  before?: unknown;
  after?: unknown;
  correlationId?: string | null;
}

/**
 * Arma un INSERT de varias filas de auditoría, para ejecutarlo junto al cambio (db/batch.ts).
 * Un solo INSERT conserva el orden de las entradas en los ids.
 */
export function auditInsert(tx: Executor, entries: AuditEntry[]) {
  return tx.insert(auditLog).values(
    entries.map((entry) => ({
      actor: entry.actor,
      action: entry.action,
      entityType: entry.entityType,
      entityId: entry.entityId,
      before: entry.before ?? null,
      after: entry.after ?? null,
      correlationId: entry.correlationId ?? null,
    })),
  );
}

/** Se escribe en la misma transacción que el cambio: si falla, el cambio se revierte. */
export async function writeAudit(tx: Executor, entry: AuditEntry): Promise<void> {
  await auditInsert(tx, [entry]);
}
