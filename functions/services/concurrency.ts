import type { Context } from "hono";
import { AppError } from "../../core/errors";
import { canonicalJson, sha256Hex } from "../../core/ids";

/** ETag fuerte a partir de la versión de fila. */
export function etagFor(rowVersion: number): string {
  return `"v${rowVersion}"`;
}

/** Resumen corto de una vista, estable ante el orden de sus claves. */
export async function viewDigest(view: unknown): Promise<string> {
  return (await sha256Hex(canonicalJson(view))).slice(0, 12);
}

/**
 * ETag de una vista que junta la fila con otras (p. ej. una instancia con su suscripción y plan):
 * la versión de la fila más un resumen de la vista, así cambia cuando cambia cualquier parte.
 * En If-Match, "vN" compara solo la versión; "vN.<resumen>", el ETag entero (assertViewVersion).
 */
export async function compositeEtagFor(rowVersion: number, view: unknown): Promise<string> {
  return `"v${rowVersion}.${await viewDigest(view)}"`;
}

/**
 * ETag de un recurso sin versión de fila que nadie edita con If-Match (una tarea, una entrada de la
 * DLQ): el resumen de lo que se muestra, así cambia cuando cambia cualquier parte.
 */
export async function contentEtagFor(view: unknown): Promise<string> {
  return `"${await viewDigest(view)}"`;
}

/** Un ETag propio leído de If-Match: la versión de fila y, si era compuesto, el resumen de la vista. */
export interface OwnEntityTag {
  version: number;
  digest: string | undefined;
}

/**
 * Precondición If-Match ya interpretada: los ETags propios de la lista (la escritura sigue si uno
 * coincide con el vigente), o `undefined` sin cabecera o con `*`.
 */
export type IfMatch = readonly OwnEntityTag[] | undefined;

// RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc admite comas, por eso se
// recorre la lista con un patrón anclado en vez de partirla por comas.
// Los elementos vacíos de la lista (", , ") se aceptan y se ignoran (RFC 9110 §5.6.1).
const EMPTY_ELEMENT = /[ \t]*,/y;
const ENTITY_TAG = /[ \t]*(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)/y;
// Sin ceros a la izquierda: "v03" es otro ETag opaco, no la versión 3.
const OWN_OPAQUE_TAG = /^v(0|[1-9]\d{0,8})(?:\.([0-9a-f]{12}))?$/;

function invalidIfMatch(): AppError {
  return new AppError("validation_failed", "If-Match must be * or a list of quoted ETags", {
    fields: [{ path: "header.if-match", message: 'Expected * or ETags such as "v3"' }],
  });
}

/**
 * If-Match → versiones aceptables (RFC 9110 §13.1.1). Una lista coincide si coincide cualquiera de
 * sus ETags; la comparación es fuerte, así que un ETag débil o de otro servidor nunca coincide
 * (412). Una cabecera que no es una lista de ETags es un 400 que la nombra.
 */
export function expectedVersion(c: Context): IfMatch {
  const header = c.req.header("if-match")?.trim();
  if (!header || header === "*") return undefined;
  const tags: OwnEntityTag[] = [];
  for (let at = 0; at < header.length; ) {
    EMPTY_ELEMENT.lastIndex = at;
    if (EMPTY_ELEMENT.test(header)) {
      at = EMPTY_ELEMENT.lastIndex;
      continue;
    }
    ENTITY_TAG.lastIndex = at;
    const match = ENTITY_TAG.exec(header);
    if (!match) throw invalidIfMatch();
    at = ENTITY_TAG.lastIndex;
    const own = match[1] ? undefined : OWN_OPAQUE_TAG.exec(match[2] ?? "");
    if (own?.[1]) tags.push({ version: Number(own[1]), digest: own[2] });
  }
  return tags;
}

/**
 * ¿Falla If-Match para una fila en esta versión? Su ETag es "vN": uno con resumen no lo sirve este
 * recurso y nunca coincide (comparación fuerte).
 */
export function ifMatchFails(ifMatch: IfMatch, rowVersion: number): boolean {
  return (
    ifMatch !== undefined &&
    !ifMatch.some((t) => t.version === rowVersion && t.digest === undefined)
  );
}

function staleIfMatch(entity: string, id: string): AppError {
  return new AppError(
    "precondition_failed",
    `${entity} ${id} was modified since it was read (stale If-Match)`,
  );
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
  throw staleIfMatch(entity, id);
}

/** If-Match comprobado contra una fila ya bloqueada (FOR UPDATE): 412 si la versión cambió. */
export function assertVersion(
  rowVersion: number,
  ifMatch: IfMatch,
  entity: string,
  id: string,
): void {
  if (ifMatchFails(ifMatch, rowVersion)) throw staleIfMatch(entity, id);
}

/**
 * If-Match contra una vista compuesta (compositeEtagFor) cuya fila ya está bloqueada: "vN" compara
 * la versión de la fila; "vN.<resumen>" debe ser el ETag vigente, así que la vista se recalcula
 * (solo si hace falta) dentro de la misma transacción. 412 si ninguno coincide.
 */
export async function assertViewVersion(
  rowVersion: number,
  ifMatch: IfMatch,
  currentView: () => Promise<unknown>,
  entity: string,
  id: string,
): Promise<void> {
  if (ifMatch === undefined) return;
  const sameVersion = ifMatch.filter((t) => t.version === rowVersion);
  if (sameVersion.some((t) => t.digest === undefined)) return;
  if (sameVersion.length > 0) {
    const digest = await viewDigest(await currentView());
    if (sameVersion.some((t) => t.digest === digest)) return;
  }
  throw staleIfMatch(entity, id);
}

export function notFound(entity: string, id: string): AppError {
  return new AppError("not_found", `${entity} ${id} does not exist`);
}
