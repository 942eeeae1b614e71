import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { eq } from "drizzle-orm";
import { Miniflare } from "miniflare";
import { generateSigningKey } from "../core/auth/keys";
import { createTokenSigner } from "../core/auth/tokens";
import { createDb } from "../db/client";
import { tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { bundleEdge, bundleWorker, EDGE_COMPATIBILITY_DATE } from "../test/support/edge";
import { fmt, freshDatabase } from "./support";

// npm run bench:edge — GET /v1/entitlements y el bulk OFREP con la cache caliente, dentro de
// workerd (el bundle de `wrangler deploy`, como en producción), frente a un techo medido en la misma
// corrida y el mismo runtime: un worker hono desnudo que devuelve un cuerpo del mismo tamaño.
const CONNECTIONS = 50;
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 8);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? "warn";
const adminUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

const database = await freshDatabase(adminUrl, `farutech_bench_edge_${process.pid}`);
const handle = await createDb({ url: database.url });
await handle.migrate();
await seedDemo(handle.db);
const [instance] = await handle.db
  .select()
  .from(tenantInstances)
  .where(eq(tenantInstances.instanceCode, "vet-norte"));
if (!instance) throw new Error("demo data missing");
// El proxy wsproxy (el papel de Neon) en su propio proceso: si compartiera el de autocannon, las
// revalidaciones de la cache esperarían a un event loop saturado, algo que en producción no pasa.
const proxyProc = spawn(
  process.execPath,
  [
    "--import",
    "tsx",
    "--input-type=module",
    "-e",
    `const { startWsProxy } = await import(${JSON.stringify(here("../infra/wsproxy/wsproxy.ts"))});
     const p = await startWsProxy(); process.stdout.write(p.url + "\\n");`,
  ],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const proxy = {
  url: await new Promise<string>((resolve, reject) => {
    proxyProc.stdout?.once("data", (d: Buffer) => resolve(d.toString().trim()));
    proxyProc.once("exit", (code) => reject(new Error(`wsproxy exited with ${code}`)));
  }),
  close: async () => {
    proxyProc.kill("SIGTERM");
  },
};
const key = await generateSigningKey("bench-edge");
const signer = await createTokenSigner([key], {
  issuer: "http://bench",
  audience: "farutech-orchestrator",
  accessTokenTtlSeconds: 3600,
});
const token = (
  await signer.sign({
    sub: "bench-app",
    tenant_id: instance.customerId,
    instance_ids: [instance.id],
    roles: ["tenant_app"],
  })
).token;

const edgeBundle = bundleEdge();
const ceilingBundle = bundleWorker(here("./ceiling-worker.ts"), [
  "--name",
  "bench-ceiling",
  "--compatibility-date",
  EDGE_COMPATIBILITY_DATE,
]);
const startWorker = async (scriptPath: string, bindings: Record<string, string>) => {
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: dirname(scriptPath),
    compatibilityDate: EDGE_COMPATIBILITY_DATE,
    bindings,
    host: "127.0.0.1",
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return { url, stop: () => mf.dispose() };
};
const edge = await startWorker(edgeBundle.script, {
  DATABASE_URL: database.url,
  NEON_WSPROXY: proxy.url,
  AUTH_SIGNING_KEYS: JSON.stringify([key]),
  AUTH_ISSUER: "http://bench",
  AUTH_AUDIENCE: "farutech-orchestrator",
  LOG_LEVEL,
  // Para probar otras configuraciones de la cache: BENCH_EDGE_VARS='{"ENTITLEMENTS_FRESH_MS":"500"}'.
  ...(JSON.parse(process.env.BENCH_EDGE_VARS ?? "{}") as Record<string, string>),
});
const edgeUrl = edge.url;
const auth = { authorization: `Bearer ${token}` };
const ofrepBody = JSON.stringify({ context: { targetingKey: instance.id } });
const ofrepHeaders = { ...auth, "content-type": "application/json" };

// Cuerpos reales del edge (y cache caliente) para dar al techo el mismo tamaño.
const entRes = await fetch(`${edgeUrl}/v1/entitlements?instanceId=${instance.id}`, {
  headers: auth,
});
const ofrepRes = await fetch(`${edgeUrl}/ofrep/v1/evaluate/flags`, {
  method: "POST",
  headers: ofrepHeaders,
  body: ofrepBody,
});
if (entRes.status !== 200 || ofrepRes.status !== 200) {
  throw new Error(`edge not answering: ${entRes.status} ${ofrepRes.status}`);
}
const entBody = await entRes.text();
const ofrepText = await ofrepRes.text();

const ceiling = await startWorker(ceilingBundle.script, {
  ENTITLEMENTS_BODY: entBody,
  OFREP_BODY: ofrepText,
});
const ceilingUrl = ceiling.url;

interface Scenario {
  name: string;
  url: string;
  post: boolean;
}
const run = (s: Scenario, duration = DURATION_S, connections = CONNECTIONS) =>
  autocannon({
    url: s.url,
    connections,
    duration,
    method: s.post ? "POST" : "GET",
    headers: s.post ? ofrepHeaders : auth,
    ...(s.post ? { body: ofrepBody } : {}),
  });

const pairs: [Scenario, Scenario][] = [
  [
    {
      name: "ceiling: bare hono GET (same body size)",
      url: `${ceilingUrl}/v1/entitlements`,
      post: false,
    },
    {
      name: "GET /v1/entitlements",
      url: `${edgeUrl}/v1/entitlements?instanceId=${instance.id}`,
      post: false,
    },
  ],
  [
    {
      name: "ceiling: bare hono POST (same body size)",
      url: `${ceilingUrl}/ofrep/v1/evaluate/flags`,
      post: true,
    },
    {
      name: "POST /ofrep/v1/evaluate/flags",
      url: `${edgeUrl}/ofrep/v1/evaluate/flags`,
      post: true,
    },
  ],
];

// Calentamiento (JIT de workerd, conexiones, cache y verificación del token).
for (const [c, e] of pairs) {
  await run(c, 2);
  await run(e, 2);
}

// La máquina es compartida: se alternan rondas techo/edge y se informa la mediana de cada cifra.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};
type Result = Awaited<ReturnType<typeof run>>;
const summary = (rs: Result[]) => ({
  rps: median(rs.map((r) => r.requests.average)),
  p50: median(rs.map((r) => r.latency.p50)),
  p99: median(rs.map((r) => r.latency.p99)),
  failures: rs.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0),
});
// autocannon mide la latencia en milisegundos enteros: 0 significa "menos de 1 ms".
const ms = (v: number) => (v < 1 ? "< 1" : fmt(v, 2));
const rows: string[] = [];
const fixedRows: string[] = [];
const verdicts: string[] = [];
// Saturada, la latencia es sobre todo cola (ley de Little: 50 conexiones / req/s). La latencia de
// servicio se mide aparte con pocas conexiones (autocannon con overallRate envía a ráfagas por
// segundo, así que una "tasa fija" mediría sus propias ráfagas).
const LIGHT_CONNECTIONS = Number(process.env.BENCH_LIGHT_CONNECTIONS ?? 1);
for (const [c, e] of pairs) {
  const cs: Result[] = [];
  const es: Result[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Orden alterno: ni el techo ni el edge corren siempre primero.
    const [first, second] = round % 2 === 0 ? [c, e] : [e, c];
    const a = await run(first);
    const b = await run(second);
    const [cr, er] = first === c ? [a, b] : [b, a];
    cs.push(cr);
    es.push(er);
    ratios.push(er.requests.average / cr.requests.average);
  }
  const cm = summary(cs);
  const em = summary(es);
  const ratio = median(ratios);
  for (const [s, m, rt] of [
    [c, cm, 1],
    [e, em, ratio],
  ] as const) {
    rows.push(
      `| ${s.name} | ${fmt(m.rps)} | ${fmt(m.p50, 2)} | ${fmt(m.p99, 2)} | ${m.failures} | ${fmt(rt, 2)} |`,
    );
  }
  const cf = await run(c, DURATION_S, LIGHT_CONNECTIONS);
  const ef = await run(e, DURATION_S, LIGHT_CONNECTIONS);
  for (const [s, r] of [
    [c, cf],
    [e, ef],
  ] as const) {
    fixedRows.push(
      `| ${s.name} | ${fmt(r.requests.average)} | ${ms(r.latency.p50)} | ${ms(r.latency.p99)} | ${r.non2xx + r.errors + r.timeouts} |`,
    );
  }
  const verdict = (ok: boolean) => (ok ? "MET" : "NOT MET");
  verdicts.push(
    `${e.name}: ratio ${fmt(ratio, 2)} (target >= 0.80) — ${verdict(ratio >= 0.8)}; p99 at ${CONNECTIONS} connections ${fmt(em.p99, 2)} ms (target < 5 ms) — ${verdict(em.p99 < 5)} (ceiling ${fmt(cm.p99, 2)} ms; queueing alone is ${fmt((CONNECTIONS / em.rps) * 1000, 1)} ms on average); p99 with ${LIGHT_CONNECTIONS} connection(s) ${ms(ef.latency.p99)} ms (ceiling ${ms(cf.latency.p99)} ms)`,
  );
}

// Tamaño del bundle que subiría `wrangler deploy` (límite de Cloudflare: comprimido).
const bundleFiles = readdirSync(edgeBundle.dir)
  .filter((f) => f.endsWith(".js") || f.endsWith(".wasm"))
  .map((f) => join(edgeBundle.dir, f));
const raw = bundleFiles.reduce((n, f) => n + statSync(f).size, 0);
const gzip = bundleFiles.reduce((n, f) => n + gzipSync(readFileSync(f)).length, 0);
for (const b of [edgeBundle, ceilingBundle]) b.remove();
const KiB = 1024;
const MiB = 1024 * KiB;

console.log(
  `\nbench:edge — runtime workerd (wrangler-built bundles on Miniflare) for edge and ceiling, ${CONNECTIONS} connections, ${ROUNDS} alternating rounds of ${DURATION_S} s, medians, warm cache, LOG_LEVEL=${LOG_LEVEL}`,
);
console.log(
  `Load average at the end: ${loadavg()
    .map((l) => fmt(l, 2))
    .join(", ")} on ${cpus().length} CPUs`,
);
console.log("| scenario | req/s | p50 ms | p99 ms | non-2xx/errors | ratio to ceiling |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) console.log(r);
console.log(`\nService latency, ${LIGHT_CONNECTIONS} connection(s), ${DURATION_S} s each:`);
console.log("| scenario | req/s | p50 ms | p99 ms | non-2xx/errors |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const r of fixedRows) console.log(r);
for (const v of verdicts) console.log(v);
console.log(
  `Edge bundle (wrangler deploy --dry-run): ${fmt(raw / KiB)} KiB raw, ${fmt(gzip / KiB)} KiB gzip — Cloudflare limit 3 MiB (free) / 10 MiB (paid) compressed: ${gzip < 3 * MiB ? "fits the free plan" : gzip < 10 * MiB ? "needs the paid plan" : "TOO BIG"}`,
);

await ceiling.stop();
await edge.stop();
await proxy.close();
await handle.close();
await database.drop();
process.exit(0);
