import { existsSync, mkdirSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import pg from "pg";
import { ensurePrivateDir } from "../../core/dir-lock";
import { pgErrorCode } from "../../core/http/db-errors";
import { openPglite } from "../../db/drivers/open-pglite";
import { scramSha256Verifier } from "../../db/scram";
import { PermanentError } from "../runtime/errors";
import { revokePublicAccess, withDatabaseAclLock } from "./database-acl";
import { createTenantPools, type TenantPools, type TenantPoolsOptions } from "./tenant-pools";

/**
 * Comprobación que corre en la misma transacción que el cambio del rol, en la conexión de
 * administración (la base del plano de control): lanza si quien pide el cambio ya no tiene la
 * tarea. Así una ejecución abandonada que llega tarde no pisa lo que hizo otra después.
 */
export type RoleFence = (client: {
  query(text: string, params: unknown[]): Promise<{ rowCount: number | null }>;
}) => Promise<void>;

/** Tier Enterprise: una base y un rol propios por tenant, con el esquema base del producto. */
export interface DedicatedDatabases {
  /** La cadena de conexión del tenant con esa contraseña (sin tocar el servidor). */
  connectionString(tenantInstanceId: string, password: string): string;
  /**
   * Crea (o reusa) base y rol, y deja al rol esa contraseña. Idempotente con la misma contraseña:
   * una ejecución repetida o tardía del paso no invalida la cadena guardada. Con `fence`, el rol
   * solo se crea o cambia si la valla pasa (y entonces también la base).
   */
  create(tenantInstanceId: string, password: string, fence?: RoleFence): Promise<void>;
  /**
   * Contraseña nueva para el rol de un tenant que ya existe (idempotente con la misma). Las
   * sesiones abiertas siguen; las nuevas necesitan la nueva. Con `fence`, solo si la valla pasa.
   */
  setPassword(tenantInstanceId: string, password: string, fence?: RoleFence): Promise<void>;
  /** Aplica el esquema base del producto usando la cadena del tenant (idempotente). */
  applyBaseline(connectionString: string, productCode: string): Promise<void>;
  /**
   * Al dar de baja sin purge: el rol deja de poder entrar y se cortan sus sesiones; base y datos
   * quedan hasta que venza la retención (idempotente; sin rol no hace nada). Con varios tenants
   * usa una sola conexión. Devuelve a cuántos roles les quitó ahora el LOGIN.
   */
  disableLogin(...tenantInstanceIds: string[]): Promise<number>;
  /** Borra base y rol del tenant (idempotente: lo que ya no existe se salta). */
  drop(tenantInstanceId: string): Promise<void>;
  /** ¿Queda algo del tenant (base o rol)? Para ver si una escritura tardía lo volvió a crear. */
  exists(tenantInstanceId: string): Promise<boolean>;
  /**
   * Las bases de tenants creadas por versiones anteriores eran de su rol (que así podía ALTER
   * DATABASE): pasan al orquestador con los permisos de ahora. Devuelve cuántas cambió.
   */
  adoptLegacyDatabases(): Promise<number>;
  /** Cierra las conexiones abiertas (al parar el worker). */
  close(): Promise<void>;
}

const BASELINE = (productCode: string) => `
  create table if not exists farutech_tenant_metadata (
    key text primary key,
    value text not null
  );
  insert into farutech_tenant_metadata (key, value) values ('product', '${productCode.replace(/'/g, "")}')
    on conflict (key) do nothing;`;

/**
 * Nombre de la base, del rol y de la carpeta PGlite de un tenant: sale del id de la instancia, no
 * del tenant_code (que lleva la razón social): el borrado GDPR lo renombra y el catálogo del
 * servidor no guarda datos personales.
 */
export function dedicatedName(tenantInstanceId: string): string {
  return `t_${tenantInstanceId.toLowerCase().replace(/[^a-z0-9]/g, "_")}`.slice(0, 63);
}

/** Conexiones simultáneas que admite el rol de una base Enterprise (app hija más workers). */
export const ENTERPRISE_ROLE_CONNECTION_LIMIT = 20;

export function createPostgresDedicated(
  adminUrl: string,
  poolOptions: TenantPoolsOptions = {},
): DedicatedDatabases & { pools: TenantPools } {
  const pools = createTenantPools(poolOptions);
  // Los roles son del servidor y el nombre sale solo del id de la instancia: otro plano de control
  // en el mismo servidor (staging restaurado de un volcado de producción) tendría los mismos. Cada
  // rol lleva la base de su plano de control en su comentario y ninguno toca el de otro.
  const controlPlane = decodeURIComponent(new URL(adminUrl).pathname.slice(1));
  const marker = `farutech tenant role of control plane ${controlPlane}`;
  /** Nombres (de los dados) cuyo rol existe y es de otro plano de control. */
  const foreign = async (admin: pg.Client, names: string[]): Promise<string[]> => {
    const { rows } = await admin.query<{ rolname: string }>(
      `select r.rolname from pg_roles r
        where r.rolname = any($1)
          and coalesce(shobj_description(r.oid, 'pg_authid'), $2) <> $2`,
      [names, marker],
    );
    return rows.map((r) => r.rolname);
  };
  /** La misma conexión de administración, a otra base del servidor. */
  const databaseUrl = (database: string) => {
    const url = new URL(adminUrl);
    url.pathname = `/${encodeURIComponent(database)}`;
    return url.toString();
  };
  /**
   * Deja la base del tenant como debe estar (idempotente): del orquestador (o del rol del tenant,
   * como la creaban antes, y entonces pasa al orquestador), sin PUBLIC, con CONNECT, TEMPORARY y
   * CREATE para el tenant y su esquema public.
   */
  const secure = async (admin: pg.Client, name: string) => {
    // Reescribe la fila de pg_database: serializado con los demás procesos (ver database-acl.ts).
    await withDatabaseAclLock(admin, async () => {
      const { rows } = await admin.query<{ owner: string; me: string }>(
        `select pg_get_userbyid(datdba) as owner, current_user as me
           from pg_database where datname = $1`,
        [name],
      );
      const owner = rows[0]?.owner;
      if (owner === name) await admin.query(`alter database "${name}" owner to current_user`);
      else if (owner !== rows[0]?.me) {
        throw new PermanentError(`Database ${name} exists and is not owned by the orchestrator`);
      }
      await admin.query(`revoke all on database "${name}" from public`);
      // CREATE: sus migraciones pueden crear esquemas y extensiones de confianza (pg_trgm,
      // citext…); no da ALTER DATABASE, que sigue siendo solo del dueño.
      await admin.query(`grant connect, temporary, create on database "${name}" to "${name}"`);
    });
    // El tenant crea sus tablas en public (su esquema), sin ser dueño de la base.
    const inside = new pg.Client({ connectionString: databaseUrl(name) });
    await inside.connect();
    try {
      await inside.query(`alter schema public owner to "${name}"`);
    } finally {
      await inside.end();
    }
  };
  const refuseForeign = async (admin: pg.Client, name: string) => {
    if ((await foreign(admin, [name])).length > 0) {
      throw new PermanentError(
        `Database role ${name} belongs to another control plane on this server; not touching it`,
      );
    }
  };
  /**
   * ¿Existe el rol? Antes de cambiarle la contraseña a un rol que ya existe: que sea de este plano
   * de control (si no, PermanentError).
   */
  const ownRoleExists = async (admin: pg.Client, name: string) => {
    await refuseForeign(admin, name);
    const exists = await admin.query("select 1 from pg_roles where rolname = $1", [name]);
    return (exists.rowCount ?? 0) > 0;
  };
  /**
   * Corre `change` (sentencias sobre el rol, transaccionales en Postgres) en una transacción con
   * la valla: la fila que esta bloquea ordena el cambio con el de cualquier otra ejecución.
   */
  const fenced = async (
    admin: pg.Client,
    fence: RoleFence | undefined,
    change: () => Promise<void>,
  ) => {
    if (!fence) return change();
    await admin.query("begin");
    try {
      // Si este proceso se detiene con la transacción abierta, el servidor la corta: no deja
      // bloqueada la fila de la tarea a las demás entregas.
      await admin.query("set local idle_in_transaction_session_timeout = '30s'");
      await fence(admin);
      await change();
      await admin.query("commit");
    } catch (err) {
      await admin.query("rollback").catch(() => {});
      throw err;
    }
  };
  return {
    pools,
    connectionString(tenantInstanceId, password) {
      const name = dedicatedName(tenantInstanceId);
      const url = new URL(adminUrl);
      url.username = name;
      url.password = password;
      url.pathname = `/${name}`;
      return url.toString();
    },
    async create(tenantInstanceId, password, fence) {
      const name = dedicatedName(tenantInstanceId);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        // Rol primero; si ya existe (reintento), se le vuelve a poner la misma contraseña.
        // El SQL lleva el verificador SCRAM, no la contraseña (ver scram.ts).
        await fenced(admin, fence, async () => {
          const exists = await ownRoleExists(admin, name);
          const verifier = scramSha256Verifier(password);
          // Con tope de conexiones: la app hija tiene las credenciales y sin él podría agotar
          // max_connections del servidor, que comparten el plano de control y los demás tenants.
          const options = `login connection limit ${ENTERPRISE_ROLE_CONNECTION_LIMIT} password '${verifier}'`;
          if (exists) await admin.query(`alter role "${name}" with ${options}`);
          else await admin.query(`create role "${name}" with ${options}`);
          await admin.query(`comment on role "${name}" is ${admin.escapeLiteral(marker)}`);
        });
        // De template0, no de template1: a template1 entra PUBLIC, y un tenant conectado ahí
        // bloquearía toda CREATE DATABASE del servidor (55006) o dejaría objetos suyos que se
        // copiarían a las bases de los demás. Y la base es del orquestador, no del tenant: el
        // dueño puede ALTER DATABASE (SET role, read only, allow_connections) y con eso impedir
        // que la baja de otro tenant limpie lo que le dejó ahí.
        try {
          await admin.query(`create database "${name}" template template0`);
        } catch (err) {
          if (pgErrorCode(err) !== "42P04" && pgErrorCode(err) !== "23505") throw err;
        }
        await secure(admin, name);
        // Y ningún rol de tenant entra en la base del plano de control (solo su dueño).
        await revokePublicAccess(admin, controlPlane);
      } finally {
        await admin.end();
      }
    },
    async setPassword(tenantInstanceId, password, fence) {
      const name = dedicatedName(tenantInstanceId);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        await fenced(admin, fence, async () => {
          if (!(await ownRoleExists(admin, name))) {
            throw new PermanentError(`Database role ${name} does not exist; nothing to rotate`);
          }
          // Solo el verificador SCRAM viaja al servidor (ver scram.ts).
          await admin.query(
            `alter role "${name}" with password '${scramSha256Verifier(password)}'`,
          );
        });
      } finally {
        await admin.end();
      }
    },
    async applyBaseline(connectionString, productCode) {
      await pools.acquire(connectionString).query(BASELINE(productCode));
    },
    async disableLogin(...tenantInstanceIds) {
      if (tenantInstanceIds.length === 0) return 0;
      const names = tenantInstanceIds.map(dedicatedName);
      for (const name of names) await pools.release(name);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        const others = await foreign(admin, names);
        const ours = names.filter((n) => !others.includes(n));
        const { rows } = await admin.query<{ rolname: string }>(
          "select rolname from pg_roles where rolname = any($1) and rolcanlogin",
          [ours],
        );
        for (const { rolname } of rows) await admin.query(`alter role "${rolname}" nologin`);
        // NOLOGIN no corta lo ya conectado: se terminan sus sesiones (también las que dejó un
        // intento anterior cortado entre el ALTER y esto).
        await admin.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where usename = any($1)",
          [ours],
        );
        return rows.length;
      } finally {
        await admin.end();
      }
    },
    async exists(tenantInstanceId) {
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        const { rows } = await admin.query<{ found: boolean }>(
          `select exists (select 1 from pg_database where datname = $1)
               or exists (select 1 from pg_roles where rolname = $1) as found`,
          [dedicatedName(tenantInstanceId)],
        );
        return rows[0]?.found === true;
      } finally {
        await admin.end();
      }
    },
    async drop(tenantInstanceId) {
      const name = dedicatedName(tenantInstanceId);
      // Primero se cierran nuestras conexiones; `with (force)` (PG13+) corta las de la app hija.
      await pools.release(name);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        await refuseForeign(admin, name);
        await admin.query(`drop database if exists "${name}" with (force)`);
        // El rol pudo dejar algo en otra base a la que PUBLIC entra (p. ej. privilegios por
        // defecto en `postgres`): DROP ROLE fallaría para siempre. Se limpia base por base.
        const { rows } = await admin.query<{ datname: string }>(
          `select distinct d.datname from pg_shdepend s join pg_database d on d.oid = s.dbid
            where s.refclassid = 'pg_authid'::regclass and d.datallowconn
              and s.refobjid = (select oid from pg_roles where rolname = $1)`,
          [name],
        );
        for (const { datname } of rows) {
          const other = new pg.Client({ connectionString: databaseUrl(datname) });
          await other.connect();
          try {
            // Lo que el dueño de esa base le haya puesto a las sesiones (ALTER DATABASE SET role o
            // read only) no cambia quién limpia ni deja la sesión de solo lectura.
            await other.query(
              "set role none; set session characteristics as transaction read write",
            );
            await other.query(`drop owned by "${name}"`);
          } finally {
            await other.end();
          }
        }
        await admin.query(`drop role if exists "${name}"`);
      } finally {
        await admin.end();
      }
    },
    async adoptLegacyDatabases() {
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        const { rows } = await admin.query<{ datname: string }>(
          `select d.datname from pg_database d join pg_roles r on r.oid = d.datdba
            where d.datname = r.rolname and shobj_description(r.oid, 'pg_authid') = $1`,
          [marker],
        );
        for (const { datname } of rows) await secure(admin, datname);
        return rows.length;
      } finally {
        await admin.end();
      }
    },
    close: () => pools.closeAll(),
  };
}

/** Modo embebido: la base propia de un tenant es una carpeta PGlite (`pglite://<ruta>`). */
export function createPgliteDedicated(
  dataDir: string,
  { open = openPglite }: { open?: typeof openPglite } = {},
): DedicatedDatabases {
  const dirOf = (tenantInstanceId: string) => join(dataDir, dedicatedName(tenantInstanceId));
  // Un PGlite abierto ocupa ~150-200 MB: con la concurrencia del worker, 8 tareas Enterprise a la
  // vez llevaban el proceso a más de 2 GB. El esquema se aplica de una base en una.
  let applying: Promise<unknown> = Promise.resolve();
  return {
    // PGlite no tiene roles: la contraseña no se usa.
    connectionString: (tenantInstanceId) =>
      dataDir.startsWith("memory://") ? "pglite://memory" : `pglite://${dirOf(tenantInstanceId)}`,
    async create(tenantInstanceId) {
      if (dataDir.startsWith("memory://")) return;
      ensurePrivateDir(dataDir);
      mkdirSync(dirOf(tenantInstanceId), { recursive: true });
    },
    applyBaseline(connectionString, productCode) {
      const stored = connectionString.replace(/^pglite:\/\//, "");
      // La cadena guardada lleva la ruta absoluta del día del alta: con la carpeta de datos movida
      // (copiada a otro disco) apuntaría a la copia vieja. La carpeta del tenant sale de la actual.
      const path = stored === "memory" ? "memory://" : join(dataDir, basename(stored));
      const run = applying.then(async () => {
        const db = await open(path);
        try {
          await db.exec(BASELINE(productCode));
        } finally {
          await db.close();
        }
      });
      applying = run.catch(() => {});
      return run;
    },
    // PGlite no tiene roles: no hay contraseña que cambiar.
    async setPassword() {},
    // PGlite no tiene roles ni sesiones de red: nadie más entra en la carpeta.
    async disableLogin() {
      return 0;
    },
    async adoptLegacyDatabases() {
      return 0;
    },
    async exists(tenantInstanceId) {
      return !dataDir.startsWith("memory://") && existsSync(dirOf(tenantInstanceId));
    },
    async drop(tenantInstanceId) {
      if (dataDir.startsWith("memory://")) return;
      rmSync(dirOf(tenantInstanceId), { recursive: true, force: true });
    },
    async close() {},
  };
}
