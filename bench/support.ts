import { readFileSync } from "node:fs";
import pg from "pg";

export interface LatencyStats {
  count: number;
  perSecond: number;
  p50: number;
  p99: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? 0;
}

/** Corre `work` con `concurrency` bucles durante `durationMs` y mide latencias. */
export async function closedLoop(
  concurrency: number,
  durationMs: number,
  work: (i: number) => Promise<void>,
): Promise<LatencyStats> {
  const latencies: number[] = [];
  const deadline = performance.now() + durationMs;
  let counter = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        await work(counter++);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    count: latencies.length,
    perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

/** Corre `work(i)` para i en [0, total) con `concurrency` bucles a la vez. */
export async function inParallel(
  concurrency: number,
  total: number,
  work: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < total; i = next++) await work(i);
    }),
  );
}

/** Base Postgres nueva para un benchmark; se borra al final. */
export async function freshDatabase(
  adminUrl: string,
  name: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists "${name}" with (force)`);
  await admin.query(`create database "${name}" template template0`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      const { rows } = await c.query<{ datname: string }>(
        "select datname from pg_database where datname like $1",
        [`${name}%`],
      );
      for (const r of rows) await c.query(`drop database if exists "${r.datname}" with (force)`);
      // Los roles de aplicación de las bases compartidas son del servidor: sin esto quedaban.
      const roles = await c.query<{ rolname: string }>(
        "select rolname from pg_roles where starts_with(rolname, $1)",
        [`${name}_`],
      );
      for (const r of roles.rows) await c.query(`drop role if exists "${r.rolname}"`);
      await c.end();
    },
  };
}

export const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** CPU de usuario + sistema (ms) que lleva gastada un proceso, de /proc (Linux); undefined si no hay. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // Tras el "(comm)", los campos 14 y 15 de stat son utime y stime en ticks de 10 ms (CLK_TCK 100).
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Tiempo ocupado y total de todas las CPUs de la máquina (ms), de /proc/stat; undefined si no hay. */
export function machineCpuMs(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: (total - idle) * 10, total: total * 10 };
  } catch {
    return undefined;
  }
}
