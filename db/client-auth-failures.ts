import { and, eq, gt, gte, sql } from "drizzle-orm";
import { clientAuthFailures } from "./schema";
import type { Executor } from "./types";

export interface LockoutPolicy {
  maxFailures: number;
  windowSeconds: number;
}

const windowOpen = (seconds: number) =>
  gt(clientAuthFailures.windowStartedAt, sql`now() - make_interval(secs => ${seconds})`);

/** Segundos que le quedan de bloqueo al client_id, o undefined si puede intentar. */
export async function clientLockedFor(
  db: Executor,
  clientId: string,
  policy: LockoutPolicy,
): Promise<number | undefined> {
  const [row] = await db
    .select({
      retryAfter: sql<number>`ceil(extract(epoch from (${clientAuthFailures.windowStartedAt} + make_interval(secs => ${policy.windowSeconds}) - now())))::int`,
    })
    .from(clientAuthFailures)
    .where(
      and(
        eq(clientAuthFailures.clientId, clientId),
        gte(clientAuthFailures.failures, policy.maxFailures),
        windowOpen(policy.windowSeconds),
      ),
    );
  return row ? Math.max(1, Number(row.retryAfter)) : undefined;
}

/**
 * Cuenta un fallo en un solo upsert (atómico entre isolates): si la ventana venció empieza
 * otra con 1 fallo. Un acierto no reinicia el contador. Devuelve los fallos de la ventana.
 */
export async function recordClientAuthFailure(
  db: Executor,
  clientId: string,
  policy: LockoutPolicy,
): Promise<number> {
  const expired = sql`${clientAuthFailures.windowStartedAt} <= now() - make_interval(secs => ${policy.windowSeconds})`;
  const [row] = await db
    .insert(clientAuthFailures)
    .values({ clientId, windowStartedAt: sql`now()`, failures: 1 })
    .onConflictDoUpdate({
      target: clientAuthFailures.clientId,
      set: {
        failures: sql`CASE WHEN ${expired} THEN 1 ELSE ${clientAuthFailures.failures} + 1 END`,
        windowStartedAt: sql`CASE WHEN ${expired} THEN now() ELSE ${clientAuthFailures.windowStartedAt} END`,
      },
    })
    .returning({ failures: clientAuthFailures.failures });
  return row?.failures ?? 1;
}
