import { sql } from "drizzle-orm";
import { scramSha256Verifier } from "./scram";
import { type Executor, rowsOf } from "./types";

/** Rol sin login con los permisos del edge (migración 0028_edge_role.sql). */
export const EDGE_ROLE = "farutech_edge";

const LOGIN_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** Marca (COMMENT ON ROLE) del usuario del edge de cada base: los roles son del servidor. */
const EDGE_LOGIN_MARK = "farutech edge login of control plane ";
/** Base64url de 32 bytes o más, como las que genera `npm run keys:generate`. */
const MIN_PASSWORD_LENGTH = 24;

export class EdgeLoginError extends Error {
  override name = "EdgeLoginError";
}

/**
 * Crea el usuario de login del edge (miembro de farutech_edge) o le cambia la contraseña. Nunca
 * toca un rol que no sea ya del edge: equivocarse de nombre no le cambia la contraseña al dueño
 * de la base. El SQL lleva el verificador SCRAM, no la contraseña (ver scram.ts).
 */
export async function ensureEdgeLogin(
  db: Executor,
  name: string,
  password: string,
): Promise<"created" | "updated"> {
  if (!LOGIN_NAME.test(name) || name === EDGE_ROLE) {
    throw new EdgeLoginError(
      `Invalid edge user name ${JSON.stringify(name)}: lowercase letters, digits and _ (not ${EDGE_ROLE})`,
    );
  }
  if (password.length < MIN_PASSWORD_LENGTH || !/^[\x21-\x7e]+$/.test(password)) {
    throw new EdgeLoginError(
      `The edge user password must be at least ${MIN_PASSWORD_LENGTH} printable ASCII characters`,
    );
  }
  const [state] = rowsOf<{
    role: boolean;
    exists: boolean;
    member: boolean;
    database: string;
    mark: string | null;
  }>(
    await db.execute(sql`select
      exists (select 1 from pg_roles where rolname = ${EDGE_ROLE}) as role,
      exists (select 1 from pg_roles where rolname = ${name}) as exists,
      exists (select 1 from pg_auth_members m
        join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member
        where r.rolname = ${EDGE_ROLE} and u.rolname = ${name}) as member,
      current_database() as database,
      (select shobj_description(oid, 'pg_authid') from pg_roles where rolname = ${name}) as mark`),
  );
  if (!state?.role) {
    throw new EdgeLoginError(
      `Role ${EDGE_ROLE} does not exist: run the migrations with a user that may create roles`,
    );
  }
  if (state.exists && !state.member) {
    throw new EdgeLoginError(
      `Role ${name} already exists and is not an edge user; choose another name`,
    );
  }
  const mark = `${EDGE_LOGIN_MARK}${state.database}`;
  // El usuario del edge de otra base del servidor no se adopta: quedaría dentro de las dos.
  if (state.mark?.startsWith(EDGE_LOGIN_MARK) && state.mark !== mark) {
    throw new EdgeLoginError(
      `Role ${name} belongs to the control plane ${state.mark.slice(EDGE_LOGIN_MARK.length)}; choose another name`,
    );
  }
  const verifier = scramSha256Verifier(password);
  const quotedDatabase = `"${state.database.replaceAll('"', '""')}"`;
  // Nombre validado arriba y verificador en base64: nada que escapar.
  await db.execute(
    sql.raw(
      state.exists
        ? `alter role "${name}" with login password '${verifier}'`
        : `create role "${name}" with login password '${verifier}' in role ${EDGE_ROLE}`,
    ),
  );
  // CONNECT para este usuario en esta base, no para el rol (que es del servidor): con él, el
  // usuario del edge de otra base del mismo servidor entraría aquí (migración 0030). Y sin
  // PUBLIC, por si la base se creó por copia (CREATE DATABASE … TEMPLATE no copia sus permisos).
  await db.execute(sql.raw(`comment on role "${name}" is '${mark.replaceAll("'", "''")}'`));
  await db.execute(sql.raw(`grant connect on database ${quotedDatabase} to "${name}"`));
  await db.execute(
    sql.raw(`revoke connect on database ${quotedDatabase} from public, ${EDGE_ROLE}`),
  );
  // Los demás usuarios del edge que entran aquí sin ser de esta base (sin marca, de antes de
  // marcarlos, o de otra) dejan de entrar: de cada base entra solo su usuario (o usuarios).
  const strangers = rowsOf<{ rolname: string }>(
    await db.execute(sql`select u.rolname from pg_auth_members m
      join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member
      where r.rolname = ${EDGE_ROLE}
        and shobj_description(u.oid, 'pg_authid') is distinct from ${mark}
        and has_database_privilege(u.oid, current_database(), 'CONNECT')`),
  );
  for (const { rolname } of strangers) {
    await db.execute(
      sql.raw(
        `revoke connect on database ${quotedDatabase} from "${rolname.replaceAll('"', '""')}"`,
      ),
    );
  }
  return state.exists ? "updated" : "created";
}
