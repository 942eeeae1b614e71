import { and, eq, sql } from "drizzle-orm";
import { clientAuthFailures } from "./schema";
import type { Executor } from "./types";

export interface LockoutPolicy {
  maxFailures: number;
  windowSeconds: number;
  /** Cuánto cuentan los intentos en curso desde la última reserva (por defecto 30 s). */
  pendingLeaseSeconds?: number;
}

/** Muy por encima de lo que tarda un hash (el edge espera a lo sumo 5 s por un hueco). */
export const PENDING_LEASE_SECONDS = 30;

/** Un client_id visto desde un origen (dirección o bloque de direcciones). */
export interface AuthAttemptKey {
  clientId: string;
  source: string;
}

export type AttemptReservation =
  /** Puede comprobar el secreto; después, recordClientAuthOutcome con esta ventana. */
  | { kind: "granted"; windowStartedAt: Date }
  /** Lleno de intentos en curso, no de fallos: se reintenta en cuanto uno termine. */
  | { kind: "busy" }
  /** Fallos confirmados hasta el límite: 429 hasta que vence la ventana. */
  | { kind: "locked"; retryAfter: number };

/**
 * Reserva un hueco para comprobar un secreto, en un solo upsert y sin transacción: el hash lento
 * corre después sin conexión ni fila bloqueadas (antes la transacción retenía la conexión durante
 * el hash, y un aluvión de client_id inventados agotaba la base). Caben `maxFailures` entre fallos
 * confirmados (`failures`) e intentos en curso (`pending`): N intentos en paralelo no pasan del
 * límite. Si la ventana venció empieza otra. Los intentos en curso cuentan hasta `pending_until`
 * (la última reserva más el lease): uno de un proceso que murió a mitad del hash deja de contar
 * cuando el cubo pasa un lease sin reservas nuevas, no al final de la ventana (hasta un día).
 */
export async function reserveClientAuthAttempt(
  db: Executor,
  key: AuthAttemptKey,
  policy: LockoutPolicy,
): Promise<AttemptReservation> {
  const window = sql`make_interval(secs => ${policy.windowSeconds})`;
  const leaseEnd = sql`now() + make_interval(secs => ${policy.pendingLeaseSeconds ?? PENDING_LEASE_SECONDS})`;
  const expired = sql`${clientAuthFailures.windowStartedAt} <= now() - ${window}`;
  // Intentos en curso que aún cuentan (null: filas de antes del lease, nada en curso que valga).
  const live = sql`CASE WHEN ${clientAuthFailures.pendingUntil} > now() THEN ${clientAuthFailures.pending} ELSE 0 END`;
  const [granted] = await db
    .insert(clientAuthFailures)
    .values({
      ...key,
      windowStartedAt: sql`now()`,
      failures: 0,
      pending: 1,
      pendingUntil: leaseEnd,
    })
    .onConflictDoUpdate({
      target: [clientAuthFailures.clientId, clientAuthFailures.source],
      set: {
        failures: sql`CASE WHEN ${expired} THEN 0 ELSE ${clientAuthFailures.failures} END`,
        pending: sql`CASE WHEN ${expired} THEN 1 ELSE ${live} + 1 END`,
        pendingUntil: leaseEnd,
        windowStartedAt: sql`CASE WHEN ${expired} THEN now() ELSE ${clientAuthFailures.windowStartedAt} END`,
      },
      // Sin hueco la fila no cambia y no vuelve nada (ni alarga el lease de los huérfanos).
      setWhere: sql`${expired} OR ${clientAuthFailures.failures} + ${live} < ${policy.maxFailures}`,
    })
    .returning({ windowStartedAt: clientAuthFailures.windowStartedAt });
  if (granted) return { kind: "granted", windowStartedAt: granted.windowStartedAt };
  const [row] = await db
    .select({
      failures: clientAuthFailures.failures,
      retryAfter: sql<number>`ceil(extract(epoch from (${clientAuthFailures.windowStartedAt} + ${window} - now())))::int`,
    })
    .from(clientAuthFailures)
    .where(
      and(eq(clientAuthFailures.clientId, key.clientId), eq(clientAuthFailures.source, key.source)),
    );
  if (!row || row.failures < policy.maxFailures) return { kind: "busy" };
  // window_started_at se guarda al milisegundo y puede quedar un pelo por delante de now().
  return {
    kind: "locked",
    retryAfter: Math.min(policy.windowSeconds, Math.max(1, Number(row.retryAfter))),
  };
}

/**
 * Cierra un intento reservado: un fallo pasa de en curso a confirmado; un acierto solo libera su
 * hueco (los aciertos no acercan al bloqueo) y hace conocido al origen; `released` (un intento que
 * no llegó a comprobar el secreto) solo libera el hueco. Si la ventana ya cambió, no toca la nueva.
 */
export async function recordClientAuthOutcome(
  db: Executor,
  key: AuthAttemptKey,
  windowStartedAt: Date,
  outcome: "failed" | "succeeded" | "released",
): Promise<void> {
  await db
    .update(clientAuthFailures)
    .set({
      pending: sql`greatest(${clientAuthFailures.pending} - 1, 0)`,
      ...(outcome === "failed" ? { failures: sql`${clientAuthFailures.failures} + 1` } : {}),
      ...(outcome === "succeeded" ? { lastSuccessAt: sql`now()` } : {}),
    })
    .where(
      and(
        eq(clientAuthFailures.clientId, key.clientId),
        eq(clientAuthFailures.source, key.source),
        eq(clientAuthFailures.windowStartedAt, windowStartedAt),
      ),
    );
}

/** `source` de la fila que suma los fallos de un client_id desde todos los orígenes. */
export const ALL_SOURCES = "*";

/**
 * Un origen con un acierto en este plazo es conocido. Es el mismo día que mantenimiento guarda
 * las filas sin intentos: un cliente que pide tokens a diario conserva la suya.
 */
const KNOWN_SOURCE_INTERVAL = sql`interval '1 day'`;

/**
 * ¿Tuvo `key.source` un acierto de `key.clientId` en el último día? Con el tope de todos los
 * orígenes lleno, solo esos entran: un ataque repartido en miles de direcciones (una /48 de IPv6
 * son 65 536 cubos) no prueba secretos sin fin, y la aplicación legítima, desde donde ya entró,
 * no queda fuera.
 */
export async function isKnownSource(db: Executor, key: AuthAttemptKey): Promise<boolean> {
  const [row] = await db
    .select({ one: sql`1` })
    .from(clientAuthFailures)
    .where(
      and(
        eq(clientAuthFailures.clientId, key.clientId),
        eq(clientAuthFailures.source, key.source),
        sql`${clientAuthFailures.lastSuccessAt} > now() - ${KNOWN_SOURCE_INTERVAL}`,
      ),
    );
  return row !== undefined;
}
