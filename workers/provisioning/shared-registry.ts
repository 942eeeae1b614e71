import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import type pg from "pg";
import { pgErrorCode } from "../../core/http/db-errors";

export interface TenantRegistration {
  tenantInstanceId: string;
  tenantCode: string;
  customerId: string;
}

/** Base compartida de cada producto (tier Standard): una tabla de tenants como discriminador. */
export interface SharedTenantRegistry {
  register(productCode: string, tenant: TenantRegistration): Promise<void>;
  isRegistered(productCode: string, tenantInstanceId: string): Promise<boolean>;
  close(): Promise<void>;
}

const BASELINE = `
  create table if not exists farutech_tenants (
    tenant_id uuid primary key,
    tenant_code text not null unique,
    customer_id uuid not null,
    registered_at timestamptz not null default now()
  )`;

const INSERT = `insert into farutech_tenants (tenant_id, tenant_code, customer_id)
  values ($1, $2, $3) on conflict (tenant_id) do nothing`;

export function sharedDatabaseName(controlDatabase: string, productCode: string): string {
  return `${controlDatabase}_app_${productCode.toLowerCase()}`.slice(0, 63);
}

/** Servidor Postgres: una base por producto junto a la del plano de control. */
export function createPostgresRegistry(controlUrl: string): SharedTenantRegistry {
  const pools = new Map<string, Promise<pg.Pool>>();
  const control = new URL(controlUrl);
  const controlDb = control.pathname.replace(/^\//, "");

  const poolFor = (productCode: string) => {
    let pool = pools.get(productCode);
    if (!pool) {
      pool = (async () => {
        const { default: pgModule } = await import("pg");
        const name = sharedDatabaseName(controlDb, productCode);
        const admin = new pgModule.Client({ connectionString: controlUrl });
        await admin.connect();
        try {
          await admin.query(`create database "${name}"`);
        } catch (err) {
          // 42P04: ya existe; 23505: otra creación concurrente ganó.
          if (pgErrorCode(err) !== "42P04" && pgErrorCode(err) !== "23505") throw err;
        } finally {
          await admin.end();
        }
        const url = new URL(controlUrl);
        url.pathname = `/${name}`;
        const p = new pgModule.Pool({ connectionString: url.toString(), max: 2 });
        p.on("error", () => {});
        // Varios procesos pueden crear el esquema base a la vez: se serializa con un lock.
        const c = await p.connect();
        try {
          await c.query("begin");
          await c.query("select pg_advisory_xact_lock(727274004)");
          await c.query(BASELINE);
          await c.query("commit");
        } catch (err) {
          await c.query("rollback").catch(() => {});
          throw err;
        } finally {
          c.release();
        }
        return p;
      })();
      pool.catch(() => pools.delete(productCode));
      pools.set(productCode, pool);
    }
    return pool;
  };

  return {
    async register(productCode, t) {
      const pool = await poolFor(productCode);
      await pool.query(INSERT, [t.tenantInstanceId, t.tenantCode, t.customerId]);
    },
    async isRegistered(productCode, id) {
      const pool = await poolFor(productCode);
      const r = await pool.query("select 1 from farutech_tenants where tenant_id = $1", [id]);
      return (r.rowCount ?? 0) > 0;
    },
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.allSettled(all.map(async (p) => (await p).end()));
    },
  };
}

/** Modo embebido: la base compartida de cada producto es una carpeta PGlite propia. */
export function createPgliteRegistry(dataDir: string): SharedTenantRegistry {
  const dbs = new Map<string, Promise<PGlite>>();
  const dbFor = (productCode: string) => {
    let db = dbs.get(productCode);
    if (!db) {
      db = (async () => {
        const { PGlite } = await import("@electric-sql/pglite");
        const dir = dataDir.startsWith("memory://")
          ? "memory://"
          : join(dataDir, productCode.toLowerCase());
        if (dir !== "memory://") mkdirSync(dir, { recursive: true });
        const instance = await PGlite.create(dir);
        await instance.exec(BASELINE);
        return instance;
      })();
      db.catch(() => dbs.delete(productCode));
      dbs.set(productCode, db);
    }
    return db;
  };
  return {
    async register(productCode, t) {
      await (await dbFor(productCode)).query(INSERT, [
        t.tenantInstanceId,
        t.tenantCode,
        t.customerId,
      ]);
    },
    async isRegistered(productCode, id) {
      const r = await (await dbFor(productCode)).query(
        "select 1 from farutech_tenants where tenant_id = $1",
        [id],
      );
      return r.rows.length > 0;
    },
    async close() {
      const all = [...dbs.values()];
      dbs.clear();
      await Promise.allSettled(all.map(async (d) => (await d).close()));
    },
  };
}
