import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { eq, sql } from "drizzle-orm";
import getPort from "get-port";
import { generateSigningKey } from "../core/auth/keys";
import { createTokenSigner } from "../core/auth/tokens";
import { createDb } from "../db/client";
import { plans, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { startLocalNats } from "../infra/nats/local-server";
import { closedLoop, fmt, freshDatabase, machineCpuMs, processCpuMs } from "./support";

// npm run bench:admin — rendimiento de la API admin frente a un techo medido en la misma corrida:
// una transacción de una fila por el mismo driver, sin HTTP.
const CONNECTIONS = 50;
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 8);
const adminUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

const database = await freshDatabase(adminUrl, `farutech_bench_admin_${process.pid}`);
const natsDir = mkdtempSync(join(tmpdir(), "farutech-bench-nats-"));
const nats = await startLocalNats({ dataDir: natsDir });
const handle = await createDb({ url: database.url });
await handle.migrate();
await seedDemo(handle.db);
const key = await generateSigningKey("bench");
const env = {
  DATABASE_URL: database.url,
  NATS_URL: nats.url,
  AUTH_SIGNING_KEYS: JSON.stringify([key]),
  AUTH_ISSUER: "http://bench",
  LOG_LEVEL: "silent",
};
// La API corre en su propio proceso, como una función desplegada; autocannon no le roba CPU.
const port = await getPort({ host: "127.0.0.1" });
const serverProc = spawn(process.execPath, ["--import", "tsx", "functions/server.ts"], {
  env: { ...process.env, ...env, PORT: String(port) },
  stdio: "ignore",
});
const server = { url: `http://127.0.0.1:${port}`, close: () => serverProc.kill("SIGTERM") };
for (let i = 0; ; i++) {
  const ok = await fetch(`${server.url}/readyz`)
    .then((r) => r.ok)
    .catch(() => false);
  if (ok) break;
  if (i > 200) throw new Error("admin API did not become ready");
  await new Promise((r) => setTimeout(r, 100));
}
const signer = await createTokenSigner([key], {
  issuer: "http://bench",
  audience: "farutech-orchestrator",
  accessTokenTtlSeconds: 3600,
});
const token = (
  await signer.sign({ sub: "bench", tenant_id: null, instance_ids: [], roles: ["platform_admin"] })
).token;

const [instance] = await handle.db
  .select()
  .from(tenantInstances)
  .where(eq(tenantInstances.instanceCode, "vet-norte"));
const [plan] = await handle.db.select().from(plans).where(eq(plans.code, "VET_STARTER"));
if (!instance || !plan) throw new Error("demo data missing");

/**
 * Corre un escenario y mide la CPU que gastó el proceso (el de la API o este) y cuánto de los
 * núcleos de la máquina estuvo ocupado: con 2 núcleos, el generador de carga, Postgres y la API
 * se los reparten, y el perfil de la API cuenta como suyo el tiempo que pasa desalojada.
 */
async function measured<T>(pid: number | undefined, run: () => Promise<T>) {
  const cpu0 = pid === undefined ? process.cpuUsage() : undefined;
  const proc0 = processCpuMs(pid);
  const machine0 = machineCpuMs();
  const result = await run();
  const machine1 = machineCpuMs();
  const proc1 = processCpuMs(pid);
  const own = cpu0 ? process.cpuUsage(cpu0) : undefined;
  const cpuMs = own
    ? (own.user + own.system) / 1000
    : proc0 !== undefined && proc1 !== undefined
      ? proc1 - proc0
      : Number.NaN;
  const busy =
    machine0 && machine1
      ? (machine1.busy - machine0.busy) / (machine1.total - machine0.total)
      : Number.NaN;
  return { result, cpuMs, busy };
}

// Techo: transacción de una fila con el mismo driver y pool, la misma concurrencia.
await handle.db.execute(
  sql`create table bench_ceiling (id bigserial primary key, payload jsonb not null)`,
);
const ceilingRun = await measured(undefined, () =>
  closedLoop(CONNECTIONS, DURATION_S * 1000, async (i) => {
    await handle.db.transaction(async (tx) => {
      await tx.execute(
        sql`insert into bench_ceiling (payload) values (${JSON.stringify({ i })}::jsonb)`,
      );
    });
  }),
);
const ceiling = ceilingRun.result;

let seq = 0;
const writeRun = await measured(serverProc.pid, () =>
  autocannon({
    url: `${server.url}/api/provisioning/provision`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    requests: [
      {
        setupRequest: (req) => ({
          ...req,
          body: JSON.stringify({
            customerId: instance.customerId,
            productId: instance.productId,
            planId: plan.id,
            instanceCode: `bench-${process.pid}-${seq++}`,
            databaseTier: "standard",
          }),
        }),
      },
    ],
  }),
);
const write = writeRun.result;
// Referencia: el GET autenticado más simple (una fila por id). Es el suelo de HTTP + auth +
// validación + un SELECT en esta máquina; ninguna escritura puede ir más rápido que esto.
const floorRun = await measured(serverProc.pid, () =>
  autocannon({
    url: `${server.url}/api/products/${instance.productId}`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    headers: { authorization: `Bearer ${token}` },
  }),
);
const floor = floorRun.result;
const readRun = await measured(serverProc.pid, () =>
  autocannon({
    url: `${server.url}/api/tenant-instances?limit=20`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    headers: { authorization: `Bearer ${token}` },
  }),
);
const read = readRun.result;

// CPU por petición del proceso de la API (del de este script en el techo) y ocupación de la
// máquina: si la máquina está llena, el ritmo lo pone el reparto de núcleos, no el código.
const rows = [
  [
    "ceiling: 1-row insert tx (no HTTP)",
    ceiling.perSecond,
    ceiling.p50,
    ceiling.p99,
    0,
    ceilingRun,
  ],
  [
    "POST /api/provisioning/provision",
    write.requests.average,
    write.latency.p50,
    write.latency.p99,
    write.non2xx,
    writeRun,
  ],
  [
    "reference: GET /api/products/{id} (HTTP floor)",
    floor.requests.average,
    floor.latency.p50,
    floor.latency.p99,
    floor.non2xx,
    floorRun,
  ],
  [
    "GET /api/tenant-instances?limit=20",
    read.requests.average,
    read.latency.p50,
    read.latency.p99,
    read.non2xx,
    readRun,
  ],
] as const;
console.log(
  `\nbench:admin — ${CONNECTIONS} connections, ${DURATION_S} s each, driver ${handle.driver}`,
);
console.log(
  "| scenario | req/s | p50 ms | p99 ms | non-2xx | ratio to ceiling | process CPU ms/req | machine busy % |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const [name, rps, p50, p99, errors, run] of rows) {
  const count = rps * DURATION_S;
  console.log(
    `| ${name} | ${fmt(rps)} | ${fmt(p50)} | ${fmt(p99)} | ${errors} | ${fmt(rps / ceiling.perSecond, 2)} | ${fmt(run.cpuMs / count, 2)} | ${fmt(run.busy * 100, 0)} |`,
  );
}
console.log(
  `Process CPU: the API server's for HTTP rows, this script's for the ceiling (its driver side only); machine busy: all ${availableParallelism()} cores.`,
);
console.log("Target: write ratio >= 0.50 of the ceiling.");

server.close();
await handle.close();
await nats.stop();
rmSync(natsDir, { recursive: true, force: true });
await database.drop();
process.exit(0);
