import type { ExtractTablesWithRelations } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import type * as schema from "./schema";

export type Schema = typeof schema;
export type Database = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** Lo que acepta el código de dominio: la base o una transacción abierta. */
export type Executor = Database | Tx;

export type DriverName = "pglite" | "node-postgres" | "neon";

export interface DbHandle {
  db: Database;
  driver: DriverName;
  /** Nombre de la base (para derivar las bases compartidas de producto). */
  databaseName: string;
  migrate(): Promise<void>;
  close(): Promise<void>;
}

export const MIGRATION_LOCK_ID = 727_274_001;

/** Observador opcional de cada consulta SQL (p. ej. contar consultas en una prueba de N+1). */
/** Espera máxima para abrir una conexión a Postgres, en todos los pools del proyecto. */
export const CONNECT_TIMEOUT_MS = 10_000;

export type QueryObserver = (query: string) => void;

export function queryLogger(onQuery: QueryObserver | undefined) {
  return onQuery ? { logQuery: (query: string) => onQuery(query) } : undefined;
}

/** Filas de un `execute` crudo; los tres drivers devuelven `{ rows }`. */
export function rowsOf<T>(result: unknown): T[] {
  const rows = (result as { rows?: unknown } | null)?.rows;
  return Array.isArray(rows) ? (rows as T[]) : [];
}
