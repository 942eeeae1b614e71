import { type Logger as PinoLogger, pino } from "pino";

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
}

export function createLogger({ service, level }: LoggerOptions): Logger {
  return pino({
    level: level ?? "info",
    redact: { paths: REDACT, censor: "[redacted]" },
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

export const silentLogger: Logger = pino({ level: "silent" });
