import type { Bus } from "../core/bus";
import type { Logger } from "../core/logger";
import { backoffDelayMs } from "../core/retry-policy";
import { relayOnce } from "../db/outbox";
import type { Database } from "../db/types";

export interface RelayOptions {
  db: Database;
  bus: Bus;
  logger: Logger;
  intervalMs?: number;
  graceMs?: number;
}

export interface RunningRelay {
  stop(): Promise<void>;
}

// Publica lo que las funciones no pudieron (caída, broker abajo); con backoff mientras NATS falle.
export function startOutboxRelay(options: RelayOptions): RunningRelay {
  const logger = options.logger.child({ component: "outbox-relay" });
  const interval = options.intervalMs ?? 1_000;
  let stopped = false;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  const loop = (async () => {
    let failures = 0;
    while (!stopped) {
      let delay = interval;
      try {
        const result = await relayOnce(options.db, options.bus, logger, {
          graceMs: options.graceMs,
        });
        if (result.failed) {
          failures++;
          delay = backoffDelayMs(failures);
        } else {
          failures = 0;
          // Si quedó trabajo en el lote, sigue sin esperar.
          if (result.published >= 100) delay = 0;
        }
      } catch (err) {
        failures++;
        delay = backoffDelayMs(failures);
        logger.warn({ err, delayMs: delay }, "outbox relay pass failed");
      }
      if (!stopped) await sleep(delay);
    }
  })();
  return {
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}
