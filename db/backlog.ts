import { sql } from "drizzle-orm";
import { type Database, rowsOf } from "./types";

/** Lo que espera en la base del plano de control: outbox sin publicar y DLQ sin reprocesar. */
export interface ControlPlaneBacklog {
  /** Eventos del outbox sin publicar (sin contar los apartados). */
  unpublished: number;
  /** Antigüedad del más viejo de ellos, en segundos (0 si no hay). */
  oldestUnpublishedSeconds: number;
  /** Apartados: fallan una y otra vez con NATS sano; el relay los reintenta cada minuto. */
  parked: number;
  /** Entradas de la DLQ nunca reprocesadas, por dominio. */
  deadLetters: Record<string, number>;
}

/** Una sentencia: las cuentas salen de los índices parciales del outbox y de una DLQ corta. */
export async function readControlPlaneBacklog(db: Database): Promise<ControlPlaneBacklog> {
  const [row] = rowsOf<{
    unpublished: number | string;
    oldest: number | string | null;
    parked: number | string;
    dlq: Record<string, number | string> | string | null;
  }>(
    await db.execute(sql`select
      (select count(*) from outbox_events where published_at is null and parked_at is null) as unpublished,
      (select extract(epoch from clock_timestamp() - min(created_at))::float8 from outbox_events
        where published_at is null and parked_at is null) as oldest,
      (select count(*) from outbox_events where published_at is null and parked_at is not null) as parked,
      (select coalesce(json_object_agg(domain, n), '{}'::json) from (
        select domain, count(*) as n from dlq_entries where replayed_at is null group by domain) d) as dlq`),
  );
  const dlq = typeof row?.dlq === "string" ? JSON.parse(row.dlq) : (row?.dlq ?? {});
  return {
    unpublished: Number(row?.unpublished ?? 0),
    oldestUnpublishedSeconds: Math.max(0, Number(row?.oldest ?? 0)),
    parked: Number(row?.parked ?? 0),
    deadLetters: Object.fromEntries(
      Object.entries(dlq as Record<string, number | string>).map(([k, v]) => [k, Number(v)]),
    ),
  };
}
