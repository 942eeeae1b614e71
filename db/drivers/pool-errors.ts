/** Lo mínimo de un pool compatible con pg (pg y @neondatabase/serverless). */
interface PoolEvents {
  on(event: "error", listener: (err: Error) => void): unknown;
  on(
    event: "connect",
    listener: (client: { on(e: "error", l: (err: Error) => void): unknown }) => void,
  ): unknown;
}

/**
 * Una conexión que se corta (reinicio o failover de Postgres, un reaper de conexiones) emite
 * "error". pg-pool solo escucha las ociosas: en una prestada, sin oyente, el evento tumbaría el
 * proceso entero. Con estos oyentes la siguiente consulta falla y la maneja quien la hizo.
 */
export function survivePoolConnectionErrors(pool: PoolEvents): void {
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
}
