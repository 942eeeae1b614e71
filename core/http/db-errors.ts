import { AppError } from "../errors";

interface PgErrorLike {
  code: string;
  constraint?: string;
  detail?: string;
}

function findPgError(err: unknown): PgErrorLike | undefined {
  let current: unknown = err;
  // drizzle envuelve el error del driver en `cause`; buscamos unos pocos niveles.
  for (let depth = 0; depth < 4 && current && typeof current === "object"; depth++) {
    const candidate = current as { code?: unknown; cause?: unknown };
    if (typeof candidate.code === "string" && /^[0-9A-Z]{5}$/.test(candidate.code)) {
      return candidate as PgErrorLike;
    }
    current = candidate.cause;
  }
  return undefined;
}

export function pgErrorCode(err: unknown): string | undefined {
  return findPgError(err)?.code;
}

export function pgConstraint(err: unknown): string | undefined {
  return findPgError(err)?.constraint;
}

const CONNECTION_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);
// pg-pool y node-postgres no dan código en estos casos: solo el mensaje.
const CONNECTION_MESSAGE =
  /connection terminated|timeout exceeded when trying to connect|connection timeout|server closed the connection|connect ECONNREFUSED/i;

/**
 * La base no responde (caída, reinicio, sin conexiones libres): no es un fallo del pedido, es un
 * 503 que se puede reintentar. Clase 08 de Postgres, 57P01-03, 53300, o un error de red.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = pgErrorCode(err);
  if (code) return code.startsWith("08") || /^57P0[123]$/.test(code) || code === "53300";
  let current: unknown = err;
  for (let depth = 0; depth < 4 && current && typeof current === "object"; depth++) {
    const candidate = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof candidate.code === "string" && CONNECTION_ERRNOS.has(candidate.code)) return true;
    if (typeof candidate.message === "string" && CONNECTION_MESSAGE.test(candidate.message)) {
      return true;
    }
    current = candidate.cause;
  }
  return false;
}

// Traduce violaciones de restricciones de Postgres en errores de cliente, nunca en 500.
export function mapDatabaseError(err: unknown): AppError | undefined {
  if (isDatabaseUnavailable(err)) {
    return new AppError("unavailable", "The database is unavailable; retry later", { cause: err });
  }
  const pg = findPgError(err);
  if (!pg) return undefined;
  // Nunca con el nombre de la restricción (es del esquema, no del contrato): cada servicio atrapa
  // las suyas y nombra el campo; esto es solo la red para una que se le escape.
  switch (pg.code) {
    case "23505":
      return new AppError("conflict", "A resource with the same unique key already exists", {
        cause: err,
      });
    case "23503":
      // Trigger de tenant_instances: el cliente se borró mientras se creaba la instancia.
      if (pg.constraint === "tenant_instances_live_customer") {
        return new AppError("not_found", "The customer does not exist or was deleted", {
          cause: err,
          fields: [{ path: "body.customerId", message: "Unknown customer" }],
        });
      }
      return new AppError(
        "unprocessable",
        "A referenced resource does not exist or does not match",
        {
          cause: err,
        },
      );
    case "23514":
    case "23502":
      return new AppError("unprocessable", "The change breaks a data rule", { cause: err });
    case "22P02":
    case "22003":
    case "22007":
    case "22008":
    // Fecha fuera de rango: un año de cinco cifras ("+010000-…") llega como desplazamiento de zona.
    // Los esquemas ya acotan los años; esto evita un 500 si alguno se escapa.
    case "22009":
      return new AppError("bad_request", "A value has an invalid format", { cause: err });
    // NUL (\u0000) u otros caracteres que Postgres no puede guardar en text/jsonb.
    case "22021":
    case "22P05":
      return new AppError(
        "bad_request",
        "A value contains a character that cannot be stored (such as NUL)",
        { cause: err },
      );
    // Valor demasiado grande para un índice u otro límite del motor.
    case "54000":
    case "22001":
      return new AppError("bad_request", "A value is too long", { cause: err });
    // statement_timeout (o un operador que canceló la consulta): la base no contestó a tiempo.
    case "57014":
      return new AppError("unavailable", "The database did not answer in time; retry later", {
        cause: err,
      });
    case "40001":
    case "40P01":
      return new AppError("conflict", "The change conflicted with a concurrent one; retry it", {
        cause: err,
      });
    default:
      return undefined;
  }
}

/**
 * Texto del error para logs, tareas, la DLQ y los avisos por correo. De un fallo de drizzle solo el
 * error de la base: su mensaje trae el SQL y los parámetros (datos personales, cadenas cifradas).
 */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    if (err.message.startsWith("Failed query:") && err.cause instanceof Error) {
      const code = pgErrorCode(err);
      const suffix = code ? ` (${code})` : "";
      // Postgres repite el valor rechazado al final (`…: "valor"`): se quita también, desde el
      // primer `: "` (sin regex: con muchos `: "` y sin comilla final, una costaba tiempo cuadrático).
      const raw = err.cause.message;
      const at = raw.endsWith('"') ? raw.indexOf(': "') : -1;
      const message = at >= 0 && at + 3 < raw.length ? `${raw.slice(0, at)}: "…"` : raw;
      return withoutEmails(`database error: ${message}${suffix}`);
    }
    // Sin la causa, el mensaje de drizzle es solo la consulta y sus parámetros.
    if (err.message.startsWith("Failed query:")) return "database error";
    return withoutEmails(err.message);
  }
  // Lo que se lanza sin ser un Error (p. ej. el ErrnoError de Emscripten dentro de PGlite): su
  // mensaje, o su nombre y códigos, no "[object Object]".
  if (err !== null && typeof err === "object") {
    const { message, name, code, errno } = err as Record<string, unknown>;
    if (typeof message === "string" && message) return withoutEmails(message);
    const parts = [
      typeof name === "string" ? name : "error",
      typeof code === "string" ? code : undefined,
      typeof errno === "number" ? `errno ${errno}` : undefined,
    ];
    return parts.filter(Boolean).join(" ");
  }
  return withoutEmails(String(err));
}

const MAX_ERROR_TEXT = 1000;
// Partes acotadas (RFC 5321: 64 y 255): sin cota, un texto largo sin "@" costaba tiempo cuadrático.
const EMAIL_RE = /[^\s<>()[\]"',;:@]{1,64}@[^\s<>()[\]"',;:@]{1,255}\.[A-Za-z]{2,63}/g;

const SEPARATOR_RE = /[\s<>()[\]"',;:]/;

/**
 * Este texto va a la DLQ, a cabeceras de JetStream y a los logs, adonde el borrado GDPR no llega:
 * sin direcciones de correo (un servidor SMTP repite la del destinatario al rechazarla). Se
 * recorta antes de buscar (con margen, y en un separador: una dirección no queda a medias y sin
 * reconocer) y otra vez después.
 */
function withoutEmails(text: string): string {
  let window = text;
  if (text.length > MAX_ERROR_TEXT + 400) {
    let end = MAX_ERROR_TEXT + 400;
    while (end > 0 && !SEPARATOR_RE.test(text.charAt(end - 1))) end--;
    window = text.slice(0, end || MAX_ERROR_TEXT + 400);
  }
  return window.replace(EMAIL_RE, "<email>").slice(0, MAX_ERROR_TEXT);
}

/**
 * Error para los logs: tipo, texto sin SQL ni parámetros (errorMessage) y los marcos de la pila
 * (sin el mensaje completo que la encabeza).
 */
export function loggableError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: errorMessage(err) };
  return {
    type: err.name,
    message: errorMessage(err),
    code: pgErrorCode(err),
    stack: stackFrames(err),
  };
}

/** Un marco de V8: «    at fn (archivo:línea:col)», «    at archivo:línea:col» o «    at <anonymous>». */
const FRAME_RE = /^ {4}at (?:.*\(.*\)|\S+:\d+:\d+|<anonymous>)$/;

/**
 * Solo los marcos de la pila. El mensaje de drizzle ocupa varias líneas (consulta y `params:`) y un
 * parámetro puede imitar un marco: se corta el encabezado (el mensaje) antes de filtrar.
 */
function stackFrames(err: Error): string | undefined {
  if (!err.stack) return undefined;
  const at = err.message ? err.stack.indexOf(err.message) : -1;
  const frames = at >= 0 ? err.stack.slice(at + err.message.length) : err.stack;
  return frames
    .split("\n")
    .filter((line) => FRAME_RE.test(line))
    .join("\n");
}
