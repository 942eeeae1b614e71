import { type SQL, type SQLWrapper, sql } from "drizzle-orm";
import type { Executor } from "./types";

/**
 * Ejecuta varios INSERT/UPDATE en una sola sentencia (CTEs que modifican datos): un viaje a la
 * base en lugar de uno por fila, y atómica por sí misma aunque no haya transacción abierta.
 * Las FKs entre filas de la misma sentencia valen: Postgres las comprueba al final.
 */
export async function executeAll(db: Executor, statements: SQLWrapper[]): Promise<void> {
  if (statements.length === 0) return;
  const [only] = statements;
  if (statements.length === 1 && only) {
    await db.execute(only.getSQL());
    return;
  }
  const ctes: SQL[] = statements.map((s, i) => sql`${sql.raw(`s${i}`)} as (${s.getSQL()})`);
  await db.execute(sql`with ${sql.join(ctes, sql`, `)} select 1`);
}
