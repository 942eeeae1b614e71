import pg from "pg";

/**
 * Espera (hasta 10 s) a que alguna sesión de la base esté esperando un bloqueo y dice cuántas.
 * Las pruebas de carreras la usan en vez de dormir: así la petición está de verdad en la espera
 * cuando la otra transacción confirma, y no llega tarde por el camino sin carrera.
 */
export async function lockWaiters(url: string | undefined): Promise<number> {
  if (!url) throw new Error("lockWaiters needs a Postgres URL (PGlite has one connection)");
  const probe = new pg.Client({ connectionString: url });
  await probe.connect();
  try {
    for (let i = 0; i < 400; i++) {
      const { rows } = await probe.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'`,
      );
      const waiting = rows[0]?.n ?? 0;
      if (waiting > 0) return waiting;
      await new Promise((r) => setTimeout(r, 25));
    }
    return 0;
  } finally {
    await probe.end();
  }
}
