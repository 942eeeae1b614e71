import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgErrorCode } from "../../core/http/db-errors";
import { newId, randomToken } from "../../core/ids";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import {
  createPostgresDedicated,
  dedicatedName,
  ENTERPRISE_ROLE_CONNECTION_LIMIT,
} from "./dedicated-databases";
import { createPostgresRegistry, sharedDatabaseName } from "./shared-registry";

/** A qué base entra una cadena de conexión, o el código con que la rechazan. */
async function reach(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    const { rows } = await client.query("select current_database() as d");
    return `connected to ${String(rows[0]?.d)}`;
  } catch (err) {
    return `refused ${pgErrorCode(err) ?? String(err)}`;
  } finally {
    await client.end().catch(() => {});
  }
}

// El rol de un tenant Enterprise (sus credenciales las tiene la app hija) no sale de su base.
describe("Enterprise tenant role confinement", () => {
  let control: TestDatabase;
  let dedicated: ReturnType<typeof createPostgresDedicated>;
  let registry: ReturnType<typeof createPostgresRegistry>;
  const a = newId();
  const b = newId();
  const password = randomToken(24);
  const at = (database: string) => {
    const u = new URL(dedicated.connectionString(a, password));
    u.pathname = `/${database}`;
    return u.toString();
  };

  beforeAll(async () => {
    control = await createPostgresTestDatabase();
    dedicated = createPostgresDedicated(control.url ?? "");
    registry = createPostgresRegistry(control.url ?? "");
    await registry.register("FARUTECH_VET", {
      tenantInstanceId: newId(),
      tenantCode: "vet-1",
      customerId: newId(),
    });
    await dedicated.create(a, password);
    await dedicated.create(b, randomToken(24));
  });
  afterAll(async () => {
    await dedicated?.drop(a).catch(() => {});
    await dedicated?.drop(b).catch(() => {});
    await dedicated?.close();
    await registry?.close();
    await control?.drop();
  });

  it("reaches its own database only: not another tenant's, the control plane or a shared one", async () => {
    const controlDb = new URL(control.url ?? "").pathname.slice(1);
    expect(await reach(at(dedicatedName(a)))).toBe(`connected to ${dedicatedName(a)}`);
    expect(await reach(at(dedicatedName(b)))).toBe("refused 42501");
    expect(await reach(at(controlDb))).toBe("refused 42501");
    expect(await reach(at(sharedDatabaseName(controlDb, "FARUTECH_VET")))).toBe("refused 42501");
  });

  it("cannot block its own removal: what it left in another database (the server's postgres) goes with it", async () => {
    const c = newId();
    const own = randomToken(24);
    await dedicated.create(c, own);
    // El rol entra en `postgres` (CONNECT de PUBLIC, fuera de nuestro control) y deja allí una
    // entrada de privilegios por defecto: sin limpiarla, DROP ROLE falla (2BP01) para siempre.
    const u = new URL(dedicated.connectionString(c, own));
    u.pathname = "/postgres";
    const tenant = new pg.Client({ connectionString: u.toString() });
    await tenant.connect();
    await tenant.query("alter default privileges grant select on tables to public");
    await tenant.end();
    await dedicated.drop(c);
    const admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    try {
      const { rows } = await admin.query(
        `select (select count(*)::int from pg_database where datname = $1) as dbs,
                (select count(*)::int from pg_roles where rolname = $1) as roles`,
        [dedicatedName(c)],
      );
      expect(rows).toEqual([{ dbs: 0, roles: 0 }]);
    } finally {
      await admin.end();
    }
    // El rol ya no existe: 28000 (28P01 si el servidor pidiera contraseña).
    expect(await reach(u.toString())).toMatch(/^refused 28(000|P01)$/);
  });

  // template1 acepta conexiones de PUBLIC: un tenant conectado ahí bloqueaba toda CREATE DATABASE
  // del servidor (55006 tras 5 s), la de otros tenants y la de la base compartida de un producto.
  // (Las demás pruebas crean sus bases de su propia plantilla o de template0: esta no las frena.)
  it("a tenant holding a connection to template1 does not block provisioning anyone else", async () => {
    const holder = new pg.Client({ connectionString: at("template1") });
    await holder.connect();
    const c = newId();
    try {
      await dedicated.create(c, randomToken(24));
      await registry.register("FARUTECH_TPL", {
        tenantInstanceId: newId(),
        tenantCode: "tpl-1",
        customerId: newId(),
      });
    } finally {
      await holder.end();
      await dedicated.drop(c).catch(() => {});
    }
  });

  // El dueño de una base puede ALTER DATABASE (SET role, read only, allow_connections): así un
  // tenant dueño de la suya impedía limpiar lo que le había concedido ahí a otro tenant, y la baja
  // de ese otro fallaba para siempre con su rol aún con LOGIN.
  it("does not own its database, so it cannot block another tenant's removal from there", async () => {
    const attacker = newId();
    const victim = newId();
    const attackerPw = randomToken(24);
    await dedicated.create(attacker, attackerPw);
    await dedicated.create(victim, randomToken(24));
    const own = new pg.Client({
      connectionString: dedicated.connectionString(attacker, attackerPw),
    });
    await own.connect();
    try {
      // Sus tablas, esquemas y extensiones de confianza los sigue creando (public es suyo).
      await own.query("create table bait (x int)");
      await own.query("create schema app; create table app.t (x int); create extension citext");
      await own.query(`grant select on bait to "${dedicatedName(victim)}"`);
      for (const sql of [
        `alter database "${dedicatedName(attacker)}" set default_transaction_read_only = on`,
        `alter database "${dedicatedName(attacker)}" set role = "${dedicatedName(attacker)}"`,
        `alter database "${dedicatedName(attacker)}" allow_connections false`,
      ]) {
        await expect(own.query(sql), sql).rejects.toSatisfy((e) => pgErrorCode(e) === "42501");
      }
    } finally {
      await own.end();
    }
    await dedicated.drop(victim);
    const admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    try {
      const { rows } = await admin.query(
        "select count(*)::int as n from pg_roles where rolname = $1",
        [dedicatedName(victim)],
      );
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await admin.end();
      await dedicated.drop(attacker);
    }
  });

  // Las creadas por versiones anteriores eran del rol del tenant: al arrancar, los workers las
  // pasan al orquestador (si no, ese tenant aún podía bloquear la baja de otros).
  it("takes over a tenant database created owned by its role by an earlier version", async () => {
    const legacy = newId();
    const pw = randomToken(24);
    await dedicated.create(legacy, pw);
    const name = dedicatedName(legacy);
    const admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    try {
      // Como la dejaba la versión anterior.
      await admin.query(`alter database "${name}" owner to "${name}"`);
      // Varios procesos de workers arrancan a la vez: sin serializar, "tuple concurrently updated".
      const processes = [1, 2, 3, 4].map(() => createPostgresDedicated(control.url ?? ""));
      await Promise.all(processes.map((p) => p.adoptLegacyDatabases()));
      await Promise.all(processes.map((p) => p.close()));
      const { rows } = await admin.query<{ owner: string; me: string }>(
        "select pg_get_userbyid(datdba) as owner, current_user as me from pg_database where datname = $1",
        [name],
      );
      expect(rows[0]?.owner).toBe(rows[0]?.me);
      expect(await dedicated.adoptLegacyDatabases()).toBe(0);
      const own = new pg.Client({ connectionString: dedicated.connectionString(legacy, pw) });
      await own.connect();
      try {
        await expect(
          own.query(`alter database "${name}" allow_connections false`),
        ).rejects.toSatisfy((e) => pgErrorCode(e) === "42501");
        await own.query("create table still_works (x int)");
      } finally {
        await own.end();
      }
    } finally {
      await admin.end();
      await dedicated.drop(legacy);
    }
  });

  it("has a connection limit and no elevated attributes", async () => {
    const admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    try {
      const { rows } = await admin.query(
        `select rolconnlimit, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication
           from pg_roles where rolname = $1`,
        [dedicatedName(a)],
      );
      expect(rows[0]).toEqual({
        rolconnlimit: ENTERPRISE_ROLE_CONNECTION_LIMIT,
        rolsuper: false,
        rolcreatedb: false,
        rolcreaterole: false,
        rolbypassrls: false,
        rolreplication: false,
      });
    } finally {
      await admin.end();
    }
  });
});

// Tier Standard sin ningún tenant Enterprise: el usuario de login de una app hija (miembro del
// rol de la app) entra en la base compartida de su producto, pero tampoco en la del plano de control.
describe("Standard application login confinement", () => {
  let control: TestDatabase;
  let registry: ReturnType<typeof createPostgresRegistry>;
  let login: string;
  const at = (database: string) => {
    const u = new URL(control.url ?? "");
    u.username = login;
    u.password = "";
    u.pathname = `/${database}`;
    return u.toString();
  };

  beforeAll(async () => {
    control = await createPostgresTestDatabase();
    registry = createPostgresRegistry(control.url ?? "");
    await registry.register("FARUTECH_VET", {
      tenantInstanceId: newId(),
      tenantCode: "vet-1",
      customerId: newId(),
    });
    const controlDb = new URL(control.url ?? "").pathname.slice(1);
    login = `${controlDb}_login`;
    const admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    try {
      await admin.query(`create role "${login}" login`);
      await admin.query(`grant "${registry.appRole("FARUTECH_VET")}" to "${login}"`);
    } finally {
      await admin.end();
    }
  });
  afterAll(async () => {
    if (login) {
      const admin = new pg.Client({ connectionString: control.url });
      await admin.connect();
      await admin.query(`drop role if exists "${login}"`).finally(() => admin.end());
    }
    await registry?.close();
    await control?.drop();
  });

  it("several worker processes opening their product databases at once do not collide", async () => {
    // Cada registro es un proceso de workers que abre su base y revoca a la vez sobre la del plano
    // de control: sin serializar, "tuple concurrently updated".
    const controlDb = new URL(control.url ?? "").pathname.slice(1);
    // Como en un despliegue nuevo: PUBLIC aún entra, y todos van a revocarlo a la vez.
    const admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    await admin
      .query(`grant connect, temporary on database "${controlDb}" to public`)
      .finally(() => admin.end());
    const processes = ["A", "B", "C", "D", "E", "F"].map((suffix) => ({
      suffix,
      registry: createPostgresRegistry(control.url ?? ""),
    }));
    try {
      await Promise.all(
        processes.map(({ suffix, registry }) =>
          registry.register(`FARUTECH_ACL_${suffix}`, {
            tenantInstanceId: newId(),
            tenantCode: `acl-${suffix.toLowerCase()}`,
            customerId: newId(),
          }),
        ),
      );
    } finally {
      await Promise.all(processes.map((p) => p.registry.close()));
    }
    expect(await reach(at(controlDb))).toBe("refused 42501");
  });

  it("reaches its product's shared database, not the control plane", async () => {
    const controlDb = new URL(control.url ?? "").pathname.slice(1);
    const shared = sharedDatabaseName(controlDb, "FARUTECH_VET");
    expect(await reach(at(shared))).toBe(`connected to ${shared}`);
    expect(await reach(at(controlDb))).toBe("refused 42501");
  });
});
