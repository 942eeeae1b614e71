import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { PermanentError } from "../runtime/errors";
import {
  createPgliteRegistry,
  createPostgresRegistry,
  PGLITE_APP_ROLE,
  type SharedTenantRegistry,
  sharedDatabaseName,
} from "./shared-registry";

const PRODUCT = "FARUTECH_VET";
type Row = Record<string, unknown>;
type Q = (text: string, params?: unknown[]) => Promise<Row[]>;

/** Conexión directa a la base compartida, como la tendría una app hija. */
interface AppSession {
  /** Una transacción como el rol de aplicación, con `app.tenant_id` puesto (o sin poner). */
  asTenant<T>(tenantId: string | null, fn: (q: Q) => Promise<T>): Promise<T>;
  /** Como el dueño de la base (migraciones de la app hija). */
  asOwner(sql: string): Promise<void>;
  close(): Promise<void>;
}

interface Fixture {
  registry(): SharedTenantRegistry;
  role: string;
  /** En PGlite la carpeta la abre un solo proceso: se cierra el registro mientras dura la sesión. */
  session(): Promise<AppSession>;
  /** Registros nuevos (otros procesos) que vuelven a aplicar la base; ¿ven al tenant? */
  reopen(tenantId: string): Promise<boolean[]>;
  dispose(): Promise<void>;
}

/**
 * Servidor Postgres. `owner: "superuser"` usa la cuenta de las pruebas; `"plain"` crea la base
 * compartida con un dueño sin superusuario (CREATEDB, CREATEROLE), como en producción, donde
 * FORCE RLS también le aplica. La app hija entra siempre con su propio usuario de login,
 * miembro del rol de aplicación.
 */
async function postgresFixture(owner: "superuser" | "plain"): Promise<Fixture> {
  const db: TestDatabase = await createPostgresTestDatabase();
  const adminUrl = db.url ?? "";
  const controlDb = new URL(adminUrl).pathname.slice(1);
  // Nombres bajo `<base>_app_%`: la limpieza de databases.ts los borra.
  const ownerRole = `${controlDb}_app_owner`;
  const loginRole = `${controlDb}_app_child`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const ownerUrl = new URL(adminUrl);
  if (owner === "plain") {
    await admin.query(`create role "${ownerRole}" login createdb createrole password 'owner-pw'`);
    ownerUrl.username = ownerRole;
    ownerUrl.password = "owner-pw";
  }
  const registry = createPostgresRegistry(ownerUrl.toString());
  const role = registry.appRole(PRODUCT);
  const shared = (url: URL, user?: { name: string; password: string }) => {
    const u = new URL(url);
    u.pathname = `/${sharedDatabaseName(controlDb, PRODUCT)}`;
    if (user) {
      u.username = user.name;
      u.password = user.password;
    }
    return u.toString();
  };
  return {
    registry: () => registry,
    role,
    async session() {
      await admin.query(`do $$ begin
          create role "${loginRole}" login password 'child-pw';
        exception when duplicate_object then null;
        end $$`);
      await admin.query(`grant "${role}" to "${loginRole}"`);
      const client = new pg.Client({
        connectionString: shared(ownerUrl, { name: loginRole, password: "child-pw" }),
      });
      const ownerClient = new pg.Client({ connectionString: shared(ownerUrl) });
      await client.connect();
      await ownerClient.connect();
      const q: Q = async (text, params) => (await client.query(text, params)).rows;
      return {
        async asTenant(tenantId, fn) {
          await client.query("begin");
          try {
            await client.query(`set local role "${role}"`);
            if (tenantId)
              await client.query("select set_config('app.tenant_id', $1, true)", [tenantId]);
            const out = await fn(q);
            await client.query("commit");
            return out;
          } catch (err) {
            await client.query("rollback");
            throw err;
          }
        },
        async asOwner(sql) {
          await ownerClient.query(sql);
        },
        async close() {
          await client.end();
          await ownerClient.end();
        },
      };
    },
    async reopen(tenantId) {
      // Dos procesos a la vez: el advisory lock serializa la base.
      const others = [1, 2].map(() => createPostgresRegistry(ownerUrl.toString()));
      try {
        return await Promise.all(others.map((r) => r.isRegistered(PRODUCT, tenantId)));
      } finally {
        await Promise.all(others.map((r) => r.close()));
      }
    },
    async dispose() {
      await registry.close();
      await admin.end();
      await db.drop();
    },
  };
}

async function pgliteFixture(): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), "farutech-shared-"));
  let registry = createPgliteRegistry(dir);
  return {
    registry: () => registry,
    role: PGLITE_APP_ROLE,
    async session() {
      await registry.close();
      const db = await PGlite.create(join(dir, PRODUCT.toLowerCase()));
      return {
        asTenant: (tenantId, fn) =>
          db.transaction(async (tx) => {
            await tx.query(`set local role "${PGLITE_APP_ROLE}"`);
            if (tenantId)
              await tx.query("select set_config('app.tenant_id', $1, true)", [tenantId]);
            return fn(async (text, params) => (await tx.query<Row>(text, params)).rows);
          }),
        async asOwner(sql) {
          await db.exec(sql);
        },
        async close() {
          await db.close();
          registry = createPgliteRegistry(dir);
        },
      };
    },
    async reopen(tenantId) {
      await registry.close();
      registry = createPgliteRegistry(dir);
      return [await registry.isRegistered(PRODUCT, tenantId)];
    },
    async dispose() {
      await registry.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const errorCode = (err: unknown) =>
  err && typeof err === "object" && "code" in err ? String(err.code) : String(err);

// Row-level security de la base compartida (tier Standard): cada tenant solo ve y escribe lo suyo.
describe.each([
  ["postgres", () => postgresFixture("superuser")],
  ["postgres with a non-superuser owner", () => postgresFixture("plain")],
  ["pglite", pgliteFixture],
] as const)("shared tenant database on %s", (_name, makeFixture) => {
  let fx: Fixture;
  const a = { tenantInstanceId: newId(), tenantCode: "acme-vet-1", customerId: newId() };
  const b = { tenantInstanceId: newId(), tenantCode: "beta-vet-1", customerId: newId() };

  beforeAll(async () => {
    fx = await makeFixture();
    await fx.registry().register(PRODUCT, a);
    await fx.registry().register(PRODUCT, b);
    await fx.registry().register(PRODUCT, a);
  });
  afterAll(async () => fx?.dispose());

  it("isolates tenants with RLS for the application role", async () => {
    const s = await fx.session();
    try {
      const insert = (tenantId: string | null, rowTenant: string | null, name: string) =>
        s.asTenant(tenantId, (q) =>
          rowTenant
            ? q("insert into farutech_app_records (tenant_id, kind, data) values ($1, 'pet', $2)", [
                rowTenant,
                JSON.stringify({ name }),
              ])
            : q("insert into farutech_app_records (kind, data) values ('pet', $1)", [
                JSON.stringify({ name }),
              ]),
        );
      const names = (tenantId: string | null) =>
        s.asTenant(tenantId, async (q) =>
          (await q("select data->>'name' as name from farutech_app_records order by 1")).map(
            (r) => r.name,
          ),
        );

      await insert(a.tenantInstanceId, a.tenantInstanceId, "firulais");
      // Sin tenant_id explícito, la columna toma el de la sesión.
      await insert(a.tenantInstanceId, null, "michi");
      await insert(b.tenantInstanceId, b.tenantInstanceId, "rex");

      expect(await names(a.tenantInstanceId)).toEqual(["firulais", "michi"]);
      expect(await names(b.tenantInstanceId)).toEqual(["rex"]);
      // Misma conexión tras una transacción con set_config local: el valor queda vacío, no falla.
      expect(await names(null)).toEqual([]);

      // WITH CHECK: escribir para otro tenant, o mover una fila a otro tenant, se rechaza.
      await expect(insert(a.tenantInstanceId, b.tenantInstanceId, "intruso")).rejects.toSatisfy(
        (e) => errorCode(e) === "42501",
      );
      await expect(
        s.asTenant(a.tenantInstanceId, (q) =>
          q("update farutech_app_records set tenant_id = $1", [b.tenantInstanceId]),
        ),
      ).rejects.toSatisfy((e) => errorCode(e) === "42501");
      // Sin tenant no se puede escribir nada.
      await expect(insert(null, null, "huérfano")).rejects.toSatisfy((e) =>
        ["23502", "42501"].includes(errorCode(e)),
      );
      // Borrar o tocar filas ajenas no afecta nada.
      await s.asTenant(b.tenantInstanceId, (q) => q("delete from farutech_app_records"));
      expect(await names(a.tenantInstanceId)).toEqual(["firulais", "michi"]);
      expect(await names(b.tenantInstanceId)).toEqual([]);
      await insert(b.tenantInstanceId, null, "rex");

      // El registro de tenants: la app solo ve su propia fila.
      const visible = await s.asTenant(a.tenantInstanceId, (q) =>
        q("select tenant_code from farutech_tenants"),
      );
      expect(visible).toEqual([{ tenant_code: "acme-vet-1" }]);
      const who = await s.asTenant(a.tenantInstanceId, (q) => q("select current_user as u"));
      expect(who).toEqual([{ u: fx.role }]);
    } finally {
      await s.close();
    }
  });

  it("applies the baseline again without losing data; a table or view added later is the app's only once its migration grants it", async () => {
    // Otros procesos (o un reinicio) vuelven a aplicar la base: es idempotente.
    expect(new Set(await fx.reopen(a.tenantInstanceId))).toEqual(new Set([true]));
    const s = await fx.session();
    try {
      await s.asOwner(`
        create table if not exists vet_patients (
          id bigserial primary key,
          tenant_id uuid not null default nullif(current_setting('app.tenant_id', true), '')::uuid
            references farutech_tenants (tenant_id) on delete cascade,
          name text not null
        );
        create or replace view vet_record_summary as
          select tenant_id, kind, data from farutech_app_records;`);
      // Sin el GRANT de su migración, ni la tabla (aún sin política) ni la vista (corre con los
      // derechos de su dueño, por encima del RLS) son del rol de la app: fallan cerradas.
      for (const sql of [
        "select count(*) from vet_patients",
        "insert into vet_patients (name) values ('colado')",
        "select count(*) from vet_record_summary",
        "select nextval('vet_patients_id_seq')",
      ]) {
        await expect(
          s.asTenant(a.tenantInstanceId, (q) => q(sql)),
          sql,
        ).rejects.toSatisfy((e) => errorCode(e) === "42501");
      }
      // La migración de la app: política y GRANT juntos.
      await s.asOwner(`
        alter table vet_patients enable row level security;
        alter table vet_patients force row level security;
        drop policy if exists isolation on vet_patients;
        create policy isolation on vet_patients
          using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
        grant select, insert, update, delete on vet_patients to "${fx.role}";
        grant usage on sequence vet_patients_id_seq to "${fx.role}";`);
      await s.asTenant(a.tenantInstanceId, (q) =>
        q("insert into vet_patients (name) values ('luna'), ('sol')"),
      );
      await s.asTenant(b.tenantInstanceId, (q) =>
        q("insert into vet_patients (name) values ('rex')"),
      );
      const seen = await s.asTenant(b.tenantInstanceId, (q) => q("select name from vet_patients"));
      expect(seen).toEqual([{ name: "rex" }]);
      const records = await s.asTenant(a.tenantInstanceId, (q) =>
        q("select count(*)::int as n from farutech_app_records"),
      );
      expect(records).toEqual([{ n: 2 }]);
    } finally {
      await s.close();
    }
  });

  it("hides a deactivated tenant's rows from the application role, and still purges them", async () => {
    const c = { tenantInstanceId: newId(), tenantCode: "gamma-vet-1", customerId: newId() };
    await fx.registry().register(PRODUCT, c);
    const rows = (s: AppSession, tenantId: string) =>
      s.asTenant(tenantId, (q) => q("select count(*)::int as n from farutech_app_records"));
    const s0 = await fx.session();
    try {
      await s0.asTenant(c.tenantInstanceId, (q) =>
        q("insert into farutech_app_records (kind) values ('pet'), ('pet')"),
      );
      expect(await rows(s0, c.tenantInstanceId)).toEqual([{ n: 2 }]);
    } finally {
      await s0.close();
    }
    // Baja sin purge: los datos esperan a la retención, pero la app hija ya no los ve.
    expect(await fx.registry().deactivate(PRODUCT, [c.tenantInstanceId])).toBe(1);
    expect(await fx.registry().deactivate(PRODUCT, [c.tenantInstanceId])).toBe(0);
    const s = await fx.session();
    try {
      expect(await rows(s, c.tenantInstanceId)).toEqual([{ n: 0 }]);
      await expect(
        s.asTenant(c.tenantInstanceId, (q) =>
          q("insert into farutech_app_records (kind) values ('pet')"),
        ),
      ).rejects.toSatisfy((e) => errorCode(e) === "42501");
      // Los demás tenants siguen igual.
      expect(await rows(s, b.tenantInstanceId)).not.toEqual([{ n: 0 }]);
      // Una tabla temporal con el mismo nombre no le devuelve el acceso (pg_temp va primero en
      // el search_path de la app; no en el de la función).
      const spoofed = await s.asTenant(c.tenantInstanceId, async (q) => {
        await q(
          "create temp table farutech_tenants (tenant_id uuid, deactivated_at timestamptz) on commit drop",
        );
        await q("insert into farutech_tenants values ($1, null)", [c.tenantInstanceId]);
        return q("select count(*)::int as n from farutech_app_records");
      });
      expect(spoofed).toEqual([{ n: 0 }]);
      // La comprobación va una vez por sentencia (InitPlan), no fila a fila.
      const plan = await s.asTenant(b.tenantInstanceId, (q) =>
        q("explain select * from farutech_app_records"),
      );
      const text = plan.map((r) => Object.values(r).join(" ")).join("\n");
      expect(text).toMatch(/InitPlan/);
      expect(text).not.toMatch(/Filter: .*farutech_tenant_is_active\(\)/);
    } finally {
      await s.close();
    }
    // El orquestador sí las ve: el purge (o la retención) las borra todas.
    expect(await fx.registry().dropTenant(PRODUCT, c.tenantInstanceId)).toEqual({ rowsDeleted: 3 });
  });

  it("drops one tenant's rows in every tenant table and keeps the others", async () => {
    const guc = "nullif(current_setting('app.tenant_id', true), '')::uuid";
    const s0 = await fx.session();
    try {
      // Tablas de la app con una FK normal entre ellas (el padre va antes por orden alfabético) y
      // una tabla en un esquema propio de la app.
      await s0.asOwner(`
        create table a_owners (
          id bigserial primary key,
          tenant_id uuid not null default ${guc}
            references farutech_tenants (tenant_id) on delete cascade,
          name text not null);
        create table b_pets (
          id bigserial primary key,
          tenant_id uuid not null default ${guc}
            references farutech_tenants (tenant_id) on delete cascade,
          owner_id bigint not null references a_owners (id),
          name text not null);
        grant select, insert, update, delete on a_owners, b_pets to "${fx.role}";
        grant usage on sequence a_owners_id_seq, b_pets_id_seq to "${fx.role}";
        create schema vet;
        create table vet.visits (
          id bigserial primary key,
          tenant_id uuid not null default ${guc},
          note text not null);
        grant usage on schema vet to public;
        grant select, insert, update, delete on vet.visits to public;
        grant usage on sequence vet.visits_id_seq to public;`);
      for (const t of [a, b]) {
        await s0.asTenant(t.tenantInstanceId, (q) =>
          q(`with o as (insert into a_owners (name) values ('ana') returning id)
             insert into b_pets (owner_id, name) select id, 'rex' from o`),
        );
        await s0.asTenant(t.tenantInstanceId, (q) =>
          q("insert into vet.visits (note) values ('vacuna')"),
        );
      }
    } finally {
      await s0.close();
    }
    const dropped = await fx.registry().dropTenant(PRODUCT, a.tenantInstanceId);
    // 2 registros + 2 pacientes + dueño, mascota y visita + la fila de farutech_tenants.
    expect(dropped).toEqual({ rowsDeleted: 8 });
    expect(await fx.registry().dropTenant(PRODUCT, a.tenantInstanceId)).toEqual({ rowsDeleted: 0 });
    expect(await fx.registry().isRegistered(PRODUCT, a.tenantInstanceId)).toBe(false);
    expect(await fx.registry().isRegistered(PRODUCT, b.tenantInstanceId)).toBe(true);
    const s = await fx.session();
    try {
      const count = (tenantId: string, table: string) =>
        s.asTenant(tenantId, (q) => q(`select count(*)::int as n from ${table}`));
      expect(await count(a.tenantInstanceId, "farutech_app_records")).toEqual([{ n: 0 }]);
      expect(await count(a.tenantInstanceId, "vet_patients")).toEqual([{ n: 0 }]);
      expect(await count(b.tenantInstanceId, "farutech_app_records")).toEqual([{ n: 1 }]);
      expect(await count(b.tenantInstanceId, "vet_patients")).toEqual([{ n: 1 }]);
      // Estas tablas no tienen RLS: cualquier sesión ve todas sus filas, y solo quedan las de b.
      for (const table of ["a_owners", "b_pets", "vet.visits"]) {
        const left = await s.asTenant(b.tenantInstanceId, (q) =>
          q(`select tenant_id from ${table}`),
        );
        expect(left).toEqual([{ tenant_id: b.tenantInstanceId }]);
      }
    } finally {
      await s.close();
    }
  });
  it("purges text and domain tenant_id columns too, skips other types, and refuses a table whose RLS hides rows from it", async () => {
    const c = { tenantInstanceId: newId(), tenantCode: "gamma-vet-1", customerId: newId() };
    await fx.registry().register(PRODUCT, c);
    const s0 = await fx.session();
    try {
      await s0.asOwner(`
        create table notes_text (tenant_id text not null, note text not null);
        create table legacy_int (tenant_id integer not null, note text not null);
        create domain tenant_ref as uuid;
        create table notes_domain (tenant_id tenant_ref not null, note text not null);
        insert into notes_text values ('${c.tenantInstanceId}', 'c'), ('${b.tenantInstanceId}', 'b');
        insert into notes_domain values ('${c.tenantInstanceId}', 'c');
        insert into legacy_int values (1, 'otra numeración');`);
    } finally {
      await s0.close();
    }
    // Un tenant_id text no rompe el DELETE de las demás tablas (uuid = text no existe), uno de un
    // dominio sobre uuid cuenta como uuid, y uno entero (que no puede guardar nuestros ids) se salta.
    expect(await fx.registry().dropTenant(PRODUCT, c.tenantInstanceId)).toEqual({ rowsDeleted: 3 });
    const s1 = await fx.session();
    try {
      await s1.asOwner(`
        create table hidden_notes (tenant_id uuid not null, note text not null);
        alter table hidden_notes enable row level security;
        alter table hidden_notes force row level security;
        create policy app_only on hidden_notes to "${fx.role}"
          using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
        grant select, insert, update, delete on hidden_notes to "${fx.role}";`);
    } finally {
      await s1.close();
    }
    // Con un dueño sin superusuario, esa política no le aplica: su DELETE borraría 0 filas sin
    // error. Se niega nombrando la tabla. Un superusuario (y PGlite) salta el RLS y borra.
    const purge = fx.registry().dropTenant(PRODUCT, b.tenantInstanceId);
    if (_name === "postgres with a non-superuser owner") {
      await expect(purge).rejects.toThrow(PermanentError);
      await expect(fx.registry().dropTenant(PRODUCT, b.tenantInstanceId)).rejects.toThrow(
        /row-level security hides the rows of public\.hidden_notes/,
      );
      expect(await fx.registry().isRegistered(PRODUCT, b.tenantInstanceId)).toBe(true);
      // Solo DELETE no basta (el WHERE lee la columna): sin SELECT seguiría borrando 0 filas.
      const s2 = await fx.session();
      try {
        await s2.asTenant(b.tenantInstanceId, (q) =>
          q(
            "insert into hidden_notes values (nullif(current_setting('app.tenant_id', true), '')::uuid, 'b')",
          ),
        );
        await s2.asOwner(`
          create policy orchestrator_delete on hidden_notes for delete to current_user using (true);`);
        await expect(fx.registry().dropTenant(PRODUCT, b.tenantInstanceId)).rejects.toThrow(
          PermanentError,
        );
        await s2.asOwner(`
          create policy orchestrator_read on hidden_notes for select to current_user using (true);
          create policy orchestrator_blind on hidden_notes as restrictive for select
            to current_user using (false);`);
        // Una restrictiva que le aplica (p. ej. el dueño miembro del rol de la app) le esconde
        // filas aunque tenga las permisivas: también se niega.
        await expect(fx.registry().dropTenant(PRODUCT, b.tenantInstanceId)).rejects.toThrow(
          /row-level security hides the rows of public\.hidden_notes/,
        );
        await s2.asOwner("drop policy orchestrator_blind on hidden_notes;");
      } finally {
        await s2.close();
      }
      expect(
        (await fx.registry().dropTenant(PRODUCT, b.tenantInstanceId)).rowsDeleted,
      ).toBeGreaterThan(0);
      const s3 = await fx.session();
      try {
        const left = await s3.asTenant(b.tenantInstanceId, (q) =>
          q("select count(*)::int as n from hidden_notes"),
        );
        expect(left).toEqual([{ n: 0 }]);
      } finally {
        await s3.close();
      }
    } else {
      expect((await purge).rowsDeleted).toBeGreaterThan(0);
      expect(await fx.registry().isRegistered(PRODUCT, b.tenantInstanceId)).toBe(false);
    }
  });
});

describe("shared database names", () => {
  it("gives two long product codes that differ only at the end two databases within 63 chars", () => {
    const long = `FARUTECH_${"X".repeat(50)}`;
    const a = sharedDatabaseName("farutech", `${long}_A`);
    const b = sharedDatabaseName("farutech", `${long}_B`);
    expect(a).not.toBe(b);
    expect(a.length).toBeLessThanOrEqual(63);
    expect(b.length).toBeLessThanOrEqual(63);
    // Los nombres cortos no cambian (bases ya creadas).
    expect(sharedDatabaseName("farutech", PRODUCT)).toBe("farutech_app_farutech_vet");
  });
});

// Cada PGlite de producto abierto ocupa ~150-200 MB: abiertos para siempre, la memoria del modo
// embebido crecía con cada producto. Se cierran los que sobran y se reabren sin perder nada.
describe("embedded shared databases kept open", () => {
  it("keeps at most maxOpen product databases open and reopens the others with their data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "farutech-shared-bound-"));
    const registry = createPgliteRegistry(dir, { maxOpen: 1 });
    const products = ["FARUTECH_VET", "FARUTECH_ERP", "FARUTECH_POS"];
    const tenants = products.map((product, i) => ({
      product,
      tenant: { tenantInstanceId: newId(), tenantCode: `bound-${i}`, customerId: newId() },
    }));
    try {
      // A la vez: mientras alguno está en uso no se cierra; al terminar quedan como mucho maxOpen.
      await Promise.all(tenants.map(({ product, tenant }) => registry.register(product, tenant)));
      expect(registry.openProducts().length).toBeLessThanOrEqual(1);
      for (const { product, tenant } of tenants) {
        expect(await registry.isRegistered(product, tenant.tenantInstanceId)).toBe(true);
        expect(registry.openProducts()).toEqual([product]);
      }
      // Una tras otra, alternando: cada reapertura espera al cierre de la anterior.
      for (let round = 0; round < 2; round++) {
        for (const { product, tenant } of tenants) {
          expect(await registry.isRegistered(product, tenant.tenantInstanceId)).toBe(true);
        }
      }
      expect(
        await registry.deactivate("FARUTECH_VET", [tenants[0]?.tenant.tenantInstanceId ?? ""]),
      ).toBe(1);
      expect(registry.openProducts()).toEqual(["FARUTECH_VET"]);
    } finally {
      await registry.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
