export { errorMessage } from "../../core/http/db-errors";

/** Error que ningún reintento arreglará (p. ej. un payload que no cumple su esquema): va directo a la DLQ. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentError;
}
