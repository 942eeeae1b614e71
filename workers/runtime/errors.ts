import { pgErrorCode } from "../../core/http/db-errors";

/** Error que ningún reintento arreglará (p. ej. un payload que no cumple su esquema): va directo a la DLQ. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentError;
}

/**
 * Texto del error para la tarea, la DLQ y los avisos por correo. De un fallo de drizzle solo el
 * error de la base: su mensaje trae el SQL y los parámetros (datos personales, cadenas cifradas).
 */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    if (err.message.startsWith("Failed query:") && err.cause instanceof Error) {
      const code = pgErrorCode(err);
      const suffix = code ? ` (${code})` : "";
      // Postgres repite el valor rechazado al final (`…: "valor"`): se quita también.
      const message = err.cause.message.replace(/: ".*"$/s, ': "…"');
      return `database error: ${message}${suffix}`.slice(0, 1000);
    }
    return err.message.slice(0, 1000);
  }
  return String(err).slice(0, 1000);
}
