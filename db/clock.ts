import { sql } from "drizzle-orm";
import { type Database, rowsOf, type Tx } from "./types";

/**
 * La hora de la base (clock_timestamp, no la de inicio de la transacción): el único reloj que
 * comparten la API, los workers y las filas que escriben, aunque los hosts vayan desparejos.
 */
export async function databaseNow(db: Database | Tx): Promise<Date> {
  const [row] = rowsOf<{ ms: number | string }>(
    await db.execute(sql`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`),
  );
  if (!row) throw new Error("the database did not return its clock");
  return new Date(Math.floor(Number(row.ms)));
}

/**
 * La hora de inicio de la transacción (now()), al milisegundo hacia abajo: la misma que toman los
 * DEFAULT now() de las filas que escribe (updated_at), nunca posterior a ellas.
 */
export async function transactionStart(tx: Tx): Promise<Date> {
  const [row] = rowsOf<{ ms: number | string }>(
    await tx.execute(sql`select floor(extract(epoch from now()) * 1000)::float8 as ms`),
  );
  if (!row) throw new Error("the database did not return its clock");
  return new Date(Number(row.ms));
}
