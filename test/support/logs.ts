import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../core/logger";

/**
 * Claves repetidas en un mismo objeto de una línea JSON. pino no reemplaza una clave de un
 * logger padre: la repite, y JSON.parse (como jq y los agregadores) se queda con la última.
 */
export function duplicateKeys(json: string): string[] {
  const found: string[] = [];
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (ch === "[") {
      stack.push(null);
    } else if (ch === "}" || ch === "]") {
      stack.pop();
    } else if (ch === ",") {
      expectKey = stack.at(-1) != null;
    } else if (ch === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === "\\" ? 2 : 1;
      const keys = stack.at(-1);
      if (expectKey && keys) {
        const key = JSON.parse(json.slice(i, end + 1)) as string;
        if (keys.has(key)) found.push(key);
        keys.add(key);
      }
      expectKey = false;
      i = end;
    }
  }
  return found;
}

/**
 * Logger del proyecto que guarda cada línea JSON emitida, para afirmar sobre los logs. Una línea
 * con claves repetidas es un error en el stream: la prueba falla (error no manejado).
 */
export function captureLogs(
  service = "test",
  options: { level?: string | undefined; echo?: boolean } = {},
): {
  logger: Logger;
  lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    service,
    level: options.level,
    destination: new Writable({
      write(chunk, _enc, done) {
        const line = String(chunk);
        if (options.echo) process.stderr.write(line);
        const repeated = duplicateKeys(line);
        if (repeated.length > 0) {
          done(new Error(`log line repeats ${repeated.join(", ")}: ${line}`));
          return;
        }
        lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  });
  return { logger, lines };
}
