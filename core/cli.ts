import { inspect } from "node:util";
import { ConfigError } from "./config";
import { DataDirInUseError } from "./dir-lock";
import { createLogger, type Logger } from "./logger";

/**
 * Fin de un CLI que falló: una configuración inválida o una carpeta de datos ocupada son errores
 * del operador y se dicen en una línea, sin pila; lo demás (un fallo inesperado), con ella.
 */
export function failCli(err: unknown): never {
  const operatorError = err instanceof ConfigError || err instanceof DataDirInUseError;
  process.stderr.write(`${operatorError ? err.message : inspect(err)}\n`);
  process.exit(1);
}

/** Logger de un CLI: un LOG_LEVEL inválido termina en una línea que lo nombra, sin pila. */
export function cliLogger(service: string, defaultLevel: string): Logger {
  try {
    return createLogger({ service, level: process.env.LOG_LEVEL ?? defaultLevel });
  } catch (err) {
    return failCli(err);
  }
}
