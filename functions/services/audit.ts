import { and, desc, eq, gte, lt, sql } from "drizzle-orm";
import { z } from "zod";
import { AppError } from "../../core/errors";
import { base64url, fromBase64url } from "../../core/ids";
import { auditLog } from "../../db/schema";
import type { Executor } from "../../db/types";
import { instantInRange } from "../routes/instant";

export interface AuditFilters {
  entityType?: string | undefined;
  entityId?: string | undefined;
  actor?: string | undefined;
  action?: string | undefined;
  correlationId?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

// Cursor opaco sobre (occurred_at, id): la auditoría se lee de la más nueva a la más vieja, y un
// índice por ese par (solo o detrás del actor) sirve también con una ventana de tiempo.
const cursorSchema = z.object({
  o: z.iso.datetime().refine(instantInRange),
  i: z.number().int().positive(),
});
type AuditCursor = z.infer<typeof cursorSchema>;
// El de antes (solo el id): quien paginaba durante el despliegue sigue donde iba.
const legacyCursorSchema = z.object({ i: z.number().int().positive() }).strict();

function encodeCursor(occurredAt: Date, id: number): string {
  const cursor: AuditCursor = { o: occurredAt.toISOString(), i: id };
  return base64url(new TextEncoder().encode(JSON.stringify(cursor)));
}

function decodeCursor(cursor: string): AuditCursor | { i: number } {
  try {
    const raw: unknown = JSON.parse(new TextDecoder().decode(fromBase64url(cursor)));
    const legacy = legacyCursorSchema.safeParse(raw);
    return legacy.success ? legacy.data : cursorSchema.parse(raw);
  } catch (err) {
    throw new AppError("validation_failed", "The cursor is invalid", {
      cause: err,
      fields: [{ path: "query.cursor", message: "Invalid cursor" }],
    });
  }
}

/** Un cursor viejo (solo id) como uno nuevo: el instante de esa entrada. */
async function cursorAt(db: Executor, id: number): Promise<AuditCursor> {
  const [row] = await db
    .select({ occurredAt: auditLog.occurredAt })
    .from(auditLog)
    .where(eq(auditLog.id, id));
  if (!row) {
    throw new AppError("validation_failed", "The cursor is invalid", {
      fields: [{ path: "query.cursor", message: "Invalid cursor" }],
    });
  }
  return { o: row.occurredAt.toISOString(), i: id };
}

export async function listAudit(
  db: Executor,
  filters: AuditFilters,
  page: { limit: number; cursor?: string | undefined },
) {
  const from = filters.from ? new Date(filters.from) : undefined;
  const to = filters.to ? new Date(filters.to) : undefined;
  if (from && to && from.getTime() > to.getTime()) {
    throw new AppError("validation_failed", "from must not be later than to", {
      fields: [{ path: "query.from", message: "Later than query.to" }],
    });
  }
  const decoded = page.cursor ? decodeCursor(page.cursor) : undefined;
  const before = decoded && !("o" in decoded) ? await cursorAt(db, decoded.i) : decoded;
  const rows = await db
    .select()
    .from(auditLog)
    .where(
      and(
        filters.entityType ? eq(auditLog.entityType, filters.entityType) : undefined,
        filters.entityId ? eq(auditLog.entityId, filters.entityId) : undefined,
        filters.actor ? eq(auditLog.actor, filters.actor) : undefined,
        filters.action ? eq(auditLog.action, filters.action) : undefined,
        filters.correlationId ? eq(auditLog.correlationId, filters.correlationId) : undefined,
        from ? gte(auditLog.occurredAt, from) : undefined,
        to ? lt(auditLog.occurredAt, to) : undefined,
        before
          ? sql`(${auditLog.occurredAt}, ${auditLog.id}) < (${before.o}::timestamptz, ${before.i})`
          : undefined,
      ),
    )
    .orderBy(desc(auditLog.occurredAt), desc(auditLog.id))
    .limit(page.limit + 1);
  const items = rows.slice(0, page.limit);
  const last = items[items.length - 1];
  return {
    items: items.map((r) => ({
      id: r.id,
      occurredAt: r.occurredAt.toISOString(),
      actor: r.actor,
      action: r.action,
      entityType: r.entityType,
      entityId: r.entityId,
      before: r.before ?? null,
      after: r.after ?? null,
      correlationId: r.correlationId,
    })),
    nextCursor: rows.length > page.limit && last ? encodeCursor(last.occurredAt, last.id) : null,
  };
}
