import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
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
import { closedLoop, fmt, freshDatabase } from "./support";

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

// Techo: transacción de una fila con el mismo driver y pool, la misma concurrencia.
await handle.db.execute(
  sql`create table bench_ceiling (id bigserial primary key, payload jsonb not null)`,
);
const ceiling = await closedLoop(CONNECTIONS, DURATION_S * 1000, async (i) => {
  await handle.db.transaction(async (tx) => {
    await tx.execute(
      sql`insert into bench_ceiling (payload) values (${JSON.stringify({ i })}::jsonb)`,
    );
  });
});

let seq = 0;
const write = await autocannon({
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
});
// Referencia: el GET autenticado más simple (una fila por id). Es el suelo de HTTP + auth +
// validación + un SELECT en esta máquina; ninguna escritura puede ir más rápido que esto.
const floor = await autocannon({
  url: `${server.url}/api/products/${instance.productId}`,
  connections: CONNECTIONS,
  duration: DURATION_S,
  headers: { authorization: `Bearer ${token}` },
});
const read = await autocannon({
  url: `${server.url}/api/tenant-instances?limit=20`,
  connections: CONNECTIONS,
  duration: DURATION_S,
  headers: { authorization: `Bearer ${token}` },
});

const rows = [
  ["ceiling: 1-row insert tx (no HTTP)", ceiling.perSecond, ceiling.p50, ceiling.p99, 0, 1],
  [
    "POST /api/provisioning/provision",
    write.requests.average,
    write.latency.p50,
    write.latency.p99,
    write.non2xx,
    write.requests.average / ceiling.perSecond,
  ],
  [
    "reference: GET /api/products/{id} (HTTP floor)",
    floor.requests.average,
    floor.latency.p50,
    floor.latency.p99,
    floor.non2xx,
    floor.requests.average / ceiling.perSecond,
  ],
  [
    "GET /api/tenant-instances?limit=20",
    read.requests.average,
    read.latency.p50,
    read.latency.p99,
    read.non2xx,
    read.requests.average / ceiling.perSecond,
  ],
] as const;
console.log(
  `\nbench:admin — ${CONNECTIONS} connections, ${DURATION_S} s each, driver ${handle.driver}`,
);
console.log("| scenario | req/s | p50 ms | p99 ms | non-2xx | ratio to ceiling |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const [name, rps, p50, p99, errors, ratio] of rows) {
  console.log(
    `| ${name} | ${fmt(rps)} | ${fmt(p50)} | ${fmt(p99)} | ${errors} | ${fmt(ratio, 2)} |`,
  );
}
console.log("Target: write ratio >= 0.50 of the ceiling.");

server.close();
await handle.close();
await nats.stop();
rmSync(natsDir, { recursive: true, force: true });
await database.drop();
process.exit(0);
