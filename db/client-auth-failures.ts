import { and, eq, gt, sql } from "drizzle-orm";
import { clientAuthFailures } from "./schema";
import type { Executor } from "./types";

export interface LockoutPolicy {
  maxFailures: number;
  windowSeconds: number;
}

/** Un client_id visto desde un origen (dirección o bloque de direcciones). */
export interface AuthAttemptKey {
  clientId: string;
  source: string;
}

export type AttemptReservation =
  | { allowed: true; attempts: number; windowStartedAt: Date }
  | { allowed: false; attempts: number; windowStartedAt: Date; retryAfter: number };

/**
 * Cuenta el intento antes de mirar el secreto, en un solo upsert: N intentos en paralelo reciben
 * N cuentas distintas, así que solo `maxFailures` llegan al hash. Si la ventana venció empieza
 * otra con 1. Lo que no resulte un fallo se devuelve con releaseClientAuthAttempt. Dentro de una
 * transacción el upsert deja la fila bloqueada hasta el commit (ver authenticateClient).
 */
export async function reserveClientAuthAttempt(
  db: Executor,
  key: AuthAttemptKey,
  policy: LockoutPolicy,
): Promise<AttemptReservation> {
  const window = sql`make_interval(secs => ${policy.windowSeconds})`;
  const expired = sql`${clientAuthFailures.windowStartedAt} <= now() - ${window}`;
  const [row] = await db
    .insert(clientAuthFailures)
    .values({ ...key, windowStartedAt: sql`now()`, failures: 1 })
    .onConflictDoUpdate({
      target: [clientAuthFailures.clientId, clientAuthFailures.source],
      set: {
        failures: sql`CASE WHEN ${expired} THEN 1 ELSE ${clientAuthFailures.failures} + 1 END`,
        windowStartedAt: sql`CASE WHEN ${expired} THEN now() ELSE ${clientAuthFailures.windowStartedAt} END`,
      },
    })
    .returning({
      attempts: clientAuthFailures.failures,
      windowStartedAt: clientAuthFailures.windowStartedAt,
      retryAfter: sql<number>`ceil(extract(epoch from (${clientAuthFailures.windowStartedAt} + ${window} - now())))::int`,
    });
  if (!row) throw new Error("client_auth_failures upsert returned no row");
  if (row.attempts <= policy.maxFailures) {
    return { allowed: true, attempts: row.attempts, windowStartedAt: row.windowStartedAt };
  }
  return {
    allowed: false,
    attempts: row.attempts,
    windowStartedAt: row.windowStartedAt,
    // window_started_at se guarda al milisegundo y puede quedar un pelo por delante de now().
    retryAfter: Math.min(policy.windowSeconds, Math.max(1, Number(row.retryAfter))),
  };
}

/**
 * Descuenta un intento que no fue un fallo (acierto o 429): solo los fallos acercan al bloqueo y
 * los ajenos del mismo origen siguen contando. Si la ventana ya cambió, no toca la nueva.
 */
export async function releaseClientAuthAttempt(
  db: Executor,
  key: AuthAttemptKey,
  windowStartedAt: Date,
): Promise<void> {
  await db
    .update(clientAuthFailures)
    .set({ failures: sql`${clientAuthFailures.failures} - 1` })
    .where(
      and(
        eq(clientAuthFailures.clientId, key.clientId),
        eq(clientAuthFailures.source, key.source),
        eq(clientAuthFailures.windowStartedAt, windowStartedAt),
        gt(clientAuthFailures.failures, 0),
      ),
    );
}
