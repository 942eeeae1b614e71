import type { Consumer } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  advisoryStream,
  headers,
  streams,
  TASK_MESSAGE_RETENTION_DAYS,
} from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { type Logger, silentLogger } from "../../core/logger";
import { MAX_DELIVER } from "../../core/retry-policy";
import { createDeadLetterStore } from "../../db/dead-letters";
import { createProcessedStore, type ProcessedStore } from "../../db/processed";
import { dlqEntries } from "../../db/schema";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { captureLogs } from "../../test/support/logs";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import {
  ensureConsumer,
  type HandlerContext,
  HandlerTimeoutError,
  listenMaxDeliveries,
  MARK_ATTEMPTS,
  type RunningWorker,
  startWorker,
  WorkerStoppingError,
} from "./consumer";
import { createWorkerMetrics } from "./metrics";

// El runtime de consumo contra un nats-server real: idempotencia y errores permanentes.
describe("worker runtime", () => {
  let nats: TestNats;
  let bus: Bus;
  let db: TestDatabase;
  let worker: RunningWorker;
  const handled: string[] = [];

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("runtime-test"));
    db = await createPgliteTestDatabase();
    worker = await startWorker(
      {
        name: "runtime-test-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.>",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          handled.push(`${ctx.envelope.correlationId}:${ctx.data.n}`);
        },
      },
      { bus, logger: silentLogger, processed: createProcessedStore(db.handle.db), concurrency: 2 },
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  /** Un "worker" que recibe el mensaje y muere sin responder, en cada una de sus 5 entregas. */
  const receiveWithoutAck = async (consumer: Consumer) => {
    for (let delivery = 1; delivery <= 5; delivery++) {
      const msg = await consumer.next({ expires: 5_000 });
      expect(msg?.info.deliveryCount).toBe(delivery);
    }
  };

  const envelope = (correlationId: string, data: Record<string, unknown>) => ({
    id: newId(),
    type: "test.event",
    occurredAt: new Date().toISOString(),
    correlationId,
    data,
  });

  it("bounds how long every task stream keeps its messages", async () => {
    const jsm = await bus.jsm();
    for (const spec of Object.values(streams)) {
      const info = await jsm.streams.info(spec.name);
      expect(info.config.max_age).toBe(TASK_MESSAGE_RETENTION_DAYS * 86_400 * 1_000_000_000);
    }
  });

  it("processes an event once even when it is delivered twice", async () => {
    const event = envelope("corr-a", { n: 1 });
    // Dos publicaciones del mismo evento con Nats-Msg-Id distintos: llegan ambas al consumer.
    await bus.js.publish("notifications.tasks.test", JSON.stringify(event), { msgID: "copy-1" });
    await bus.js.publish("notifications.tasks.test", JSON.stringify(event), { msgID: "copy-2" });
    // Mismo correlation id pero otro evento: se procesa.
    await bus.publishEvent("notifications.tasks.test", envelope("corr-a", { n: 2 }));
    // Las tres entregas terminadas (ninguna pendiente ni sin ack): la copia ya pasó por el worker.
    const jsm = await bus.jsm();
    await waitFor(async () => {
      const i = await jsm.consumers.info(streams.notifications.name, "runtime-test-worker");
      return handled.includes("corr-a:2") && i.num_pending === 0 && i.num_ack_pending === 0
        ? i
        : undefined;
    });
    expect(handled.filter((h) => h === "corr-a:1")).toHaveLength(1);
  });

  it("runs two copies of one event held at once in this process one after the other: the second is skipped", async () => {
    const runs: string[] = [];
    let overlapping = 0;
    let maxOverlap = 0;
    const twice = await startWorker(
      {
        name: "twice-at-once-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.twice",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          overlapping++;
          maxOverlap = Math.max(maxOverlap, overlapping);
          // Lento: la otra copia llega mientras esta corre.
          await new Promise((r) => setTimeout(r, 400));
          runs.push(ctx.envelope.id);
          overlapping--;
        },
      },
      { bus, logger: silentLogger, processed: createProcessedStore(db.handle.db), concurrency: 2 },
    );
    try {
      const event = envelope("corr-twice", { n: 1 });
      await bus.js.publish("notifications.tasks.twice", JSON.stringify(event), {
        msgID: "twice-1",
      });
      await bus.js.publish("notifications.tasks.twice", JSON.stringify(event), {
        msgID: "twice-2",
      });
      const jsm = await bus.jsm();
      await waitFor(async () => {
        const i = await jsm.consumers.info(streams.notifications.name, "twice-at-once-worker");
        return i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.stream_seq > 0
          ? i
          : undefined;
      });
      expect(runs).toEqual([event.id]);
      expect(maxOverlap).toBe(1);
    } finally {
      await twice.stop();
    }
  });

  it("keeps copies of one event in turn even when the first holds its turn longer than the handler timeout", async () => {
    // La primera copia: la consulta de procesado (600 ms) y el handler (800 ms) pasan juntos el
    // tope del handler (1 s), cada uno sin pasarlo. La segunda esperaba con ese tope: fallaba sin
    // haber corrido, soltaba el turno, y una tercera corría a la vez que la primera.
    const done = new Set<string>();
    let checks = 0;
    let overlapping = 0;
    let maxOverlap = 0;
    let runs = 0;
    const failures: string[] = [];
    const { logger, lines } = captureLogs("turn-timeout");
    const worker = await startWorker(
      {
        name: "turn-timeout-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.turn",
        schema: z.object({ n: z.number() }),
        async alreadyProcessed(envelope) {
          checks++;
          if (checks === 1) await new Promise((r) => setTimeout(r, 600));
          return done.has(envelope.id);
        },
        async handle(ctx) {
          overlapping++;
          runs++;
          maxOverlap = Math.max(maxOverlap, overlapping);
          await new Promise((r) => setTimeout(r, 800));
          done.add(ctx.envelope.id);
          overlapping--;
        },
      },
      { bus, logger, concurrency: 3, handlerTimeoutMs: 1_000 },
    );
    try {
      const event = envelope("corr-turn", { n: 1 });
      const copy = (id: string) =>
        bus.js.publish("notifications.tasks.turn", JSON.stringify(event), { msgID: id });
      await copy("turn-1");
      await new Promise((r) => setTimeout(r, 50));
      await copy("turn-2");
      await new Promise((r) => setTimeout(r, 1_150));
      await copy("turn-3");
      const jsm = await bus.jsm();
      await waitFor(async () => {
        const i = await jsm.consumers.info(streams.notifications.name, "turn-timeout-worker");
        return i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.stream_seq >= 3
          ? i
          : undefined;
      });
      for (const line of lines)
        if (line.msg === "message failed; will retry") failures.push(String(line.err));
      expect({ runs, maxOverlap, failures }).toEqual({ runs: 1, maxOverlap: 1, failures: [] });
    } finally {
      await worker.stop();
    }
  });

  it("sends a payload that fails its schema straight to the DLQ, without retries", async () => {
    await bus.publishEvent("notifications.tasks.test", envelope("corr-bad", { n: "not a number" }));
    const jsm = await bus.jsm();
    const info = await waitFor(async () => {
      const i = await jsm.streams.info(streams.notifications.name, {
        subjects_filter: "notifications.dlq",
      });
      return i.state.subjects?.["notifications.dlq"] ? i : undefined;
    });
    expect(info.state.subjects).toEqual({ "notifications.dlq": 1 });
    const dlq = await jsm.streams.getMessage(streams.notifications.name, {
      last_by_subj: "notifications.dlq",
    });
    expect(dlq?.header.get(headers.deliveries)).toBe("1");
    expect(dlq?.header.get(headers.errorKind)).toBe("permanent");
    expect(dlq?.header.get(headers.correlationId)).toBe("corr-bad");
    expect(handled.some((h) => h.startsWith("corr-bad"))).toBe(false);
  });

  it("logs the correlation and event id of a message that fails its schema, on every line", async () => {
    const { logger, lines } = captureLogs();
    const def = {
      name: "poison-log-worker",
      // Fuera de billing.tasks: el consumer "billing.tasks.>" de la prueba del advisory lo vería.
      domain: "provisioning" as const,
      filterSubject: "provisioning.tasks.poisonlog",
      schema: z.object({ n: z.number() }),
      async handle() {},
    };
    const worker = await startWorker(def, {
      bus,
      logger,
      deadLetters: createDeadLetterStore(db.handle.db),
    });
    try {
      const event = envelope("corr-poison-log", { n: "not a number" });
      await bus.publishEvent("provisioning.tasks.poisonlog", event);
      const dead = await waitFor(async () => lines.find((l) => l.msg === "message dead-lettered"));
      expect(dead).toMatchObject({
        correlationId: "corr-poison-log",
        eventId: event.id,
        attempt: 1,
      });
    } finally {
      await worker.stop();
    }
  });

  it("dead-letters a message whose worker died on its last delivery (MAX_DELIVERIES advisory)", async () => {
    const def = {
      name: "advisory-test-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.>",
      schema: z.object({ n: z.number() }),
      async handle() {},
    };
    const options = {
      bus,
      logger: silentLogger,
      deadLetters: createDeadLetterStore(db.handle.db),
    };
    const sub = await listenMaxDeliveries(def, options, silentLogger);
    // Un "worker" que recibe el mensaje y muere sin responder, cinco veces.
    const consumer = await ensureConsumer(bus, def, 1_000);
    await bus.publishEvent("billing.tasks.cycle", envelope("corr-dead", { n: 7 }));
    await receiveWithoutAck(consumer);
    // Otro worker sigue pidiendo: el servidor ve el tope de entregas y emite el advisory.
    expect(await consumer.next({ expires: 3_000 })).toBeNull();
    const rows = await waitFor(async () => {
      const r = await db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.correlationId, "corr-dead"));
      return r.length > 0 ? r : undefined;
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      domain: "billing",
      deliveries: 5,
      subject: "billing.tasks.cycle",
    });
    const jsm = await bus.jsm();
    const info = await jsm.streams.info(streams.billing.name, { subjects_filter: "billing.dlq" });
    expect(info.state.subjects).toEqual({ "billing.dlq": 1 });
    await sub.stop();
  }, 30_000);

  it("dead-letters from the advisory a message that is not JSON instead of retrying the advisory forever", async () => {
    const def = {
      name: "advisory-garbage-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.garbage",
      schema: z.object({ n: z.number() }),
      async handle() {},
    };
    const options = { bus, logger: silentLogger, deadLetters: createDeadLetterStore(db.handle.db) };
    const sub = await listenMaxDeliveries(def, options, silentLogger);
    try {
      const consumer = await ensureConsumer(bus, def, 1_000);
      const raw = `not json ${newId()}`;
      await bus.js.publish("billing.tasks.garbage", new TextEncoder().encode(raw));
      await receiveWithoutAck(consumer);
      expect(await consumer.next({ expires: 3_000 })).toBeNull();
      const rows = await waitFor(async () => {
        const r = await db.handle.db
          .select()
          .from(dlqEntries)
          .where(eq(dlqEntries.rawPayload, raw));
        return r.length > 0 ? r : undefined;
      });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ eventId: null, envelope: null, deliveries: 5 });
    } finally {
      await sub.stop();
    }
  }, 30_000);

  it("keeps every message it holds alive while handlers run longer than the ack wait", async () => {
    const seen: { n: number; delivery: number }[] = [];
    const slow = await startWorker(
      {
        name: "slow-handler-worker",
        domain: "provisioning",
        filterSubject: "provisioning.tasks.slow",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          seen.push({ n: ctx.data.n, delivery: ctx.deliveryCount });
          await new Promise((r) => setTimeout(r, 1_600));
        },
      },
      { bus, logger: silentLogger, concurrency: 1, ackWaitMs: 1_000 },
    );
    try {
      for (const n of [1, 2, 3]) {
        await bus.publishEvent("provisioning.tasks.slow", envelope(`corr-slow-${n}`, { n }));
      }
      const jsm = await bus.jsm();
      const info = await waitFor(
        async () => {
          const i = await jsm.consumers.info(streams.provisioning.name, "slow-handler-worker");
          return i.num_pending === 0 && i.num_ack_pending === 0 && seen.length >= 3 ? i : undefined;
        },
        { timeoutMs: 20_000 },
      );
      // Ningún mensaje esperó hueco sin latido: ni reentregas ni trabajo repetido.
      expect(info.num_redelivered).toBe(0);
      expect(seen).toEqual([
        { n: 1, delivery: 1 },
        { n: 2, delivery: 1 },
        { n: 3, delivery: 1 },
      ]);
    } finally {
      await slow.stop();
    }
  }, 30_000);

  it("does not dead-letter from the advisory a message whose last delivery did the work and lost its ack", async () => {
    const def = {
      name: "advisory-processed-worker",
      domain: "integration" as const,
      filterSubject: "integration.tasks.>",
      schema: z.object({ n: z.number() }),
      async handle() {},
    };
    const processed = createProcessedStore(db.handle.db);
    const options = {
      bus,
      logger: silentLogger,
      deadLetters: createDeadLetterStore(db.handle.db),
      processed,
    };
    const sub = await listenMaxDeliveries(def, options, silentLogger);
    const consumer = await ensureConsumer(bus, def, 1_000);
    const event = envelope("corr-done", { n: 8 });
    await bus.publishEvent("integration.tasks.test", event);
    await receiveWithoutAck(consumer);
    // El quinto intento terminó el trabajo y murió antes del ack.
    await processed.mark(def.name, event.id);
    expect(await consumer.next({ expires: 3_000 })).toBeNull();
    // Control: otro mensaje del mismo consumer, nunca procesado, sí llega a la DLQ; cuando
    // aparece, el advisory del primero ya se atendió (mismo oyente, en orden).
    await bus.publishEvent("integration.tasks.test", envelope("corr-undone", { n: 9 }));
    await receiveWithoutAck(consumer);
    expect(await consumer.next({ expires: 3_000 })).toBeNull();
    await waitFor(async () => {
      const r = await db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.correlationId, "corr-undone"));
      return r.length > 0 ? r : undefined;
    });
    const done = await db.handle.db
      .select()
      .from(dlqEntries)
      .where(eq(dlqEntries.correlationId, "corr-done"));
    expect(done).toEqual([]);
    await sub.stop();
  }, 40_000);

  it("keeps a MAX_DELIVERIES advisory until it is dead-lettered, even with no listener and the database down", async () => {
    const def = {
      name: "advisory-durable-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.durable",
      schema: z.object({ n: z.number() }),
      async handle() {},
    };
    // Caída de la base al registrar la DLQ: el store real, con fallos inyectados mientras `down`.
    const store = createDeadLetterStore(db.handle.db);
    let down = true;
    let failedRecords = 0;
    const options = {
      bus,
      logger: silentLogger,
      deadLetters: {
        async record(entry: Parameters<typeof store.record>[0]) {
          if (down) {
            failedRecords++;
            throw new Error("database unreachable (injected)");
          }
          await store.record(entry);
        },
      },
    };
    // El mensaje agota sus entregas sin que ningún oyente de advisories esté en marcha.
    const consumer = await ensureConsumer(bus, def, 1_000);
    await bus.publishEvent("billing.tasks.durable", envelope("corr-durable", { n: 10 }));
    await receiveWithoutAck(consumer);
    expect(await consumer.next({ expires: 3_000 })).toBeNull();

    const sub = await listenMaxDeliveries(def, options, silentLogger);
    try {
      // El advisory guardado llega aunque el oyente empezó después, y se reintenta.
      await waitFor(async () => (failedRecords >= 2 ? true : undefined), { timeoutMs: 15_000 });
      down = false;
      const rows = await waitFor(async () => {
        const r = await db.handle.db
          .select()
          .from(dlqEntries)
          .where(eq(dlqEntries.correlationId, "corr-durable"));
        return r.length > 0 ? r : undefined;
      });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ deliveries: 5, subject: "billing.tasks.durable" });
      const jsm = await bus.jsm();
      const info = await waitFor(async () => {
        const i = await jsm.consumers.info(advisoryStream.name, `${def.name}-advisories`);
        return i.num_ack_pending === 0 && i.num_pending === 0 ? i : undefined;
      });
      expect(info.delivered.stream_seq).toBeGreaterThan(0);
    } finally {
      await sub.stop();
    }
  }, 40_000);

  it("gives up on a hung handler after its timeout and redelivers the message", async () => {
    const deliveries: number[] = [];
    const hung = await startWorker(
      {
        name: "hung-handler-worker",
        domain: "provisioning",
        filterSubject: "provisioning.tasks.hung",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          deliveries.push(ctx.deliveryCount);
          // Primera entrega: una llamada que nunca responde (y el latido la mantendría viva).
          if (ctx.deliveryCount === 1) await new Promise(() => {});
        },
      },
      { bus, logger: silentLogger, concurrency: 1, ackWaitMs: 1_000, handlerTimeoutMs: 500 },
    );
    try {
      await bus.publishEvent("provisioning.tasks.hung", envelope("corr-hung", { n: 11 }));
      const jsm = await bus.jsm();
      await waitFor(
        async () => {
          const i = await jsm.consumers.info(streams.provisioning.name, "hung-handler-worker");
          return i.num_pending === 0 && i.num_ack_pending === 0 && deliveries.length >= 2
            ? i
            : undefined;
        },
        { timeoutMs: 15_000 },
      );
      expect(deliveries).toEqual([1, 2]);
    } finally {
      await hung.stop();
    }
  }, 30_000);

  it("aborts the signal of a handler it gives up on, so the handler can release what it holds", async () => {
    const signals: AbortSignal[] = [];
    const hung = await startWorker(
      {
        name: "aborted-handler-worker",
        domain: "provisioning",
        filterSubject: "provisioning.tasks.aborted",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          signals.push(ctx.signal);
          if (ctx.deliveryCount === 1) await new Promise(() => {});
        },
      },
      { bus, logger: silentLogger, concurrency: 1, ackWaitMs: 1_000, handlerTimeoutMs: 300 },
    );
    try {
      await bus.publishEvent("provisioning.tasks.aborted", envelope("corr-aborted", { n: 12 }));
      await waitFor(async () => (signals.length >= 2 ? true : undefined), { timeoutMs: 15_000 });
      const [abandoned, finished] = signals;
      expect(abandoned?.aborted).toBe(true);
      expect(abandoned?.reason).toBeInstanceOf(HandlerTimeoutError);
      // Una entrega que termina a tiempo no se aborta.
      expect(finished?.aborted).toBe(false);
    } finally {
      await hung.stop();
    }
  }, 30_000);

  it("on stop returns a message whose handler outlasts the drain deadline, so another instance takes it at once", async () => {
    const seen: { delivery: number; signal: AbortSignal }[] = [];
    const def = {
      name: "drain-deadline-worker",
      domain: "provisioning" as const,
      filterSubject: "provisioning.tasks.drain",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        seen.push({ delivery: ctx.deliveryCount, signal: ctx.signal });
        // Primera vez: un handler que no termina antes del plazo de drenado.
        if (seen.length === 1) await new Promise(() => {});
      },
    };
    const metrics = createWorkerMetrics();
    const options = {
      bus,
      logger: silentLogger,
      metrics,
      deadLetters: createDeadLetterStore(db.handle.db),
      concurrency: 1,
      // Ack wait y tope del handler largos: solo el nak puede explicar una reentrega rápida.
      ackWaitMs: 30_000,
      handlerTimeoutMs: 60_000,
    };
    const first = await startWorker(def, options);
    let second: RunningWorker | undefined;
    try {
      await bus.publishEvent("provisioning.tasks.drain", envelope("corr-drain", { n: 13 }));
      await waitFor(async () => (seen.length >= 1 ? true : undefined), { timeoutMs: 10_000 });

      const stopStarted = performance.now();
      const stopped = await Promise.race([
        first.stop({ drainTimeoutMs: 500 }).then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 5_000)),
      ]);
      const stopMs = performance.now() - stopStarted;
      expect(stopped).toBe(true);
      expect(stopMs).toBeGreaterThanOrEqual(450);
      expect(stopMs).toBeLessThan(3_000);
      expect(seen[0]?.signal.aborted).toBe(true);
      expect(seen[0]?.signal.reason).toBeInstanceOf(WorkerStoppingError);

      // Otra instancia del mismo consumer lo recibe enseguida, no al vencer el ack wait de 30 s.
      const restarted = performance.now();
      second = await startWorker(def, options);
      const jsm = await bus.jsm();
      await waitFor(
        async () => {
          const i = await jsm.consumers.info(streams.provisioning.name, def.name);
          return i.num_pending === 0 && i.num_ack_pending === 0 && seen.length >= 2 ? i : undefined;
        },
        { timeoutMs: 10_000 },
      );
      expect(performance.now() - restarted).toBeLessThan(5_000);
      // El intento interrumpido no gasta intento: la copia devuelta vuelve a ser el intento 1.
      expect(seen.map((s) => s.delivery)).toEqual([1, 1]);
      expect(seen[1]?.signal.aborted).toBe(false);

      // El intento devuelto no es un fallo: ni reintento, ni DLQ, ni duración como "failure".
      const mine = async (metric: Pick<typeof metrics.retried, "get">) =>
        (await metric.get()).values.find((v) => v.labels.worker === def.name)?.value ?? 0;
      expect(await mine(metrics.retried)).toBe(0);
      expect(await mine(metrics.deadLettered)).toBe(0);
      expect(await mine(metrics.processed)).toBe(1);
      const failures = (await metrics.duration.get()).values.find(
        (v) =>
          v.metricName === "farutech_worker_handler_duration_seconds_count" &&
          v.labels.worker === def.name &&
          v.labels.outcome === "failure",
      );
      expect(failures).toBeUndefined();
      const dead = await db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.correlationId, "corr-drain"));
      expect(dead).toEqual([]);
    } finally {
      await second?.stop();
    }
  }, 30_000);

  /**
   * Un worker cuyo mensaje falla su esquema (va derecho a la DLQ) con la copia consultable de la
   * DLQ dada; espera a que empiece a registrarla y devuelve el worker en marcha.
   */
  const deadLetteringWith = async (
    name: string,
    record: () => Promise<void>,
    logger: Logger = silentLogger,
  ) => {
    let recording = false;
    const w = await startWorker(
      {
        name,
        domain: "provisioning" as const,
        filterSubject: `provisioning.tasks.${name}`,
        schema: z.object({ n: z.number() }),
        async handle() {},
      },
      {
        bus,
        logger,
        deadLetters: {
          record() {
            recording = true;
            return record();
          },
        },
        concurrency: 1,
        ackWaitMs: 30_000,
      },
    );
    await bus.publishEvent(`provisioning.tasks.${name}`, envelope(`corr-${name}`, { n: "x" }));
    await waitFor(async () => (recording ? true : undefined), { timeoutMs: 10_000 });
    return w;
  };

  it("stops retrying a failing dead-letter at the drain deadline instead of holding the shutdown", async () => {
    const recordCalls: number[] = [];
    const { logger, lines } = captureLogs();
    // La base caída: el runtime reintenta 3 veces, con 0,5 s y 1 s entre ellas, si nadie lo para.
    const w = await deadLetteringWith(
      "dlq-at-deadline",
      async () => {
        recordCalls.push(Date.now());
        throw new Error("database down");
      },
      logger,
    );
    const stopAt = Date.now();
    await w.stop({ drainTimeoutMs: 50 });
    // Se espera a que el bucle de la DLQ termine (su última línea de log), no un tiempo fijo: con
    // la máquina cargada, un reintento tardío podía llegar después de la espera y no verse.
    const end = await waitFor(
      async () =>
        lines.find(
          (l) =>
            l.msg ===
              "drain deadline reached while dead-lettering; the message returns after its ack wait" ||
            l.msg === "dead-lettering failed; message left unacknowledged",
        ),
      { timeoutMs: 10_000 },
    );
    expect(end.msg).toBe(
      "drain deadline reached while dead-lettering; the message returns after its ack wait",
    );
    // Vencido el plazo no hay otro intento: ni al acabar la espera entre intentos ni después.
    expect(recordCalls.length).toBeGreaterThan(0);
    expect(recordCalls.filter((at) => at >= stopAt + 50)).toEqual([]);
  }, 20_000);

  it("does not wait past the drain deadline for a dead-letter that hangs", async () => {
    // La base no responde nunca (sin timeout propio): la copia de la DLQ queda colgada.
    const w = await deadLetteringWith("dlq-hang", () => new Promise<void>(() => {}));
    const stopped = await Promise.race([
      w.stop({ drainTimeoutMs: 50 }).then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 5_000)),
    ]);
    expect(stopped).toBe(true);
  }, 20_000);

  /** Arranca el worker, espera a que tome el mensaje y lo para sin dejarle terminar. */
  const restartWhileHeld = async (
    def: Parameters<typeof startWorker<{ n: number }>>[0],
    calls: () => number,
  ) => {
    const before = calls();
    const w = await startWorker(def, {
      bus,
      logger: silentLogger,
      deadLetters: createDeadLetterStore(db.handle.db),
      concurrency: 1,
      ackWaitMs: 30_000,
    });
    await waitFor(async () => (calls() > before ? true : undefined), { timeoutMs: 10_000 });
    await w.stop({ drainTimeoutMs: 200 });
  };

  const deadLettersOf = (correlationId: string) =>
    db.handle.db.select().from(dlqEntries).where(eq(dlqEntries.correlationId, correlationId));

  it("a message returned on shutdown keeps its delivery budget: six rolling restarts while it is held don't dead-letter it", async () => {
    const attempts: number[] = [];
    let restarts = 6;
    const def = {
      name: "rolling-restart-worker",
      domain: "provisioning" as const,
      filterSubject: "provisioning.tasks.rolling",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        attempts.push(ctx.deliveryCount);
        // Mientras dura el despliegue, cada proceso se apaga antes de que el paso termine.
        if (restarts > 0)
          await new Promise((_, reject) =>
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)),
          );
      },
    };
    await bus.publishEvent("provisioning.tasks.rolling", envelope("corr-rolling", { n: 15 }));
    for (; restarts > 0; restarts--) await restartWhileHeld(def, () => attempts.length);
    const last = await startWorker(def, {
      bus,
      logger: silentLogger,
      deadLetters: createDeadLetterStore(db.handle.db),
      processed: createProcessedStore(db.handle.db),
    });
    try {
      await waitFor(async () => (attempts.length >= 7 ? true : undefined), { timeoutMs: 10_000 });
      const jsm = await bus.jsm();
      await waitFor(async () => {
        const i = await jsm.consumers.info(streams.provisioning.name, def.name);
        return i.num_pending === 0 && i.num_ack_pending === 0 ? i : undefined;
      });
      // Ningún apagado contó como intento, y nada acabó en la DLQ (ni por el advisory).
      expect(attempts).toEqual([1, 1, 1, 1, 1, 1, 1]);
      await new Promise((r) => setTimeout(r, 500));
      expect(await deadLettersOf("corr-rolling")).toEqual([]);
    } finally {
      await last.stop();
    }
  }, 60_000);

  it("a message returned on shutdown keeps the attempts that did fail: the retry budget continues, then the DLQ", async () => {
    const attempts: number[] = [];
    let hold = false;
    const def = {
      name: "failed-then-restart-worker",
      domain: "provisioning" as const,
      filterSubject: "provisioning.tasks.failrestart",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        attempts.push(ctx.deliveryCount);
        if (attempts.length === 3) {
          hold = true;
          await new Promise((_, reject) =>
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)),
          );
        }
        throw new Error("external system down");
      },
    };
    const options = {
      bus,
      logger: silentLogger,
      deadLetters: createDeadLetterStore(db.handle.db),
      concurrency: 1,
      ackWaitMs: 30_000,
    };
    await bus.publishEvent(
      "provisioning.tasks.failrestart",
      envelope("corr-fail-restart", { n: 16 }),
    );
    const first = await startWorker(def, options);
    await waitFor(async () => (hold ? true : undefined), { timeoutMs: 10_000 });
    await first.stop({ drainTimeoutMs: 200 });
    const second = await startWorker(def, options);
    try {
      const [entry] = await waitFor(
        async () => {
          const rows = await deadLettersOf("corr-fail-restart");
          return rows.length > 0 ? rows : undefined;
        },
        { timeoutMs: 20_000 },
      );
      // Dos fallos, el intento 3 interrumpido por el apagado y repetido: la copia sigue en el 3,
      // no vuelve al 1. Lo normal es [1, 2, 3, 3, 4, 5]. nats-server 2.9 con la CPU saturada a
      // veces informa una reentrega con un número de entrega menor, o gasta una entrega que el
      // cliente no llegó a ver (latidos perdidos) y agota el presupuesto antes: sale [1, 2, 3, 3,
      // 4, 3] y la DLQ llega por el advisory. Lo que no puede pasar es volver a empezar: con el
      // presupuesto reiniciado, tras la copia habría intentos por debajo de ella y hasta 5 más.
      const [, , interrupted = 0, copy = 0, ...after] = attempts;
      expect(interrupted).toBeGreaterThan(1);
      expect(copy).toBe(interrupted);
      // Con [] el every() pasaría: al menos un intento tras la copia, y no más de los que quedan
      // (más uno repetido por el servidor).
      expect(after.length).toBeGreaterThanOrEqual(1);
      expect(after.length).toBeLessThanOrEqual(MAX_DELIVER - copy + 1);
      expect(after.every((a) => a >= copy && a <= MAX_DELIVER)).toBe(true);
      expect(entry?.deliveries).toBeGreaterThanOrEqual(copy);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("a released message whose copy was stored but not confirmed runs once more, not twice at once", async () => {
    const runs: { worker: string; attempt: number }[] = [];
    // Bus cuya publicación de la copia llega a JetStream pero se informa como timeout.
    const lossyJs = new Proxy(bus.js, {
      get(target, prop, receiver) {
        if (prop === "publish") {
          return async (...args: Parameters<typeof bus.js.publish>) => {
            const ack = await target.publish(...args);
            if (args[2]?.msgID?.startsWith("released:")) throw new Error("TIMEOUT (injected)");
            return ack;
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const def = (worker: string) => ({
      name: "release-unconfirmed-worker",
      domain: "notifications" as const,
      filterSubject: "notifications.tasks.unconfirmed",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        runs.push({ worker, attempt: ctx.deliveryCount });
        if (runs.length === 1) {
          await new Promise((_, reject) =>
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)),
          );
        }
        await new Promise((r) => setTimeout(r, 300)); // p. ej. la ida y vuelta al SMTP
      },
    });
    const processed = createProcessedStore(db.handle.db);
    const ackWaitMs = 2_000;
    const first = await startWorker(def("A"), {
      bus: { ...bus, js: lossyJs },
      logger: silentLogger,
      processed,
      concurrency: 1,
      ackWaitMs,
    });
    await bus.publishEvent(
      "notifications.tasks.unconfirmed",
      envelope("corr-unconfirmed", { n: 17 }),
    );
    await waitFor(async () => (runs.length >= 1 ? true : undefined), { timeoutMs: 10_000 });
    await first.stop({ drainTimeoutMs: 200 });
    const second = await startWorker(def("B"), {
      bus,
      logger: silentLogger,
      processed,
      concurrency: 2,
      ackWaitMs,
    });
    try {
      const jsm = await bus.jsm();
      // La copia se procesa; el original (sin nak) vuelve al vencer su ack wait y se salta.
      await waitFor(
        async () => {
          const i = await jsm.consumers.info(
            streams.notifications.name,
            "release-unconfirmed-worker",
          );
          return i.num_pending === 0 && i.num_ack_pending === 0 && runs.length >= 2 ? i : undefined;
        },
        { timeoutMs: 15_000 },
      );
      await new Promise((r) => setTimeout(r, 500));
      expect(runs.filter((r) => r.worker === "B")).toEqual([{ worker: "B", attempt: 1 }]);
    } finally {
      await second.stop();
    }
  }, 40_000);

  it("never runs a shutdown copy past the delivery budget: a worker that dies on the last attempt means the DLQ", async () => {
    const attempts: number[] = [];
    const def = {
      name: "copy-budget-worker",
      domain: "provisioning" as const,
      filterSubject: "provisioning.tasks.copybudget",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        attempts.push(ctx.deliveryCount);
      },
    };
    const ackWaitMs = 1_000;
    // La copia que deja un apagado en el intento 5 (cuatro fallidos antes), como releaseToBroker.
    const event = envelope("corr-copy-budget", { n: 18 });
    const h = natsHeaders();
    h.set(headers.priorAttempts, "4");
    h.set(headers.correlationId, "corr-copy-budget");
    await bus.js.publish("provisioning.tasks.copybudget", JSON.stringify(event), { headers: h });
    // El proceso que la toma muere sin responder (SIGKILL): JetStream la reentregará.
    const consumer = await ensureConsumer(bus, def, ackWaitMs);
    const copy = await consumer.next({ expires: 5_000 });
    expect(copy?.info.deliveryCount).toBe(1);
    const worker = await startWorker(def, {
      bus,
      logger: silentLogger,
      deadLetters: createDeadLetterStore(db.handle.db),
      ackWaitMs,
    });
    try {
      const [entry] = await waitFor(
        async () => {
          const rows = await deadLettersOf("corr-copy-budget");
          return rows.length > 0 ? rows : undefined;
        },
        { timeoutMs: 15_000 },
      );
      // La entrega de más (la sexta) no ejecuta nada: va a la DLQ con los 5 intentos que corrieron.
      expect(entry?.deliveries).toBe(5);
      expect(entry?.error).toContain("last delivery");
      expect(attempts).toEqual([]);
    } finally {
      await worker.stop();
    }
  }, 30_000);

  it("gives up on a hung processed-marker lookup after the handler timeout and retries the message", async () => {
    const runs: number[] = [];
    let lookups = 0;
    const real = createProcessedStore(db.handle.db);
    const def = {
      name: "hung-lookup-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.hunglookup",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        runs.push(ctx.deliveryCount);
      },
    };
    const worker = await startWorker(def, {
      bus,
      logger: silentLogger,
      processed: {
        ...real,
        // La primera consulta se cuelga como un socket a la base que no responde.
        seen: (consumer, key) =>
          ++lookups === 1 ? new Promise<boolean>(() => {}) : real.seen(consumer, key),
      },
      ackWaitMs: 1_000,
      handlerTimeoutMs: 1_000,
    });
    try {
      await bus.publishEvent("billing.tasks.hunglookup", envelope("corr-hung-lookup", { n: 19 }));
      await waitFor(async () => (runs.length >= 1 ? true : undefined), { timeoutMs: 10_000 });
      expect(runs).toEqual([2]);
    } finally {
      await worker.stop();
    }
  }, 30_000);

  it("does not start consuming when its MAX_DELIVERIES listener cannot start", async () => {
    const runs: number[] = [];
    // El listener del advisory no consigue su consumer: el arranque falla entero.
    const consumers = new Proxy(bus.js.consumers, {
      get(target, prop, receiver) {
        if (prop === "get") {
          return async (stream: string, name?: string) => {
            if (stream === advisoryStream.name) throw new Error("advisory consumer unavailable");
            return target.get(stream, name);
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const js = new Proxy(bus.js, {
      get(target, prop, receiver) {
        if (prop === "consumers") return consumers;
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const def = {
      name: "no-listener-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.nolistener",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        runs.push(ctx.deliveryCount);
      },
    };
    await bus.publishEvent("billing.tasks.nolistener", envelope("corr-no-listener", { n: 20 }));
    await expect(startWorker(def, { bus: { ...bus, js }, logger: silentLogger })).rejects.toThrow(
      "advisory consumer unavailable",
    );
    await new Promise((r) => setTimeout(r, 2_500));
    expect(runs).toEqual([]);
    const info = await (await bus.jsm()).consumers.info(streams.billing.name, def.name);
    expect(info.delivered.stream_seq).toBe(0);
  }, 20_000);

  /** Registro de procesados cuyas primeras `failures` marcas fallan como una base caída. */
  const flakyProcessed = (failures: number) => {
    const real = createProcessedStore(db.handle.db);
    let left = failures;
    const store: ProcessedStore & { markCalls: number } = {
      markCalls: 0,
      seen: real.seen,
      async mark(consumer, key) {
        store.markCalls++;
        if (left-- > 0) throw new Error("Connection terminated unexpectedly");
        await real.mark(consumer, key);
      },
    };
    return store;
  };

  const settledConsumer = async (consumer: string) => {
    const jsm = await bus.jsm();
    return waitFor(
      async () => {
        const i = await jsm.consumers.info(streams.billing.name, consumer);
        return i.num_pending === 0 && i.num_ack_pending === 0 ? i : undefined;
      },
      { timeoutMs: 10_000 },
    );
  };

  const metricOf = async (
    metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> },
    worker: string,
  ) => (await metric.get()).values.find((v) => v.labels.worker === worker)?.value ?? 0;

  it("acknowledges a message whose handler succeeded even if storing its processed marker fails once, without running it again", async () => {
    const runs: number[] = [];
    const metrics = createWorkerMetrics();
    const processed = flakyProcessed(1);
    const def = {
      name: "mark-once-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.markonce",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        runs.push(ctx.deliveryCount); // p. ej. un correo ya enviado
      },
    };
    const worker = await startWorker(def, {
      bus,
      logger: silentLogger,
      processed,
      metrics,
      deadLetters: createDeadLetterStore(db.handle.db),
      ackWaitMs: 1_000,
    });
    try {
      const event = envelope("corr-mark-once", { n: 21 });
      await bus.publishEvent("billing.tasks.markonce", event);
      await waitFor(async () => (runs.length >= 1 ? true : undefined), { timeoutMs: 10_000 });
      const info = await settledConsumer(def.name);
      // Un segundo intento de guardar la marca la deja guardada: una reentrega tardía la vería.
      await waitFor(async () => ((await processed.seen(def.name, event.id)) ? true : undefined));
      // Más que el ack wait y que la espera del primer reintento: una reentrega ya habría llegado.
      await new Promise((r) => setTimeout(r, 1_500));
      expect(runs).toEqual([1]);
      expect(info.num_redelivered).toBe(0);
      expect(processed.markCalls).toBe(2);
      expect(await metricOf(metrics.retried, def.name)).toBe(0);
      expect(await metricOf(metrics.processed, def.name)).toBe(1);
    } finally {
      await worker.stop();
    }
  }, 30_000);

  it("acknowledges anyway, with an error operators can act on, when the processed marker cannot be stored at all", async () => {
    const runs: number[] = [];
    const { logger, lines } = captureLogs();
    const metrics = createWorkerMetrics();
    const processed = flakyProcessed(Number.POSITIVE_INFINITY);
    const def = {
      name: "mark-never-worker",
      domain: "billing" as const,
      filterSubject: "billing.tasks.marknever",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        runs.push(ctx.deliveryCount);
      },
    };
    const worker = await startWorker(def, {
      bus,
      logger,
      processed,
      metrics,
      deadLetters: createDeadLetterStore(db.handle.db),
      ackWaitMs: 1_000,
    });
    try {
      await bus.publishEvent("billing.tasks.marknever", envelope("corr-mark-never", { n: 22 }));
      await waitFor(async () => (runs.length >= 1 ? true : undefined), { timeoutMs: 10_000 });
      const info = await settledConsumer(def.name);
      await new Promise((r) => setTimeout(r, 1_500));
      expect(runs).toEqual([1]);
      expect(info.num_redelivered).toBe(0);
      expect(processed.markCalls).toBe(MARK_ATTEMPTS);
      const alert = lines.find((l) =>
        String(l.msg).startsWith("processed marker could not be stored; acknowledging anyway"),
      );
      expect(alert).toMatchObject({
        level: "error",
        worker: def.name,
        correlationId: "corr-mark-never",
        attempts: MARK_ATTEMPTS,
      });
      expect(JSON.stringify(alert?.err)).toContain("Connection terminated unexpectedly");
      expect(await metricOf(metrics.retried, def.name)).toBe(0);
      expect(await metricOf(metrics.deadLettered, def.name)).toBe(0);
      expect(await metricOf(metrics.processed, def.name)).toBe(1);
    } finally {
      await worker.stop();
    }
  }, 30_000);

  it("on stop waits for a handler that finishes within the drain deadline and acknowledges it", async () => {
    const signals: AbortSignal[] = [];
    const def = {
      name: "drain-finish-worker",
      domain: "provisioning" as const,
      filterSubject: "provisioning.tasks.drainok",
      schema: z.object({ n: z.number() }),
      async handle(ctx: HandlerContext<{ n: number }>) {
        signals.push(ctx.signal);
        await new Promise((r) => setTimeout(r, 400));
      },
    };
    const worker = await startWorker(def, { bus, logger: silentLogger, concurrency: 1 });
    await bus.publishEvent("provisioning.tasks.drainok", envelope("corr-drain-ok", { n: 14 }));
    await waitFor(async () => (signals.length >= 1 ? true : undefined), { timeoutMs: 10_000 });
    await worker.stop({ drainTimeoutMs: 5_000 });
    expect(signals[0]?.aborted).toBe(false);
    // El ack sale sin esperar respuesta: con la máquina cargada el servidor lo registra un poco
    // después. Sin ack, seguiría pendiente hasta su ack wait (30 s) y esto vencería.
    const jsm = await bus.jsm();
    const info = await waitFor(
      async () => {
        const i = await jsm.consumers.info(streams.provisioning.name, def.name);
        return i.num_ack_pending === 0 && i.num_pending === 0 ? i : undefined;
      },
      { timeoutMs: 5_000 },
    );
    expect(info.num_redelivered).toBe(0);
  }, 30_000);
});
