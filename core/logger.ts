import { type DestinationStream, type Logger as PinoLogger, pino } from "pino";
import { invalidConfiguration, LOG_LEVELS } from "./config";
import { loggableError } from "./http/db-errors";

export type Logger = PinoLogger;

// Rutas redactadas: secretos y credenciales nunca llegan a los logs.
const SECRET_KEYS = [
  "password",
  "secret",
  "clientSecret",
  "client_secret",
  "authorization",
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "refresh_token",
  "secretHash",
  "secret_hash",
  "connectionString",
  "smtpUrl",
  "cookie",
];
const REDACT = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((key) => `*.${key}`),
  "req.headers.authorization",
];

export interface LoggerOptions {
  service: string;
  level?: string;
  /** Destino de las líneas (stdout si no se da). */
  destination?: DestinationStream;
}

export function createLogger({ service, level: raw, destination }: LoggerOptions): Logger {
  // `INFO` vale como `info`, como siempre aceptó pino.
  const level = raw?.toLowerCase();
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) {
    // Con el nombre de la variable, como el resto de la configuración (pino lanzaría con su pila).
    throw invalidConfiguration([
      ["LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")} (got "${level}")`],
    ]);
  }
  return pino(
    {
      level: level ?? "info",
      redact: { paths: REDACT, censor: "[redacted]" },
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // `{ err }` en cualquier log: el error de drizzle lleva el SQL y sus parámetros (datos
      // personales, cadenas de conexión cifradas); solo queda el error de la base y la pila.
      // `error` y `cause` también: un Error bajo otra clave llevaría las propiedades enumerables de
      // drizzle (`query`, `params`). Un texto bajo `error` queda como está.
      serializers: { err: loggableError, error: errorOrText, cause: errorOrText },
      // En workerd (el edge) pino es su versión de navegador: sin esto no redacta ni aplica los
      // serializadores, y escribe sin nivel, hora ni servicio (no lee `base`). Así, un objeto por
      // entrada con los mismos campos que en Node (Workers Logs indexa sus campos).
      browser: {
        asObject: true,
        serialize: true,
        formatters: {
          level: (label) => ({ level: label }),
          log: (entry) => ({ service, ...entry }),
        },
      },
    },
    destination,
  );
}

function errorOrText(value: unknown): unknown {
  return value instanceof Error ? loggableError(value) : value;
}

export const silentLogger: Logger = pino({ level: "silent" });

/**
 * Campos de un evento para una línea de log sin repetir los que el logger ya lleva: pino no
 * reemplaza una clave del logger, la repite, y quien lee el JSON (jq, el agregador) ve uno solo
 * de los dos valores. Un campo con el mismo valor sobra; uno con otro valor (la correlación del
 * evento no es la de la petición) va como `event<Campo>`.
 */
export function eventFields(
  logger: Logger,
  fields: Record<string, unknown>,
): Record<string, unknown> {
  const bound = logger.bindings();
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (!(key in bound)) out[key] = value;
    else if (bound[key] !== value) out[`event${key[0]?.toUpperCase()}${key.slice(1)}`] = value;
  }
  return out;
}
