import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { type RunningWorker, startWorker } from "./consumer";
import { BACKLOG_READ_TIMEOUT_MS, createWorkerMetrics } from "./metrics";

// /metrics: procesados, reintentos y pendientes del consumer, por worker.
describe("worker metrics", () => {
  let nats: TestNats;
  let bus: Bus;
  let worker: RunningWorker;
  const metrics = createWorkerMetrics();
  let failOnce = true;
  let hold: Promise<void> | undefined;
  let entered: (() => void) | undefined;

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("metrics-test"));
    worker = await startWorker(
      {
        name: "metrics-test-worker",
        domain: "integration",
        filterSubject: "integration.tasks.>",
        schema: z.object({}),
        async handle() {
          if (hold) {
            entered?.();
            await hold;
            return;
          }
          if (failOnce) {
            failOnce = false;
            throw new Error("transient");
          }
        },
      },
      { bus, logger: silentLogger, metrics },
    );
  });
  afterAll(async () => {
    await worker?.stop();
    await bus?.close();
    await nats?.dispose();
  });

  it("exposes processed, retried and pending counts in Prometheus text", async () => {
    const event = {
      id: newId(),
      type: "t",
      occurredAt: new Date().toISOString(),
      correlationId: "m",
      data: {},
    };
    await bus.publishEvent("integration.tasks.test", event);
    const text = await waitFor(async () => {
      const t = await metrics.registry.metrics();
      return t.includes('farutech_worker_messages_processed_total{worker="metrics-test-worker"} 1')
        ? t
        : undefined;
    });
    expect(text).toContain(
      'farutech_worker_messages_retried_total{worker="metrics-test-worker"} 1',
    );
    expect(text).toContain('farutech_worker_consumer_pending{worker="metrics-test-worker"} 0');
    expect(text).toContain('farutech_worker_consumer_ack_pending{worker="metrics-test-worker"} 0');
    expect(text).toContain("farutech_worker_handler_duration_seconds_bucket");
  });

  it("counts a message being handled as ack-pending, not as pending", async () => {
    let finish = () => {};
    hold = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const started = new Promise<void>((resolve) => {
      entered = resolve;
    });
    await bus.publishEvent("integration.tasks.test", {
      id: newId(),
      type: "t",
      occurredAt: new Date().toISOString(),
      correlationId: newId(),
      data: {},
    });
    await started;
    const during = await metrics.registry.metrics();
    expect(during).toContain('farutech_worker_consumer_pending{worker="metrics-test-worker"} 0');
    expect(during).toContain(
      'farutech_worker_consumer_ack_pending{worker="metrics-test-worker"} 1',
    );
    finish();
    hold = undefined;
    await waitFor(async () =>
      (await metrics.registry.metrics()).includes(
        'farutech_worker_consumer_ack_pending{worker="metrics-test-worker"} 0',
      )
        ? true
        : undefined,
    );
  });
});

// Lo que Prometheus necesita de un worker recién desplegado y durante una caída del broker.
describe("worker metrics from the start and without a broker", () => {
  let nats: TestNats;
  let bus: Bus;
  const metrics = createWorkerMetrics();
  const workers: RunningWorker[] = [];
  const names = ["fresh-a-worker", "fresh-b-worker", "fresh-c-worker", "fresh-d-worker"];

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("metrics-outage-test"));
    for (const name of names) {
      workers.push(
        await startWorker(
          {
            name,
            domain: "integration",
            filterSubject: `integration.tasks.${name}`,
            schema: z.object({}),
            async handle() {},
          },
          { bus, logger: silentLogger, metrics },
        ),
      );
    }
  });
  afterAll(async () => {
    for (const w of workers) await w.stop({ drainTimeoutMs: 1_000 });
    await bus?.close();
    await nats?.dispose();
  });

  it("exposes every worker's counters at 0 before its first message", async () => {
    const text = await metrics.registry.metrics();
    for (const name of names) {
      for (const counter of ["processed", "retried", "dead_lettered"]) {
        expect(text).toContain(`farutech_worker_messages_${counter}_total{worker="${name}"} 0`);
      }
    }
  });

  it("answers a scrape within a few seconds while the broker is down, without the stale backlog", async () => {
    expect(await metrics.registry.metrics()).toContain(
      `farutech_worker_consumer_pending{worker="${names[0]}"} 0`,
    );
    await nats.stop();
    const started = Date.now();
    const text = await metrics.registry.metrics();
    // Cada lectura tiene su tope (1 s) y van en paralelo; antes, una tras otra, pasaban de 20 s.
    expect(Date.now() - started).toBeLessThan(4 * BACKLOG_READ_TIMEOUT_MS);
    expect(text).toContain(`farutech_worker_messages_processed_total{worker="${names[0]}"} 0`);
    expect(text).not.toContain("farutech_worker_consumer_pending{");
    expect(text).not.toContain("farutech_worker_consumer_ack_pending{");
  }, 30_000);
});

// La duración del handler es la del handler: una copia del mismo evento que esperó a otra (p. ej.
// colgada) no se registra como un handler lento.
describe("handler duration of a copy that waited for another", () => {
  let nats: TestNats;
  let bus: Bus;
  let worker: RunningWorker;
  const metrics = createWorkerMetrics();
  let calls = 0;
  let entered = () => {};
  let release = () => {};

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("metrics-wait-test"));
    worker = await startWorker(
      {
        name: "wait-test-worker",
        domain: "integration",
        filterSubject: "integration.tasks.wait",
        schema: z.object({}),
        async handle() {
          calls++;
          if (calls === 1) {
            entered();
            await new Promise<void>((resolve) => {
              release = resolve;
            });
            throw new Error("the first copy fails after a long wait");
          }
        },
      },
      { bus, logger: silentLogger, metrics, concurrency: 2 },
    );
  });
  afterAll(async () => {
    await worker?.stop({ drainTimeoutMs: 1_000 });
    await bus?.close();
    await nats?.dispose();
  });

  it("records only the time the handler ran, not the wait behind the earlier copy", async () => {
    const event = {
      id: newId(),
      type: "t",
      occurredAt: new Date().toISOString(),
      correlationId: newId(),
      data: {},
    };
    const started = new Promise<void>((resolve) => {
      entered = resolve;
    });
    await bus.publishEvent("integration.tasks.wait", event);
    await started;
    // La misma entrega otra vez, con otro Nats-Msg-Id (p. ej. un replay o un reenvío a mano).
    await bus.js.publish("integration.tasks.wait", JSON.stringify(event), { msgID: newId() });
    await new Promise((r) => setTimeout(r, 1_500));
    release();
    const text = await waitFor(async () => {
      const t = await metrics.registry.metrics();
      return t.includes('farutech_worker_messages_processed_total{worker="wait-test-worker"} 1')
        ? t
        : undefined;
    });
    const sum = Number(
      /^farutech_worker_handler_duration_seconds_sum\{worker="wait-test-worker",outcome="success"\} (\S+)$/m.exec(
        text,
      )?.[1],
    );
    expect(sum).toBeGreaterThanOrEqual(0);
    expect(sum).toBeLessThan(0.5);
  });
});
