import { headers as natsHeaders } from "@nats-io/nats-core";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { advisoryStream, streams } from "../../contracts/streams";
import { type Bus, ensureStreams } from "../../core/bus";
import { silentLogger } from "../../core/logger";
import { createDeadLetterStore } from "../../db/dead-letters";
import { dlqEntries } from "../../db/schema";
import {
  advisoryOnlyWorker,
  injectMaxDeliveriesAdvisory,
  testEnvelope,
} from "../../test/support/advisories";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { captureLogs } from "../../test/support/logs";
import { startBrokerForTest, type TestNats, waitFor } from "../../test/support/stack";
import { startWorker, type WorkerDefinition } from "./consumer";
import { PermanentError } from "./errors";

// Casos en que un mensaje muerto no llegaba a la DLQ o quedaba retenido para siempre: stream
// recreado (secuencias repetidas), contenido que Postgres o una cabecera NATS no aceptan, y una
// base que deja de responder después del handler.
describe("dead-lettering and bookkeeping that cannot get stuck", () => {
  let nats: TestNats;
  let bus: Bus;
  let db: TestDatabase;
  beforeAll(async () => {
    ({ nats, bus } = await startBrokerForTest("dlq-robustness"));
    db = await createPostgresTestDatabase();
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
    await db?.drop();
  });

  const envelope = testEnvelope;
  const failing = (name: string, subject: string): WorkerDefinition<{ n: number }> => ({
    name,
    domain: "billing",
    filterSubject: subject,
    schema: z.object({ n: z.number() }),
    async handle() {
      throw new PermanentError("boom");
    },
  });
  const entriesOf = (correlationId: string) =>
    db.handle.db.select().from(dlqEntries).where(eq(dlqEntries.correlationId, correlationId));
  const never = () => new Promise<never>(() => {});

  it("records a new dead letter whose stream sequence was used before the stream was recreated", async () => {
    const options = { bus, logger: silentLogger, deadLetters: createDeadLetterStore(db.handle.db) };
    const def = failing("seq-reuse", "billing.tasks.reuse");
    let worker = await startWorker(def, options);
    const first = await bus.publishEvent("billing.tasks.reuse", envelope("corr-first"));
    await waitFor(async () => ((await entriesOf("corr-first")).length ? true : undefined));
    await worker.stop({ drainTimeoutMs: 1_000 });
    // Stream perdido o recreado: las secuencias vuelven a empezar.
    const jsm = await bus.jsm();
    await jsm.streams.delete(streams.billing.name);
    await ensureStreams(bus);
    worker = await startWorker(def, options);
    const second = await bus.publishEvent("billing.tasks.reuse", envelope("corr-second"));
    expect(second.seq).toBe(first.seq);
    const [entry] = await waitFor(async () => {
      const rows = await entriesOf("corr-second");
      return rows.length ? rows : undefined;
    });
    await worker.stop({ drainTimeoutMs: 1_000 });
    expect(entry?.streamSequence).toBe(second.seq);
    expect((await entriesOf("corr-first")).map((e) => e.streamSequence)).toEqual([first.seq]);
  });

  it("dead-letters once a payload with a NUL byte and an envelope whose correlation id has a line break", async () => {
    const def = failing("garbage", "billing.tasks.garbage");
    const worker = await startWorker(def, {
      bus,
      logger: silentLogger,
      ackWaitMs: 1_000,
      deadLetters: createDeadLetterStore(db.handle.db),
    });
    // Cualquiera con permiso de publicar en billing.tasks.> (fuera de la API); su cabecera de
    // correlación se conserva aunque el sobre no se pueda leer.
    const h = natsHeaders();
    h.set("Farutech-Correlation-Id", "garbage-corr");
    await bus.js.publish("billing.tasks.garbage", new Uint8Array([0x7b, 0x00, 0x7d]), {
      headers: h,
    });
    const broken = envelope("line\r\nbreak", { n: "\u0000" });
    await bus.js.publish("billing.tasks.garbage", JSON.stringify(broken));
    const rows = await waitFor(
      async () => {
        const all = await db.handle.db
          .select()
          .from(dlqEntries)
          .where(eq(dlqEntries.subject, "billing.tasks.garbage"));
        return all.length >= 2 ? all : undefined;
      },
      { timeoutMs: 10_000 },
    );
    // Un rato más: ni entradas repetidas ni mensajes que sigan dando vueltas.
    await new Promise((r) => setTimeout(r, 2_000));
    const info = await (await bus.jsm()).consumers.info(streams.billing.name, "garbage");
    await worker.stop({ drainTimeoutMs: 1_000 });
    expect(rows).toHaveLength(2);
    expect(
      await db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.subject, "billing.tasks.garbage")),
    ).toHaveLength(2);
    expect(info.num_ack_pending).toBe(0);
    const garbage = rows.find((r) => r.rawPayload === "{\uFFFD}");
    expect(garbage?.correlationId).toBe("garbage-corr");
    const withEnvelope = rows.find((r) => r.eventId === broken.id);
    expect(withEnvelope?.correlationId).toBe("line\r\nbreak");
    expect(withEnvelope?.envelope).toMatchObject({ data: { n: "\uFFFD" } });
    const dlq = await (await bus.jsm()).streams.getMessage(streams.billing.name, {
      last_by_subj: "billing.dlq",
    });
    expect(dlq?.header?.get("Farutech-Correlation-Id")).toBe("line break");
  });

  it("terminates a dead-lettered message for good: it is not delivered again after its ack wait", async () => {
    let runs = 0;
    const worker = await startWorker(
      { ...failing("terminated", "billing.tasks.term"), handle: async () => void runs++ },
      {
        bus,
        logger: silentLogger,
        ackWaitMs: 1_000,
        deadLetters: createDeadLetterStore(db.handle.db),
      },
    );
    // Un fallo permanente (datos que no cumplen el esquema) con un error de varias líneas.
    await bus.publishEvent("billing.tasks.term", envelope("terminated", { n: "x" }));
    await waitFor(async () => ((await entriesOf("terminated")).length ? true : undefined));
    // Tres ack waits: con `+TERM <motivo>` nats-server 2.9 lo ignoraba y volvía a entregarlo.
    await new Promise((r) => setTimeout(r, 3_000));
    const info = await (await bus.jsm()).consumers.info(streams.billing.name, "terminated");
    await worker.stop({ drainTimeoutMs: 1_000 });
    expect(runs).toBe(0);
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
  });

  it("recreates its durable consumer when the stream was deleted and recreated, and says so", async () => {
    const handled: number[] = [];
    const { logger, lines } = captureLogs();
    const worker = await startWorker(
      {
        name: "recreated",
        domain: "billing",
        filterSubject: "billing.tasks.recreated",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          handled.push(ctx.data.n);
        },
      },
      { bus, logger, concurrency: 1 },
    );
    await bus.publishEvent("billing.tasks.recreated", envelope("r-1", { n: 1 }));
    await waitFor(async () => (handled.length === 1 ? true : undefined));
    // JetStream pierde el stream (volumen, operador) y otro proceso lo recrea al arrancar: el
    // consumer durable ya no existe. Antes el worker seguía pidiendo en silencio, sin procesar.
    const jsm = await bus.jsm();
    await jsm.streams.delete(streams.billing.name);
    await ensureStreams(bus);
    await bus.publishEvent("billing.tasks.recreated", envelope("r-2", { n: 2 }));
    await waitFor(async () => (handled.length === 2 ? true : undefined), { timeoutMs: 15_000 });
    await worker.stop({ drainTimeoutMs: 1_000 });
    expect(handled).toEqual([1, 2]);
    expect(lines.map((l) => l.msg)).toContain("durable consumer is gone; recreating it");
  });

  const advisoryWorker = (name: string, deadLettered: number[]) =>
    advisoryOnlyWorker(name, async (info) => {
      deadLettered.push(info.streamSequence);
      return { operatorsAlerted: true };
    });
  const injectAdvisory = (consumer: string, subject: string, correlationId: string) =>
    injectMaxDeliveriesAdvisory(bus, consumer, subject, correlationId);

  it("dead-letters from MAX_DELIVERIES advisories again after JetStream lost the task and advisory streams", async () => {
    const deadLettered: number[] = [];
    const { logger, lines } = captureLogs();
    const worker = await startWorker(advisoryWorker("adv-lost-streams", deadLettered), {
      bus,
      logger,
      concurrency: 1,
    });
    try {
      const before = await injectAdvisory("adv-lost-streams", "billing.tasks.advlost", "adv-1");
      await waitFor(async () => (deadLettered.includes(before) ? true : undefined));
      // JetStream pierde su estado (volumen perdido, un operador recrea los streams).
      const jsm = await bus.jsm();
      await jsm.streams.delete(streams.billing.name);
      await jsm.streams.delete(advisoryStream.name);
      // El worker recrea streams y consumers por su cuenta; el advisory se guarda al volver su stream.
      await waitFor(
        async () =>
          jsm.consumers
            .info(advisoryStream.name, "adv-lost-streams-advisories")
            .catch(() => undefined),
        { timeoutMs: 20_000 },
      );
      const after = await injectAdvisory("adv-lost-streams", "billing.tasks.advlost", "adv-2");
      await waitFor(async () => (deadLettered.includes(after) ? true : undefined), {
        timeoutMs: 15_000,
      });
      expect(lines.map((l) => l.msg)).toContain(
        "MAX_DELIVERIES advisory consumer is gone; recreating it",
      );
    } finally {
      await worker.stop({ drainTimeoutMs: 1_000 });
    }
  }, 60_000);

  it("recreates its MAX_DELIVERIES advisory consumer when only that consumer was deleted, without repeating what it handled", async () => {
    const deadLettered: number[] = [];
    const worker = await startWorker(advisoryWorker("adv-lost-consumer", deadLettered), {
      bus,
      logger: silentLogger,
      concurrency: 1,
    });
    try {
      const first = await injectAdvisory("adv-lost-consumer", "billing.tasks.advlostc", "adv-3a");
      await waitFor(async () => (deadLettered.includes(first) ? true : undefined), {
        timeoutMs: 15_000,
      });
      const jsm = await bus.jsm();
      await jsm.consumers.delete(advisoryStream.name, "adv-lost-consumer-advisories");
      await waitFor(
        async () =>
          jsm.consumers
            .info(advisoryStream.name, "adv-lost-consumer-advisories")
            .catch(() => undefined),
        { timeoutMs: 20_000 },
      );
      const seq = await injectAdvisory("adv-lost-consumer", "billing.tasks.advlostc", "adv-3");
      await waitFor(async () => (deadLettered.includes(seq) ? true : undefined), {
        timeoutMs: 15_000,
      });
      // El consumer recreado empieza tras lo ya atendido (llega en orden: un repetido iría antes).
      expect(deadLettered).toEqual([first, seq]);
    } finally {
      await worker.stop({ drainTimeoutMs: 1_000 });
    }
  }, 60_000);

  it("does not hold a message forever when storing its processed marker hangs", async () => {
    const handled: number[] = [];
    const worker = await startWorker(
      {
        name: "hung-marker",
        domain: "billing",
        filterSubject: "billing.tasks.hungmark",
        schema: z.object({ n: z.number() }),
        async handle(ctx) {
          handled.push(ctx.data.n);
        },
      },
      {
        bus,
        logger: silentLogger,
        concurrency: 1,
        ackWaitMs: 1_000,
        handlerTimeoutMs: 300,
        processed: { seen: async () => false, mark: never },
      },
    );
    await bus.publishEvent("billing.tasks.hungmark", envelope("m-1", { n: 1 }));
    await bus.publishEvent("billing.tasks.hungmark", envelope("m-2", { n: 2 }));
    // Con la marca colgada, el primero retenía el único hueco y el segundo no corría nunca.
    await waitFor(async () => (handled.length >= 2 ? true : undefined), { timeoutMs: 10_000 });
    const stopped = Date.now();
    await worker.stop({ drainTimeoutMs: 1_000 });
    expect(Date.now() - stopped).toBeLessThan(5_000);
    expect(handled).toEqual([1, 2]);
  });

  it("retries dead-lettering whose record hangs instead of holding the message", async () => {
    let calls = 0;
    const store = createDeadLetterStore(db.handle.db);
    const worker = await startWorker(failing("hung-dlq", "billing.tasks.hungdlq"), {
      bus,
      logger: silentLogger,
      ackWaitMs: 1_000,
      handlerTimeoutMs: 300,
      deadLetters: {
        record: (entry) => (++calls === 1 ? never() : store.record(entry)),
      },
    });
    await bus.publishEvent("billing.tasks.hungdlq", envelope("hung-dlq"));
    const [entry] = await waitFor(
      async () => {
        const rows = await entriesOf("hung-dlq");
        return rows.length ? rows : undefined;
      },
      { timeoutMs: 10_000 },
    );
    await worker.stop({ drainTimeoutMs: 1_000 });
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(entry?.error).toBe("boom");
  });
});
