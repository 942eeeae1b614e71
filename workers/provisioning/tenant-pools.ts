import pg from "pg";
import { survivePoolConnectionErrors } from "../../db/drivers/pool-errors";
import { CONNECT_TIMEOUT_MS } from "../../db/types";

export interface TenantPoolsOptions {
  /** Conexiones máximas por base de tenant. */
  maxConnections?: number;
  /** Pools abiertos a la vez; el menos usado recientemente se cierra al pasar el tope. */
  maxPools?: number;
  /** Una conexión ociosa se cierra tras este tiempo (ms). */
  idleTimeoutMs?: number;
}

/** Pools de conexión por base de tenant (tier Enterprise), acotados y reutilizados entre tareas. */
export interface TenantPools {
  /** Pool de la base de esa cadena; si la cadena cambió (contraseña nueva), se rehace. */
  acquire(connectionString: string): pg.Pool;
  /** Cierra el pool de esa base, si lo hay (p. ej. antes de borrarla). */
  release(database: string): Promise<void>;
  closeAll(): Promise<void>;
  /** Pools abiertos ahora. */
  readonly size: number;
  /** Pools creados desde el inicio (para métricas y pruebas). */
  readonly created: number;
}

/** Clave de la base: servidor + nombre, sin credenciales. */
export function tenantDatabaseKey(connectionString: string): string {
  const url = new URL(connectionString);
  return `${url.host}${url.pathname}`;
}

export function createTenantPools(options: TenantPoolsOptions = {}): TenantPools {
  const maxPools = options.maxPools ?? 20;
  // El Map conserva el orden de inserción: el primero es el menos usado recientemente.
  const pools = new Map<string, { connectionString: string; pool: pg.Pool }>();
  const closing = new Set<Promise<void>>();
  let created = 0;

  // end() espera a que se devuelvan las conexiones en uso: cerrar no corta consultas en curso.
  const end = (pool: pg.Pool) => {
    const done = pool.end().catch(() => {});
    closing.add(done);
    void done.finally(() => closing.delete(done));
    return done;
  };

  return {
    acquire(connectionString) {
      const key = tenantDatabaseKey(connectionString);
      const entry = pools.get(key);
      if (entry) {
        pools.delete(key);
        if (entry.connectionString === connectionString) {
          pools.set(key, entry);
          return entry.pool;
        }
        void end(entry.pool);
      }
      const pool = new pg.Pool({
        connectionString,
        max: options.maxConnections ?? 2,
        idleTimeoutMillis: options.idleTimeoutMs ?? 10_000,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        allowExitOnIdle: true,
      });
      survivePoolConnectionErrors(pool);
      created++;
      pools.set(key, { connectionString, pool });
      for (const [oldest, old] of pools) {
        if (pools.size <= maxPools) break;
        pools.delete(oldest);
        void end(old.pool);
      }
      return pool;
    },
    async release(database) {
      for (const [key, entry] of pools) {
        if (key.endsWith(`/${database}`)) {
          pools.delete(key);
          await end(entry.pool);
        }
      }
    },
    async closeAll() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all([...all.map((e) => end(e.pool)), ...closing]);
    },
    get size() {
      return pools.size;
    },
    get created() {
      return created;
    },
  };
}
