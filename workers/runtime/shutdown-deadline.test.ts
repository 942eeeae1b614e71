import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { advisoryStream, streams } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { silentLogger } from "../../core/logger";
import {
  advisoryOnlyWorker,
  injectMaxDeliveriesAdvisory,
  testEnvelope,
} from "../../test/support/advisories";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { type RunningWorker, startWorker, type WorkerDefinition } from "./consumer";

// El apagado no pasa del plazo de drenado por trabajo que no es el handler: advisories de
// MAX_DELIVERIES, reintentos, marca de procesado y devolución de mensajes al broker.
describe("shutdown within the drain deadline", () => {
  let nats: TestNats;
  let bus: Bus;
  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("shutdown-deadline"));
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
  });

  const envelope = testEnvelope;
  const never = () => new Promise<never>(() => {});
  /** Tiempo que tarda stop(), o undefined si no termina en `capMs`. */
  const timedStop = async (worker: RunningWorker, drainTimeoutMs: number, capMs = 20_000) => {
    const started = performance.now();
    const stopped = await Promise.race([
      worker.stop({ drainTimeoutMs }).then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), capMs)),
    ]);
    return stopped ? performance.now() - started : undefined;
  };
  it("stops within the drain deadline while a dead-letter hook of a MAX_DELIVERIES advisory still waits, and leaves the advisory to another process", async () => {
    const calls: { seq: number; signal: AbortSignal | undefined }[] = [];
    // Como el de provisioning esperando el lease de una ejecución muerta, pero sin fin.
    const hanging = advisoryOnlyWorker("adv-hang", async (info, _data, signal?: AbortSignal) => {
      calls.push({ seq: info.streamSequence, signal });
      return never();
    });
    const first = await startWorker(hanging, { bus, logger: silentLogger, concurrency: 1 });
    const seq = await injectMaxDeliveriesAdvisory(
      bus,
      "adv-hang",
      "billing.tasks.adv-hang.other",
      "corr-adv-hang",
    );
    await waitFor(async () => (calls.length >= 1 ? true : undefined), { timeoutMs: 10_000 });

    const tookMs = await timedStop(first, 1_000);
    expect(tookMs).toBeDefined();
    expect(tookMs).toBeLessThan(1_000 + 4_000);
    // El hook abandonado se entera: una espera que atiende la señal termina ya.
    expect(calls[0]?.signal?.aborted).toBe(true);

    // Sin confirmar: otro proceso lo recibe enseguida (no al vencer el ack wait de 30 s).
    const second = await startWorker(
      advisoryOnlyWorker("adv-hang", async (info) => {
        calls.push({ seq: info.streamSequence, signal: undefined });
        return { operatorsAlerted: true };
      }),
      { bus, logger: silentLogger, concurrency: 1 },
    );
    try {
      await waitFor(async () => (calls.length >= 2 ? true : undefined), { timeoutMs: 10_000 });
      expect(calls.map((c) => c.seq)).toEqual([seq, seq]);
      // Y esta vez queda confirmado: nada pendiente en el consumer.
      const jsm = await bus.jsm();
      await waitFor(async () => {
        const i = await jsm.consumers.info(advisoryStream.name, "adv-hang-advisories");
        return i.num_ack_pending === 0 && i.num_pending === 0 ? i : undefined;
      });
    } finally {
      await second.stop({ drainTimeoutMs: 1_000 });
    }
  }, 60_000);

  it("gives up on a MAX_DELIVERIES advisory whose dead-letter hook hangs past the bookkeeping limit, and retries it", async () => {
    const signals: (AbortSignal | undefined)[] = [];
    const worker = await startWorker(
      advisoryOnlyWorker("adv-bounded", async (_info, _data, signal?: AbortSignal) => {
        signals.push(signal);
        if (signals.length === 1) return never();
        return { operatorsAlerted: true };
      }),
      // El tope de la contabilidad es el del handler cuando es menor (aquí 1 s).
      { bus, logger: silentLogger, concurrency: 1, handlerTimeoutMs: 1_000 },
    );
    try {
      await injectMaxDeliveriesAdvisory(
        bus,
        "adv-bounded",
        "billing.tasks.adv-bounded.other",
        "corr-adv-bounded",
      );
      await waitFor(async () => (signals.length >= 2 ? true : undefined), { timeoutMs: 15_000 });
      expect(signals[0]?.aborted).toBe(true);
      expect(signals[1]?.aborted).toBe(false);
    } finally {
      await worker.stop({ drainTimeoutMs: 1_000 });
    }
  }, 30_000);

  it("does not wait past the drain deadline for retry bookkeeping that hangs, and still counts the failed attempt", async () => {
    const attempts: number[] = [];
    let retries = 0;
    const def = (hangRetry: boolean): WorkerDefinition<{ n: number }> => ({
      name: "retry-hang",
      domain: "billing",
      filterSubject: "billing.tasks.retryhang",
      schema: z.object({ n: z.number() }),
      async handle(ctx) {
        attempts.push(ctx.deliveryCount);
        if (ctx.deliveryCount === 1) throw new Error("transient failure");
      },
      async onRetry() {
        retries++;
        // La base colgada: sin tope propio, solo el de 60 s de la contabilidad.
        if (hangRetry) await never();
      },
    });
    const options = { bus, logger: silentLogger, concurrency: 1, ackWaitMs: 30_000 };
    const first = await startWorker(def(true), options);
    await bus.publishEvent("billing.tasks.retryhang", envelope("corr-retry-hang"));
    await waitFor(async () => (retries >= 1 ? true : undefined), { timeoutMs: 10_000 });

    const tookMs = await timedStop(first, 500);
    expect(tookMs).toBeDefined();
    expect(tookMs).toBeLessThan(500 + 4_000);

    const second = await startWorker(def(false), options);
    try {
      // Con un ack wait de 30 s, solo el nak del intento fallido explica que vuelva tan pronto.
      await waitFor(async () => (attempts.length >= 2 ? true : undefined), { timeoutMs: 10_000 });
      // Cuenta como intento fallido: el siguiente es el 2.
      expect(attempts).toEqual([1, 2]);
    } finally {
      await second.stop({ drainTimeoutMs: 1_000 });
    }
  }, 60_000);

  it("on stop acknowledges a finished message whose processed marker is not stored by the drain deadline, without running it again", async () => {
    const runs: number[] = [];
    let marks = 0;
    const def: WorkerDefinition<{ n: number }> = {
      name: "mark-hang",
      domain: "billing",
      filterSubject: "billing.tasks.markhang",
      schema: z.object({ n: z.number() }),
      async handle(ctx) {
        runs.push(ctx.deliveryCount);
      },
    };
    const options = {
      bus,
      logger: silentLogger,
      concurrency: 1,
      ackWaitMs: 1_000,
      processed: {
        seen: async () => false,
        mark: () => {
          marks++;
          return never();
        },
      },
    };
    const first = await startWorker(def, options);
    await bus.publishEvent("billing.tasks.markhang", envelope("corr-mark-hang"));
    await waitFor(async () => (marks >= 1 ? true : undefined), { timeoutMs: 10_000 });

    const tookMs = await timedStop(first, 500);
    expect(tookMs).toBeDefined();
    expect(tookMs).toBeLessThan(500 + 4_000);
    const second = await startWorker(def, options);
    try {
      // Más que dos ack waits: un mensaje sin confirmar ya habría vuelto.
      await new Promise((r) => setTimeout(r, 2_500));
      const info = await (await bus.jsm()).consumers.info(streams.billing.name, "mark-hang");
      expect(runs).toEqual([1]);
      expect(info.num_ack_pending).toBe(0);
      expect(info.num_pending).toBe(0);
      expect(info.num_redelivered).toBe(0);
    } finally {
      await second.stop({ drainTimeoutMs: 1_000 });
    }
  }, 60_000);

  // Último: para y reinicia el broker de este archivo.
  it("gives up returning a held message within its release budget when the broker stops answering", async () => {
    let started = 0;
    const worker = await startWorker(
      {
        name: "release-hang",
        domain: "billing",
        filterSubject: "billing.tasks.releasehang",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          started++;
          await new Promise((_resolve, reject) =>
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)),
          );
        },
      },
      { bus, logger: silentLogger, concurrency: 1, ackWaitMs: 30_000 },
    );
    await bus.publishEvent("billing.tasks.releasehang", envelope("corr-release-hang"));
    await waitFor(async () => (started >= 1 ? true : undefined), { timeoutMs: 10_000 });
    // El broker deja de responder: la copia del mensaje devuelto no se confirma nunca.
    await nats.stop();
    try {
      const tookMs = await timedStop(worker, 300);
      expect(tookMs).toBeDefined();
      // main.ts deja RELEASE_BUDGET_MS (2 s) para esto; antes eran 3 × 2 s más pausas.
      expect(tookMs).toBeLessThan(300 + 2_000 + 2_000);
    } finally {
      await nats.restart();
    }
  }, 60_000);
});
