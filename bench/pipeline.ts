import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { inArray } from "drizzle-orm";
import { connectBus, ensureStreams } from "../core/bus";
import { createBusProvider } from "../core/bus-provider";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import { createDb } from "../db/client";
import { provisioningTasks } from "../db/schema";
import { seedDemo } from "../db/seed";
import { provisionRequestSchema } from "../functions/routes/provisioning/schema";
import { provisionTenant } from "../functions/services/provisioning";
import { startLocalNats } from "../infra/nats/local-server";
import { demoProvisionBody } from "../test/support/demo";
import { startWorkers } from "../workers/runtime";
import { fmt, freshDatabase, inParallel, percentile } from "./support";

// npm run bench:pipeline — tareas de provisioning de punta a punta (publicación → succeeded) frente
// al techo del mismo servidor: publicar, consumir y confirmar mensajes del mismo tamaño en JetStream.
const TASKS = Number(process.env.BENCH_TASKS ?? 2000);
// Productores concurrentes, los mismos en el techo y en el pipeline (como peticiones simultáneas a la API).
const PRODUCERS = Number(process.env.BENCH_PRODUCERS ?? 16);
const adminUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = await freshDatabase(adminUrl, `farutech_bench_pipeline_${process.pid}`);
const natsDir = mkdtempSync(join(tmpdir(), "farutech-bench-nats-"));
const nats = await startLocalNats({ dataDir: natsDir });
const handle = await createDb({ url: database.url, max: Number(process.env.BENCH_POOL ?? 10) });
await handle.migrate();
await seedDemo(handle.db);

// Techo: JetStream puro con un mensaje del mismo tamaño que un evento de provisioning.
const bus = await connectBus({ servers: nats.url, name: "bench-ceiling" });
await ensureStreams(bus);
const jsm = await bus.jsm();
await jsm.streams.add({ name: "BENCH", subjects: ["bench.>"] });
await jsm.consumers.add("BENCH", { durable_name: "bench", ack_policy: AckPolicy.Explicit });
const sample = JSON.stringify({
  id: newId(),
  type: "provisioning.requested",
  occurredAt: new Date().toISOString(),
  correlationId: newId(),
  data: { taskId: newId(), tenantInstanceId: newId(), kind: "provision" },
});
const sent = new Map<number, number>();
const ceilingLatencies: number[] = [];
const consumer = await bus.js.consumers.get("BENCH", "bench");
const messages = await consumer.consume({ max_messages: 256 });
const ceilingStart = performance.now();
const consumed = (async () => {
  let n = 0;
  for await (const m of messages) {
    m.ack();
    ceilingLatencies.push(performance.now() - (sent.get(Number(m.headers?.get("i"))) ?? 0));
    if (++n >= TASKS) break;
  }
})();
await inParallel(PRODUCERS, TASKS, async (i) => {
  const h = headers();
  h.set("i", String(i));
  sent.set(i, performance.now());
  await bus.js.publish(`bench.${i % 8}`, sample, { headers: h });
});
await consumed;
const ceilingSeconds = (performance.now() - ceilingStart) / 1000;
await messages.close();
await bus.close();

// Pipeline real: función (transacción + outbox + publicación) → worker (pasos) → succeeded.
const env = {
  DATABASE_URL: database.url,
  NATS_URL: nats.url,
  LOG_LEVEL: "silent",
  WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY ?? "16",
};
const workers = await startWorkers(env, { db: handle, logger: silentLogger });
const provider = createBusProvider({ servers: nats.url, name: "bench-functions" }, silentLogger);
const ctx = {
  db: handle.db,
  bus: provider,
  logger: silentLogger,
  actor: "bench",
  correlationId: "bench",
  baseDomain: "bench",
};
const taskIds: string[] = [];
const pipelineStart = performance.now();
const pipelineCpu = process.cpuUsage();
const base = await demoProvisionBody(handle.db, "pipe");
await inParallel(PRODUCERS, TASKS, async (i) => {
  const body = provisionRequestSchema.parse({ ...base, instanceCode: `pipe-${i}` });
  taskIds.push((await provisionTenant(ctx, body)).response.taskId);
});
for (;;) {
  const rows = await handle.db
    .select({
      status: provisioningTasks.status,
      createdAt: provisioningTasks.createdAt,
      finishedAt: provisioningTasks.finishedAt,
    })
    .from(provisioningTasks)
    .where(inArray(provisioningTasks.id, taskIds));
  if (rows.every((r) => r.status === "succeeded" || r.status === "dead_lettered")) {
    const pipelineSeconds = (performance.now() - pipelineStart) / 1000;
    const cpu = process.cpuUsage(pipelineCpu);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const latencies = rows
      .map((r) => (r.finishedAt ? r.finishedAt.getTime() - r.createdAt.getTime() : 0))
      .sort((a, b) => a - b);
    ceilingLatencies.sort((a, b) => a - b);
    const pipelineRate = TASKS / pipelineSeconds;
    const ceilingRate = TASKS / ceilingSeconds;
    console.log(
      `\nbench:pipeline — ${TASKS} tasks, ${PRODUCERS} producers, no-op external step, worker concurrency ${env.WORKER_CONCURRENCY}`,
    );
    console.log("| scenario | tasks/s | p50 ms | p99 ms | ratio to ceiling |");
    console.log("| --- | ---: | ---: | ---: | ---: |");
    console.log(
      `| ceiling: JetStream publish+consume+ack | ${fmt(ceilingRate)} | ${fmt(percentile(ceilingLatencies, 50))} | ${fmt(percentile(ceilingLatencies, 99))} | 1.00 |`,
    );
    console.log(
      `| provision → succeeded | ${fmt(pipelineRate)} | ${fmt(percentile(latencies, 50))} | ${fmt(percentile(latencies, 99))} | ${fmt(pipelineRate / ceilingRate, 2)} |`,
    );
    console.log(
      `dead-lettered: ${rows.filter((r) => r.status === "dead_lettered").length}; worker RSS ${fmt(process.memoryUsage().rss / 1024 / 1024)} MiB (functions and workers share this process)`,
    );
    // Con un solo proceso Node, su CPU por tarea acota el ritmo: 1000 / (ms por tarea) tareas/s.
    console.log(
      `Node process CPU: ${fmt((cpuSeconds * 1000) / TASKS, 2)} ms per task (${fmt((cpu.system / (cpu.user + cpu.system)) * 100, 0)} % in the kernel), ${fmt((cpuSeconds / pipelineSeconds) * 100, 0)} % of one core over the run`,
    );
    console.log("Target: ratio >= 0.50 of the ceiling.");
    break;
  }
  await new Promise((r) => setTimeout(r, 200));
}
await workers.stop();
await provider.close();
await handle.close();
await nats.stop();
rmSync(natsDir, { recursive: true, force: true });
await database.drop();
process.exit(0);
