import type { Context } from "hono";
import { AppError } from "../../core/errors";
import { canonicalJson, sha256Hex } from "../../core/ids";

/** ETag fuerte a partir de la versión de fila. */
export function etagFor(rowVersion: number): string {
  return `"v${rowVersion}"`;
}

/**
 * ETag de una vista que junta la fila con otras (p. ej. una instancia con su suscripción y plan):
 * la versión de la fila más un resumen de la vista, así cambia cuando cambia cualquier parte.
 * If-Match solo compara la versión de la fila, que es lo que el PATCH modifica.
 */
export async function compositeEtagFor(rowVersion: number, view: unknown): Promise<string> {
  const digest = (await sha256Hex(canonicalJson(view))).slice(0, 12);
  return `"v${rowVersion}.${digest}"`;
}

/** If-Match → versión esperada; sin cabecera (o `*`) no hay precondición. */
export function expectedVersion(c: Context): number | undefined {
  const header = c.req.header("if-match");
  if (!header || header.trim() === "*") return undefined;
  const match = /^"v(\d{1,9})(?:\.[0-9a-f]{12})?"$/.exec(header.trim());
  if (!match?.[1]) {
    throw new AppError("precondition_failed", "If-Match must be an ETag returned by this API");
  }
  return Number(match[1]);
}

/**
 * Tras un UPDATE condicionado por versión: sin fila actualizada, 404 si no existe o 412 si la
 * versión ya cambió (escritura sobre datos viejos).
 */
export function assertUpdated<T>(
  row: T | undefined,
  exists: boolean,
  entity: string,
  id: string,
): T {
  if (row) return row;
  if (!exists) throw new AppError("not_found", `${entity} ${id} does not exist`);
  throw new AppError(
    "precondition_failed",
    `${entity} ${id} was modified since it was read (stale If-Match)`,
  );
}

/** If-Match comprobado contra una fila ya bloqueada (FOR UPDATE): 412 si la versión cambió. */
export function assertVersion(
  rowVersion: number,
  ifMatch: number | undefined,
  entity: string,
  id: string,
): void {
  if (ifMatch !== undefined && rowVersion !== ifMatch) {
    throw new AppError(
      "precondition_failed",
      `${entity} ${id} was modified since it was read (stale If-Match)`,
    );
  }
}

export function notFound(entity: string, id: string): AppError {
  return new AppError("not_found", `${entity} ${id} does not exist`);
}
