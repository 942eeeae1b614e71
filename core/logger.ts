import { type DestinationStream, type Logger as PinoLogger, pino } from "pino";
import { invalidConfiguration, LOG_LEVELS } from "./config";
import { loggableError } from "./http/db-errors";

export type Logger = PinoLogger;

// Rutas redactadas: secretos y credenciales nunca llegan a los logs.
const REDACT = [
  "password",
  "secret",
  "clientSecret",
  "client_secret",
  "authorization",
  "token",
  "accessToken",
  "refreshToken",
  "connectionString",
  "*.password",
  "*.secret",
  "*.clientSecret",
  "*.client_secret",
  "*.authorization",
  "*.connectionString",
  "req.headers.authorization",
  "headers.authorization",
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
      serializers: { err: loggableError },
    },
    destination,
  );
}

export const silentLogger: Logger = pino({ level: "silent" });
