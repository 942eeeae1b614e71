import type pg from "pg";

/**
 * GRANT/REVOKE sobre una base reescriben su fila de pg_database: dos a la vez desde procesos
 * distintos fallan con "tuple concurrently updated". Se serializan con este lock (en la base del
 * plano de control, a la que se conectan todos los que la cambian).
 */
export const DATABASE_ACL_LOCK_ID = 727_274_005;

/** `fn` en una transacción que tiene el lock de ACL de bases (lo suelta al terminar). */
export async function withDatabaseAclLock<T>(
  client: pg.ClientBase,
  fn: () => Promise<T>,
): Promise<T> {
  await client.query("begin");
  try {
    await client.query("select pg_advisory_xact_lock($1)", [DATABASE_ACL_LOCK_ID]);
    const result = await fn();
    await client.query("commit");
    return result;
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  }
}

/** Nadie más que su dueño (y quien tenga un GRANT explícito) entra en `database`. */
export async function revokePublicAccess(client: pg.ClientBase, database: string): Promise<void> {
  await withDatabaseAclLock(client, async () => {
    // Lo común es que ya esté revocado: entonces no se toca la fila.
    const { rows } = await client.query<{ open: boolean }>(
      `select has_database_privilege('public', $1, 'CONNECT')
           or has_database_privilege('public', $1, 'TEMPORARY') as open`,
      [database],
    );
    if (rows[0]?.open) {
      await client.query(`revoke connect, temporary on database "${database}" from public`);
    }
  });
}
