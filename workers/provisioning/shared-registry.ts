import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import type pg from "pg";
import { ensurePrivateDir } from "../../core/dir-lock";
import { pgErrorCode } from "../../core/http/db-errors";
import { openPglite } from "../../db/drivers/open-pglite";
import { survivePoolConnectionErrors } from "../../db/drivers/pool-errors";
import { PermanentError } from "../runtime/errors";
import { revokePublicAccess } from "./database-acl";

export interface TenantRegistration {
  tenantInstanceId: string;
  tenantCode: string;
  customerId: string;
}

/**
 * Base compartida de cada producto (tier Standard): `farutech_tenants` como discriminador y
 * tablas de la app con row-level security por `app.tenant_id` (ver ADR 0003).
 */
export interface SharedTenantRegistry {
  register(productCode: string, tenant: TenantRegistration): Promise<void>;
  isRegistered(productCode: string, tenantInstanceId: string): Promise<boolean>;
  /**
   * Baja sin purge: la app hija deja de ver y escribir las filas de esos tenants ya, aunque sigan
   * ahí hasta la retención (como el rol Enterprise sin LOGIN). Idempotente: devuelve cuántos
   * pasaron a desactivados ahora.
   */
  deactivate(productCode: string, tenantInstanceIds: readonly string[]): Promise<number>;
  /** Borra las filas del tenant en todas las tablas con `tenant_id` y su registro; idempotente. */
  dropTenant(productCode: string, tenantInstanceId: string): Promise<{ rowsDeleted: number }>;
  close(): Promise<void>;
}

/** Rol de aplicación (sin login, no dueño): el que usan las apps hijas, sujeto a las políticas. */
export function sharedAppRoleName(databaseName: string): string {
  const name = `${databaseName}_rw`;
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(databaseName).digest("hex").slice(0, 8);
  return `${databaseName.slice(0, 51)}_${hash}_rw`;
}

// Sin `app.tenant_id` (o vacío, como queda tras un set_config local en una conexión de pool)
// el tenant es NULL y la política no deja ver ni escribir nada.
const CURRENT_TENANT = "nullif(current_setting('app.tenant_id', true), '')::uuid";

// Idempotente: se aplica al abrir la base en cada proceso (serializado con un advisory lock).
const BASELINE = (role: string) => `
  create table if not exists farutech_tenants (
    tenant_id uuid primary key,
    tenant_code text not null unique,
    customer_id uuid not null,
    registered_at timestamptz not null default now()
  );
  create table if not exists farutech_app_records (
    id uuid primary key default gen_random_uuid(),
    tenant_id uuid not null default ${CURRENT_TENANT}
      references farutech_tenants (tenant_id) on delete cascade,
    kind text not null,
    data jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
  );
  create index if not exists farutech_app_records_tenant_idx
    on farutech_app_records (tenant_id, kind, created_at);
  do $$ begin
    create role "${role}" nologin;
  exception when duplicate_object or unique_violation then null;
  end $$;
  grant usage on schema public to "${role}";
  grant select on farutech_tenants to "${role}";
  grant select, insert, update, delete on farutech_app_records to "${role}";
  -- Una tabla o vista que se cree después NO queda para el rol por sí sola: sin su política de
  -- RLS dejaría a cada tenant ver y tocar las filas de los demás (y una vista corre con los
  -- derechos de su dueño). La migración de la app la concede junto con su política (ADR 0003).
  -- Se revoca lo que concedían las versiones anteriores.
  alter default privileges in schema public
    revoke select, insert, update, delete on tables from "${role}";
  alter default privileges in schema public revoke usage, select on sequences from "${role}";
  -- El registro lo escribe el dueño (el orquestador): sin FORCE; la app solo ve su fila.
  alter table farutech_tenants enable row level security;
  drop policy if exists farutech_tenant_self on farutech_tenants;
  create policy farutech_tenant_self on farutech_tenants for select to "${role}"
    using (tenant_id = ${CURRENT_TENANT});
  -- FORCE: la política vale también para el dueño (no para superusuarios, que la saltan).
  alter table farutech_app_records enable row level security;
  alter table farutech_app_records force row level security;
  drop policy if exists farutech_tenant_isolation on farutech_app_records;
  create policy farutech_tenant_isolation on farutech_app_records
    using (tenant_id = ${CURRENT_TENANT})
    with check (tenant_id = ${CURRENT_TENANT});
  -- Tenant dado de baja: la app hija ya no ve ni escribe sus filas. Restrictiva y solo para el rol
  -- de la app: el orquestador sigue viéndolas para borrarlas al vencer la retención. La tabla va
  -- con su esquema y el search_path fijo: la app puede crear tablas temporales, y una
  -- pg_temp.farutech_tenants le devolvería el acceso. En la política, dentro de un (select …):
  -- así es un InitPlan, una vez por sentencia; llamada sin más, Postgres la evalúa fila a fila.
  -- Las tablas que añada la app la usan igual (ADR 0003).
  alter table farutech_tenants add column if not exists deactivated_at timestamptz;
  create or replace function farutech_tenant_is_active() returns boolean
    language sql stable set search_path = pg_catalog, public, pg_temp as $fn$
      select exists (select 1 from public.farutech_tenants
                      where tenant_id = ${CURRENT_TENANT} and deactivated_at is null)
    $fn$;
  drop policy if exists farutech_tenant_active on farutech_app_records;
  create policy farutech_tenant_active on farutech_app_records as restrictive to "${role}"
    using ((select farutech_tenant_is_active()))
    with check ((select farutech_tenant_is_active()));`;

const INSERT = `insert into farutech_tenants (tenant_id, tenant_code, customer_id)
  values ($1, $2, $3) on conflict (tenant_id) do nothing`;

const DEACTIVATE = `update farutech_tenants set deactivated_at = now()
  where tenant_id = any($1::uuid[]) and deactivated_at is null`;

/** ¿Hay una política (permisiva o restrictiva) para esos comandos en `rel` que aplique al rol actual? */
function applies(rel: string, commands: string, permissive = true): string {
  return `exists (
    select 1 from pg_policy p
     where p.polrelid = ${rel} and p.polpermissive = ${permissive} and p.polcmd in (${commands})
       and (p.polroles = '{0}'
            or exists (select 1 from unnest(p.polroles) r
                        where pg_has_role(current_user, r, 'USAGE'))))`;
}

// Toda tabla con `tenant_id` de cualquier esquema de la app (también las que añada la app hija),
// salvo el registro mismo. Por cada una: cómo comparar la columna según su tipo base (un dominio
// cuenta por el tipo que envuelve): uuid o texto; otro tipo no puede guardar nuestros ids y se
// salta. Y si el RLS le esconde filas al rol del orquestador: RLS activo para él (dueño con FORCE,
// o no dueño) sin una política que le aplique para leerlas (SELECT: el WHERE lee la columna) y
// otra para borrarlas (DELETE).
const TENANT_TABLES = `
  with recursive cols as (
    select c.oid as rel, quote_ident(n.nspname) || '.' || quote_ident(c.relname) as name,
           a.atttypid
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      join pg_attribute a on a.attrelid = c.oid
     where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
       and c.relkind in ('r', 'p') and not c.relispartition
       and a.attname = 'tenant_id' and not a.attisdropped
       and not (n.nspname = 'public' and c.relname = 'farutech_tenants')
  ),
  -- De la columna a su tipo base, dominio tras dominio.
  types(rel, type_oid) as (
    select rel, atttypid from cols
    union all
    select ty.rel, t.typbasetype from types ty join pg_type t on t.oid = ty.type_oid
     where t.typtype = 'd'
  )
  select cols.name,
         case when t.oid = 'uuid'::regtype then 'uuid'
              when t.typcategory = 'S' then 'text' end as key_type,
         row_security_active(cols.rel)
           and (not (${applies("cols.rel", "'*', 'r'")} and ${applies("cols.rel", "'*', 'd'")})
                -- Una restrictiva que le aplique puede esconderle filas (p. ej. si el dueño es
                -- miembro del rol de la app, la de tenants dados de baja): no se adivina, se niega.
                or ${applies("cols.rel", "'*', 'r', 'd'", false)})
           as hidden
    from cols
    join types ty on ty.rel = cols.rel
    join pg_type t on t.oid = ty.type_oid and t.typtype <> 'd'
   order by 1`;

interface TenantTable {
  name: string;
  key_type: "uuid" | "text" | null;
  hidden: boolean;
}

type Query = (text: string, params?: unknown[]) => Promise<{ rows: unknown[]; count: number }>;

// Dentro de una transacción y con `app.tenant_id` puesto: con FORCE RLS el dueño solo ve (y
// borra) las filas de ese tenant aunque no sea superusuario. Una sola sentencia (un DELETE por
// tabla en CTEs): las FKs normales entre tablas de la app se comprueban al final de la sentencia,
// así que el orden de las tablas no importa.
async function deleteTenantRows(query: Query, tenantId: string): Promise<number> {
  await query("select set_config('app.tenant_id', $1, true)", [tenantId]);
  const { rows } = await query(TENANT_TABLES);
  const found = rows as TenantTable[];
  // Un DELETE que el RLS filtra borra 0 filas sin error y la baja diría "datos borrados" con los
  // datos ahí: se niega y dice qué tabla arreglar.
  const hidden = found.filter((t) => t.hidden).map((t) => t.name);
  if (hidden.length > 0) {
    throw new PermanentError(
      `row-level security hides the rows of ${hidden.join(", ")} from the orchestrator's role (it needs policies that let it SELECT and DELETE them); give it those, or BYPASSRLS, before purging tenant data`,
    );
  }
  const tables = [
    ...found.flatMap((t) => (t.key_type ? [{ name: t.name, keyType: t.key_type }] : [])),
    { name: "public.farutech_tenants", keyType: "uuid" as const },
  ];
  // La columna se compara en su propio tipo: su índice sirve y un `tenant_id text` no rompe el
  // DELETE de todas las demás tablas (uuid = text no existe).
  const ctes = tables.map(
    (t, i) => `d${i} as (delete from ${t.name} where tenant_id = $1::${t.keyType} returning 1)`,
  );
  const total = tables.map((_, i) => `(select count(*) from d${i})`).join(" + ");
  const result = await query(`with ${ctes.join(", ")} select (${total})::int as deleted`, [
    tenantId,
  ]);
  return (result.rows[0] as { deleted: number } | undefined)?.deleted ?? 0;
}

const SHARED_POOL_SIZE = 6;

export function sharedDatabaseName(controlDatabase: string, productCode: string): string {
  const name = `${controlDatabase}_app_${productCode.toLowerCase()}`;
  if (name.length <= 63) return name;
  // Cortar sin más juntaría dos productos de código largo en la misma base.
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${name.slice(0, 54)}_${hash}`;
}

/** Servidor Postgres: una base por producto junto a la del plano de control. */
export function createPostgresRegistry(
  controlUrl: string,
): SharedTenantRegistry & { appRole(productCode: string): string } {
  const pools = new Map<string, Promise<pg.Pool>>();
  const control = new URL(controlUrl);
  const controlDb = decodeURIComponent(control.pathname.replace(/^\//, ""));
  const appRole = (productCode: string) =>
    sharedAppRoleName(sharedDatabaseName(controlDb, productCode));

  const poolFor = (productCode: string) => {
    let pool = pools.get(productCode);
    if (!pool) {
      pool = (async () => {
        const { default: pgModule } = await import("pg");
        const name = sharedDatabaseName(controlDb, productCode);
        const admin = new pgModule.Client({ connectionString: controlUrl });
        await admin.connect();
        try {
          // De template0: a template1 entra PUBLIC (ver dedicated-databases.ts).
          await admin.query(`create database "${name}" template template0`).catch((err) => {
            // 42P04: ya existe; 23505: otra creación concurrente ganó.
            if (pgErrorCode(err) !== "42P04" && pgErrorCode(err) !== "23505") throw err;
          });
          // Los usuarios de login de las apps hijas (miembros del rol de la app) no entran en la
          // base del plano de control, aunque aún no haya ningún tenant Enterprise que lo revoque.
          await revokePublicAccess(admin, controlDb);
        } finally {
          await admin.end();
        }
        const url = new URL(controlUrl);
        url.pathname = `/${encodeURIComponent(name)}`;
        // Acotado por producto y proceso; con la concurrencia del worker (16) un pool de 2
        // encolaba los registros y era el cuello de botella del pipeline.
        const p = new pgModule.Pool({ connectionString: url.toString(), max: SHARED_POOL_SIZE });
        survivePoolConnectionErrors(p);
        // Varios procesos pueden crear el esquema base a la vez: se serializa con un lock.
        const c = await p.connect();
        try {
          await c.query("begin");
          await c.query("select pg_advisory_xact_lock(727274004)");
          await c.query(BASELINE(appRole(productCode)));
          // Solo los miembros del rol de la app (y el dueño) entran: no un rol de tenant Enterprise.
          await c.query(`revoke connect, temporary on database "${name}" from public`);
          await c.query(
            `grant connect, temporary on database "${name}" to "${appRole(productCode)}"`,
          );
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
    appRole,
    async register(productCode, t) {
      const pool = await poolFor(productCode);
      await pool.query(INSERT, [t.tenantInstanceId, t.tenantCode, t.customerId]);
    },
    async deactivate(productCode, ids) {
      if (ids.length === 0) return 0;
      return (await (await poolFor(productCode)).query(DEACTIVATE, [ids])).rowCount ?? 0;
    },
    async isRegistered(productCode, id) {
      const pool = await poolFor(productCode);
      const r = await pool.query("select 1 from farutech_tenants where tenant_id = $1", [id]);
      return (r.rowCount ?? 0) > 0;
    },
    async dropTenant(productCode, id) {
      const c = await (await poolFor(productCode)).connect();
      try {
        await c.query("begin");
        const rowsDeleted = await deleteTenantRows(async (text, params) => {
          const r = await c.query(text, params);
          return { rows: r.rows, count: r.rowCount ?? 0 };
        }, id);
        await c.query("commit");
        return { rowsDeleted };
      } catch (err) {
        await c.query("rollback").catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    },
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.allSettled(all.map(async (p) => (await p).end()));
    },
  };
}

/** Nombre del rol de aplicación en el modo embebido (cada producto es su propio PGlite). */
export const PGLITE_APP_ROLE = "farutech_app_rw";

/**
 * Bases PGlite de producto abiertas a la vez en el modo embebido. Cada una ocupa ~150-200 MB en el
 * proceso: abiertas para siempre, la memoria crecía con cada producto. Las demás se cierran (la
 * menos usada, sin nadie dentro) y se reabren al necesitarlas (~0,3 s). Tres: los productos de la
 * demo no se turnan cerrando y abriendo.
 */
export const PGLITE_OPEN_PRODUCTS = 3;

/** Modo embebido: la base compartida de cada producto es una carpeta PGlite propia. */
export function createPgliteRegistry(
  dataDir: string,
  { maxOpen = PGLITE_OPEN_PRODUCTS }: { maxOpen?: number } = {},
): SharedTenantRegistry & { openProducts(): string[] } {
  interface Entry {
    db: Promise<PGlite>;
    users: number;
    lastUsed: number;
  }
  const entries = new Map<string, Entry>();
  /** Cierres en curso: una carpeta no se reabre hasta que su instancia anterior terminó de cerrar. */
  const closing = new Map<string, Promise<void>>();
  const open = async (productCode: string) => {
    await closing.get(productCode);
    const dir = dataDir.startsWith("memory://")
      ? "memory://"
      : join(dataDir, productCode.toLowerCase());
    if (dir !== "memory://") {
      ensurePrivateDir(dataDir);
      mkdirSync(dir, { recursive: true });
    }
    const instance = await openPglite(dir);
    // Un solo proceso abre la carpeta: no hace falta lock.
    await instance.transaction((tx) => tx.exec(BASELINE(PGLITE_APP_ROLE)));
    return instance;
  };
  const close = (productCode: string, entry: Entry) => {
    entries.delete(productCode);
    const done = entry.db
      .then((d) => d.close())
      .catch(() => {})
      .finally(() => {
        if (closing.get(productCode) === done) closing.delete(productCode);
      });
    closing.set(productCode, done);
    return done;
  };
  // En memoria no hay carpeta de la que reabrir: cerrar sería perder los datos.
  const evict = () => {
    if (dataDir.startsWith("memory://")) return;
    while (entries.size > maxOpen) {
      const idle = [...entries]
        .filter(([, e]) => e.users === 0)
        .sort(([, a], [, b]) => a.lastUsed - b.lastUsed)[0];
      if (!idle) return;
      void close(...idle);
    }
  };
  const use = async <T>(productCode: string, fn: (db: PGlite) => Promise<T>): Promise<T> => {
    let entry = entries.get(productCode);
    if (!entry) {
      const created: Entry = { db: open(productCode), users: 0, lastUsed: 0 };
      created.db.catch(() => {
        if (entries.get(productCode) === created) entries.delete(productCode);
      });
      entries.set(productCode, created);
      entry = created;
    }
    entry.users++;
    try {
      return await fn(await entry.db);
    } finally {
      entry.users--;
      entry.lastUsed = performance.now();
      evict();
    }
  };
  return {
    openProducts: () => [...entries.keys()],
    async register(productCode, t) {
      await use(productCode, (db) =>
        db.query(INSERT, [t.tenantInstanceId, t.tenantCode, t.customerId]),
      );
    },
    async deactivate(productCode, ids) {
      if (ids.length === 0) return 0;
      return use(productCode, async (db) => (await db.query(DEACTIVATE, [ids])).affectedRows ?? 0);
    },
    async isRegistered(productCode, id) {
      return use(productCode, async (db) => {
        const r = await db.query("select 1 from farutech_tenants where tenant_id = $1", [id]);
        return r.rows.length > 0;
      });
    },
    async dropTenant(productCode, id) {
      const rowsDeleted = await use(productCode, (db) =>
        db.transaction((tx) =>
          deleteTenantRows(async (text, params) => {
            const r = await tx.query(text, params);
            return { rows: r.rows, count: r.affectedRows ?? 0 };
          }, id),
        ),
      );
      return { rowsDeleted };
    },
    async close() {
      const all = [...entries];
      for (const [code, entry] of all) void close(code, entry);
      await Promise.allSettled([...closing.values()]);
    },
  };
}
