import { inspect } from "node:util";
import pino from "pino";
import { ConfigError } from "./config";
import { DataDirInUseError } from "./dir-lock";
import { errorMessage } from "./http/db-errors";
import { createLogger, type Logger } from "./logger";

/**
 * Un fallo de un CLI en una línea y sin pila ni SQL (p. ej. `connect ECONNREFUSED 127.0.0.1:5432`
 * con la base caída): lo que el operador necesita para saber qué falta. Un AggregateError de Node
 * (varias direcciones del mismo host) trae el mensaje vacío: queda su código.
 */
export function cliErrorText(err: unknown): string {
  const message = errorMessage(err).replace(/\s+/g, " ").trim();
  const code = (err as { code?: unknown } | null)?.code;
  return message || (typeof code === "string" ? code : inspect(err, { depth: 0 }));
}

/**
 * Fin de un CLI que falló: una línea, sin pila (con LOG_LEVEL=debug, además, el error entero
 * para quien lo depura). Una configuración inválida o una carpeta ocupada, con su mensaje.
 */
export function failCli(err: unknown): never {
  const operatorError = err instanceof ConfigError || err instanceof DataDirInUseError;
  process.stderr.write(`${operatorError ? err.message : cliErrorText(err)}\n`);
  if (!operatorError && process.env.LOG_LEVEL === "debug")
    process.stderr.write(`${inspect(err)}\n`);
  process.exit(1);
}

/** Logger de un CLI: un LOG_LEVEL inválido termina en una línea que lo nombra, sin pila. */
export function cliLogger(
  service: string,
  defaultLevel: string,
  options: { stderr?: boolean } = {},
): Logger {
  try {
    return createLogger({
      service,
      level: process.env.LOG_LEVEL ?? defaultLevel,
      // En un CLI cuya salida es el resultado (dlq, publish:test), los logs van aparte.
      ...(options.stderr ? { destination: pino.destination(2) } : {}),
    });
  } catch (err) {
    return failCli(err);
  }
}
