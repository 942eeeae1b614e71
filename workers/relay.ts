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
  /** Tope de una pasada; pasado, se abandona (su transacción la corta Postgres) y el lazo sigue. */
  passTimeoutMs?: number;
}

/** Una pasada sana dura milisegundos (o 3 s si una publicación vence): esto es una red muda. */
export const RELAY_PASS_TIMEOUT_MS = 20_000;
/** Al parar, lo que se espera a una pasada en curso antes de abandonarla. */
const STOP_WAIT_MS = 2_000;

export interface RunningRelay {
  stop(): Promise<void>;
}

// Publica lo que las funciones no pudieron (caída, broker abajo); con backoff mientras NATS falle.
export function startOutboxRelay(options: RelayOptions): RunningRelay {
  const logger = options.logger.child({ component: "outbox-relay" });
  const interval = options.intervalMs ?? 1_000;
  const passTimeoutMs = options.passTimeoutMs ?? RELAY_PASS_TIMEOUT_MS;
  let stopped = false;
  let stopping: (() => void) | undefined;
  const stopRequested = new Promise<void>((resolve) => {
    stopping = resolve;
  });
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
        const pass = relayOnce(options.db, options.bus, logger, { graceMs: options.graceMs });
        const result = await withinPassTimeout(pass, passTimeoutMs, stopRequested);
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
        if (err instanceof RelayPassStalled) {
          logger.error({ passTimeoutMs, delayMs: delay }, "outbox relay pass stalled; abandoned");
        } else {
          logger.warn({ err, delayMs: delay }, "outbox relay pass failed");
        }
      }
      if (!stopped) await sleep(delay);
    }
  })();
  return {
    async stop() {
      stopped = true;
      stopping?.();
      wake?.();
      await loop;
    },
  };
}

class RelayPassStalled extends Error {}

/**
 * La pasada, o un error si no termina en `ms` (red muda con Postgres o NATS). Tras pedir parar se
 * le da como mucho STOP_WAIT_MS: el apagado tiene su plazo y lo no publicado sigue en el outbox.
 */
async function withinPassTimeout<T>(pass: Promise<T>, ms: number, stop: Promise<void>) {
  pass.catch(() => {});
  const timers: ReturnType<typeof setTimeout>[] = [];
  const after = (delay: number) =>
    new Promise<never>((_resolve, reject) => {
      timers.push(setTimeout(() => reject(new RelayPassStalled()), delay));
    });
  try {
    return await Promise.race([pass, after(ms), stop.then(() => after(STOP_WAIT_MS))]);
  } finally {
    for (const t of timers) clearTimeout(t);
  }
}
