import { type SQL, sql } from "drizzle-orm";
import { type Database, rowsOf, type Tx } from "./types";

/** Un reloj de la base en milisegundos desde la época (hacia abajo, como timestamptz(3)). */
export function clockMs(clock: SQL = sql`clock_timestamp()`): SQL<number> {
  return sql<number>`floor(extract(epoch from ${clock}) * 1000)::float8`;
}

async function readClock(db: Database | Tx, clock: SQL): Promise<Date> {
  const [row] = rowsOf<{ ms: number | string }>(
    await db.execute(sql`select ${clockMs(clock)} as ms`),
  );
  if (!row) throw new Error("the database did not return its clock");
  return new Date(Number(row.ms));
}

/**
 * La hora de la base (clock_timestamp, no la de inicio de la transacción): el único reloj que
 * comparten la API, los workers y las filas que escriben, aunque los hosts vayan desparejos.
 */
export function databaseNow(db: Database | Tx): Promise<Date> {
  return readClock(db, sql`clock_timestamp()`);
}

/**
 * La hora de inicio de la transacción (now()), al milisegundo hacia abajo: la misma que toman los
 * DEFAULT now() de las filas que escribe (updated_at), nunca posterior a ellas.
 */
export function transactionStart(tx: Tx): Promise<Date> {
  return readClock(tx, sql`now()`);
}
