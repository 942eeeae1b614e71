// Política única de reintentos (seed 001 §4): MaxDeliver 5, 500 ms × 2^(n−1) con tope de 5 s.
export const MAX_DELIVER = 5;
export const BASE_DELAY_MS = 500;
export const MAX_DELAY_MS = 5_000;

/** Espera antes del reintento n (n = 1 es la segunda entrega). */
export function retryDelayMs(retry: number): number {
  if (!Number.isInteger(retry) || retry < 1)
    throw new RangeError(`retry must be >= 1, got ${retry}`);
  return Math.min(BASE_DELAY_MS * 2 ** (retry - 1), MAX_DELAY_MS);
}

export type AttemptOutcome = { action: "retry"; delayMs: number } | { action: "dead_letter" };

/** Decide qué hacer tras fallar la entrega número `deliveryCount` (1-based). */
export function afterFailure(deliveryCount: number, permanent: boolean): AttemptOutcome {
  if (permanent || deliveryCount >= MAX_DELIVER) return { action: "dead_letter" };
  return { action: "retry", delayMs: retryDelayMs(deliveryCount) };
}

/** Backoff genérico (relay, reconexiones) con la misma curva. */
export function backoffDelayMs(consecutiveFailures: number): number {
  return retryDelayMs(Math.max(1, consecutiveFailures));
}
