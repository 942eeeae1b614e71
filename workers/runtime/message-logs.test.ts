import { headers as natsHeaders } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { EventEnvelope } from "../../contracts/events";
import { advisoryStream, headers, streams, subjects } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { createDeadLetterStore, type DeadLetterStore } from "../../db/dead-letters";
import { advisoryOnlyWorker } from "../../test/support/advisories";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { captureLogs } from "../../test/support/logs";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { type HandlerContext, startWorker, type WorkerDefinition } from "./consumer";

// Cada línea de log de un mensaje dice de qué mensaje es (correlación, evento, intento y los campos
// propios del worker), también fuera del handler: DLQ por advisory, devolución al broker, hook de
// DLQ. Y un mensaje que no es JSON no deja su contenido en el error (DLQ, cabecera, correo).
describe("worker runtime log lines of a message", () => {
  let nats: TestNats;
  let bus: Bus;
  let db: TestDatabase;

  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("message-logs"));
    db = await createPgliteTestDatabase();
  });

  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  const envelope = (correlationId: string, data: Record<string, unknown>): EventEnvelope => ({
    id: newId(),
    type: "test.event",
    occurredAt: new Date().toISOString(),
    correlationId,
    data,
  });

  /** Líneas del worker que no son de un mensaje concreto (arranque, parada, drenado). */
  const workerLevel = new Set([
    "worker started",
    "worker stopped",
    "drain deadline reached; returning unfinished messages to the broker",
  ]);
  const messageLines = (lines: Record<string, unknown>[]) =>
    lines.filter((l) => !workerLevel.has(String(l.msg)));

  /** Bus cuyos avisos publicados (publishEvent) quedan a la vista de la prueba. */
  const recordingBus = () => {
    const events: { subject: string; event: EventEnvelope }[] = [];
    const spy: Bus = {
      ...bus,
      async publishEvent(subject, event) {
        events.push({ subject, event });
        return bus.publishEvent(subject, event);
      },
    };
    return { bus: spy, events };
  };

  it("a message that is not JSON is dead-lettered with a fixed error that does not quote its payload", async () => {
    const { logger, lines } = captureLogs();
    const { bus: spy, events } = recordingBus();
    const store = createDeadLetterStore(db.handle.db);
    const recorded: Parameters<DeadLetterStore["record"]>[0][] = [];
    const worker = await startWorker(
      {
        name: "not-json-log-worker",
        domain: "integration",
        filterSubject: "integration.tasks.notjson",
        schema: z.object({ n: z.number() }),
        async handle() {},
      },
      {
        bus: spy,
        logger,
        deadLetters: {
          async record(entry) {
            recorded.push(entry);
            await store.record(entry);
          },
        },
        concurrency: 1,
      },
    );
    const secret = `sk_live_${newId().replaceAll("-", "")}`;
    try {
      const h = natsHeaders();
      h.set(headers.correlationId, "corr-not-json");
      const ack = await bus.js.publish(
        "integration.tasks.notjson",
        new TextEncoder().encode(`${secret} and the rest of a body that is not JSON`),
        { headers: h },
      );
      const dead = await waitFor(async () => lines.find((l) => l.msg === "message dead-lettered"));
      const alert = await waitFor(async () =>
        events.find((e) => e.subject === subjects.deadLetteredNotification),
      );
      const jsm = await bus.jsm();
      const dlq = await jsm.streams.getMessage(streams.integration.name, {
        last_by_subj: streams.integration.dlqSubject,
      });
      expect(recorded).toHaveLength(1);
      // La DLQ guarda el contenido crudo (es su trabajo); el error no lo repite.
      expect(recorded[0]?.rawPayload).toContain(secret);
      expect(recorded[0]?.error).toBe("message is not valid JSON");
      expect(dlq?.header.get(headers.lastError)).toBe("message is not valid JSON");
      expect((alert.event.data as { error: string }).error).toBe("message is not valid JSON");
      // Ni en el log (tampoco en la pila del error).
      for (const line of lines) expect(JSON.stringify(line)).not.toContain(secret);
      // Sin sobre, la correlación sale de la cabecera del mensaje.
      expect(dead).toMatchObject({
        correlationId: "corr-not-json",
        streamSequence: ack.seq,
        attempt: 1,
        worker: "not-json-log-worker",
      });
    } finally {
      await worker.stop();
    }
  });

  it("an envelope that fails its schema is dead-lettered naming the fields, without their values", async () => {
    const recorded: Parameters<DeadLetterStore["record"]>[0][] = [];
    const { logger } = captureLogs();
    const worker = await startWorker(
      {
        name: "bad-envelope-log-worker",
        domain: "integration",
        filterSubject: "integration.tasks.badenvelope",
        schema: z.object({ n: z.number() }),
        async handle() {},
      },
      {
        bus,
        logger,
        deadLetters: {
          async record(entry) {
            recorded.push(entry);
          },
        },
        concurrency: 1,
      },
    );
    const secret = `sk_live_${newId().replaceAll("-", "")}`;
    try {
      const body = {
        id: secret,
        type: 42,
        occurredAt: new Date().toISOString(),
        correlationId: "corr-bad-envelope",
        data: { n: 1 },
      };
      await bus.js.publish("integration.tasks.badenvelope", JSON.stringify(body));
      const [entry] = await waitFor(async () => (recorded.length > 0 ? recorded : undefined));
      expect(entry?.error).toMatch(/^message is not a valid event envelope: /);
      expect(entry?.error).toContain("id");
      expect(entry?.error).toContain("type");
      expect(entry?.error).not.toContain(secret);
    } finally {
      await worker.stop();
    }
  });

  /** El worker de billing que solo recibe por advisory, con un campo de log propio del mensaje. */
  const advisoryWorker = (
    name: string,
    onDeadLetter: NonNullable<WorkerDefinition<{ n: number }>["onDeadLetter"]>,
  ): WorkerDefinition<{ n: number }> => ({
    ...advisoryOnlyWorker(name, onDeadLetter),
    logFields: (data) => ({ testN: data.n }),
  });

  const injectAdvisory = async (name: string, event: EventEnvelope) => {
    const ack = await bus.publishEvent(`billing.tasks.${name}.dead`, event);
    bus.nc.publish(
      advisoryStream.subjectFor(streams.billing.name, name),
      JSON.stringify({
        stream: streams.billing.name,
        consumer: name,
        stream_seq: ack.seq,
        deliveries: 5,
      }),
    );
    return ack.seq;
  };

  it("dead-lettering from a MAX_DELIVERIES advisory logs every line with the message's correlation, event, attempt and fields", async () => {
    const { logger, lines } = captureLogs();
    const name = "advisory-log-worker";
    const worker = await startWorker(
      advisoryWorker(name, async (_info, _data, _signal, log) => {
        // El hook escribe con el logger que le da el runtime.
        log?.info("dead-letter hook ran");
        return undefined;
      }),
      { bus, logger, deadLetters: createDeadLetterStore(db.handle.db), concurrency: 1 },
    );
    try {
      const event = envelope("corr-advisory-log", { n: 21 });
      const seq = await injectAdvisory(name, event);
      await waitFor(async () =>
        lines.find((l) => l.msg === "message dead-lettered from MAX_DELIVERIES advisory"),
      );
      const mine = messageLines(lines);
      expect(mine.map((l) => l.msg)).toEqual(
        expect.arrayContaining([
          "dead-letter hook ran",
          "operators alerted of a dead-lettered message",
          "message dead-lettered from MAX_DELIVERIES advisory",
        ]),
      );
      for (const line of mine) {
        expect(line).toMatchObject({
          worker: name,
          streamSequence: seq,
          correlationId: "corr-advisory-log",
          eventId: event.id,
          // El intento del mensaje (sus entregas), no el del advisory.
          attempt: 5,
          testN: 21,
        });
      }
    } finally {
      await worker.stop();
    }
  });

  it("a failed MAX_DELIVERIES advisory logs the advisory's own retry apart from the message's attempt", async () => {
    const { logger, lines } = captureLogs();
    const name = "advisory-retry-log-worker";
    const store = createDeadLetterStore(db.handle.db);
    let failures = 1;
    const worker = await startWorker(
      advisoryWorker(name, async () => undefined),
      {
        bus,
        logger,
        deadLetters: {
          async record(entry) {
            if (failures-- > 0) throw new Error("database unreachable (injected)");
            await store.record(entry);
          },
        },
        concurrency: 1,
      },
    );
    try {
      const event = envelope("corr-advisory-retry", { n: 22 });
      const seq = await injectAdvisory(name, event);
      const failed = await waitFor(async () =>
        lines.find((l) => l.msg === "handling MAX_DELIVERIES advisory failed; will retry"),
      );
      expect(failed).toMatchObject({
        worker: name,
        streamSequence: seq,
        correlationId: "corr-advisory-retry",
        eventId: event.id,
        attempt: 5,
        advisoryAttempt: 1,
      });
      // Se reintenta y termina en la DLQ, con el mismo contexto en cada línea.
      await waitFor(
        async () =>
          lines.find((l) => l.msg === "message dead-lettered from MAX_DELIVERIES advisory"),
        { timeoutMs: 10_000 },
      );
      for (const line of messageLines(lines)) {
        expect(line).toMatchObject({ correlationId: "corr-advisory-retry", attempt: 5 });
      }
    } finally {
      await worker.stop();
    }
  });

  it("a message returned to the broker on shutdown logs the failed re-queue with its own context", async () => {
    const { logger, lines } = captureLogs();
    let started = false;
    // La copia devuelta no llega a JetStream: el runtime se rinde y lo dice.
    const brokenJs = new Proxy(bus.js, {
      get(target, prop, receiver) {
        if (prop === "publish") {
          return async (...args: Parameters<typeof bus.js.publish>) => {
            if (args[2]?.msgID?.startsWith("released:")) throw new Error("TIMEOUT (injected)");
            return target.publish(...args);
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const worker = await startWorker(
      {
        name: "release-log-worker",
        domain: "notifications",
        filterSubject: "notifications.tasks.releaselog",
        schema: z.object({ n: z.number() }),
        logFields: (data) => ({ testN: data.n }),
        async handle(ctx: HandlerContext<{ n: number }>) {
          started = true;
          await new Promise((_, reject) =>
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)),
          );
        },
      },
      { bus: { ...bus, js: brokenJs }, logger, concurrency: 1, ackWaitMs: 30_000 },
    );
    const event = envelope("corr-release-log", { n: 23 });
    const { seq } = await bus.publishEvent("notifications.tasks.releaselog", event);
    await waitFor(async () => (started ? true : undefined));
    await worker.stop({ drainTimeoutMs: 100 });
    const released = await waitFor(async () =>
      lines.find((l) => String(l.msg).startsWith("could not re-queue a released message")),
    );
    expect(released).toBeDefined();
    const mine = messageLines(lines);
    expect(mine.length).toBeGreaterThanOrEqual(2);
    for (const line of mine) {
      expect(line).toMatchObject({
        worker: "release-log-worker",
        streamSequence: seq,
        correlationId: "corr-release-log",
        eventId: event.id,
        attempt: 1,
        testN: 23,
      });
    }
  });
});
