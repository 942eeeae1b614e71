import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../core/logger";

/** Logger del proyecto que guarda cada línea JSON emitida, para afirmar sobre los logs. */
export function captureLogs(service = "test"): {
  logger: Logger;
  lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    service,
    destination: new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    }),
  });
  return { logger, lines };
}
