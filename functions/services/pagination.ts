import { type AnyColumn, asc, type SQL, sql } from "drizzle-orm";
import { z } from "zod";
import { AppError } from "../../core/errors";
import { base64url, fromBase64url } from "../../core/ids";
import { instantInRange } from "../routes/instant";

// Con los años de toda fecha de la API: uno fuera de rango lo rechazaba Postgres (un 400 sin campo).
const cursorSchema = z.object({ t: z.iso.datetime().refine(instantInRange), i: z.uuid() });

export function encodeCursor(createdAt: Date, id: string): string {
  return base64url(new TextEncoder().encode(JSON.stringify({ t: createdAt.toISOString(), i: id })));
}

function decodeCursor(cursor: string): z.infer<typeof cursorSchema> {
  try {
    return cursorSchema.parse(JSON.parse(new TextDecoder().decode(fromBase64url(cursor))));
  } catch (err) {
    throw new AppError("validation_failed", "The cursor is invalid", {
      cause: err,
      fields: [{ path: "query.cursor", message: "Invalid cursor" }],
    });
  }
}

/** Paginación por clave (created_at, id): estable aunque se inserten filas entre páginas. */
export function keyset(createdAt: AnyColumn, id: AnyColumn, cursor: string | undefined) {
  const after: SQL | undefined = cursor
    ? (() => {
        const c = decodeCursor(cursor);
        return sql`(${createdAt}, ${id}) > (${c.t}::timestamptz, ${c.i}::uuid)`;
      })()
    : undefined;
  return { after, orderBy: [asc(createdAt), asc(id)] as const };
}

export function toPage<T extends { createdAt: Date; id: string }, U>(
  rows: T[],
  limit: number,
  map: (row: T) => U,
): { items: U[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map(map),
    nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt, last.id) : null,
  };
}
