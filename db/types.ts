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
  migrate(options?: MigrateOptions): Promise<void>;
  close(): Promise<void>;
}

export interface MigrateOptions {
  /** Espera máxima de cada intento por el bloqueo de una tabla (no por otro proceso que migra). */
  lockTimeoutMs?: number;
  /** Cuánto se reintenta en total antes de rendirse. */
  lockBudgetMs?: number;
}

export const MIGRATION_LOCK_ID = 727_274_001;
/**
 * Una transacción larga sobre una tabla que la migración altera la haría esperar sin fin, y
 * detrás de ella (cola de bloqueos) a cada escritura de esa tabla (p. ej. los logins del edge).
 * Cada intento espera poco y suelta (todo se deshace); entre intentos, esas escrituras pasan.
 */
export const MIGRATION_LOCK_TIMEOUT_MS = 3_000;
export const MIGRATION_LOCK_BUDGET_MS = 30_000;
const MIGRATION_LOCK_PAUSE_MS = 1_000;

interface SqlClient {
  query(text: string, params?: unknown[]): Promise<unknown>;
}

/**
 * Migra bajo el advisory lock (varios procesos pueden arrancar a la vez: solo uno migra; los demás
 * esperan lo que haga falta) y con lock_timeout para las tablas. Deja la conexión como estaba.
 */
export async function migrateUnderLock(
  client: SqlClient,
  run: () => Promise<void>,
  options: MigrateOptions = {},
): Promise<void> {
  const lockTimeoutMs = options.lockTimeoutMs ?? MIGRATION_LOCK_TIMEOUT_MS;
  const budgetMs = options.lockBudgetMs ?? MIGRATION_LOCK_BUDGET_MS;
  const started = Date.now();
  await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
  try {
    await client.query(`set lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
    // Un CREATE INDEX sobre una tabla grande puede tardar: el tope de las peticiones no aplica.
    await client.query("set statement_timeout = 0");
    for (let attempt = 1; ; attempt++) {
      try {
        await run();
        return;
      } catch (err) {
        const code = (err as { code?: string; cause?: { code?: string } }).cause?.code;
        if (code !== "55P03" && (err as { code?: string }).code !== "55P03") throw err;
        const waited = Date.now() - started;
        if (waited + MIGRATION_LOCK_PAUSE_MS + lockTimeoutMs > budgetMs) {
          throw new Error(
            `migration gave up waiting for a table lock after ${attempt} attempt(s) in ${waited} ms (a long transaction holds it); nothing was applied, retry once it ends`,
            { cause: err },
          );
        }
        await new Promise((r) => setTimeout(r, MIGRATION_LOCK_PAUSE_MS));
      }
    }
  } finally {
    await client.query("reset lock_timeout").catch(() => {});
    await client.query("reset statement_timeout").catch(() => {});
    await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]).catch(() => {});
  }
}

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
