import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { domains } from "../../contracts/streams";
import { within } from "../../core/readiness";
import type { ControlPlaneBacklog } from "../../db/backlog";

export interface WorkerMetrics {
  registry: Registry;
  processed: Counter<"worker">;
  retried: Counter<"worker">;
  deadLettered: Counter<"worker">;
  duration: Histogram<"worker" | "outcome">;
  pending: Gauge<"worker">;
  ackPending: Gauge<"worker">;
  /**
   * Da de alta un worker: sus contadores existen desde 0 (una serie que nace en 1 no la ve
   * `increase()`, y la primera carta muerta tras un despliegue no alertaría) y se registra de
   * dónde leer los pendientes de su consumer al hacer scrape.
   */
  track(worker: string, read: () => Promise<ConsumerBacklog>): void;
  /** De dónde leer, al hacer scrape, lo que espera en la base (outbox y DLQ). */
  trackControlPlane(read: () => Promise<ControlPlaneBacklog>): void;
}

/** Tope de cada lectura de pendientes: sin broker, el scrape responde igual (sin esos datos). */
export const BACKLOG_READ_TIMEOUT_MS = 1_000;

/** Lo que espera en un consumer: sin entregar, y entregado sin confirmar (en curso o en backoff). */
export interface ConsumerBacklog {
  pending: number;
  ackPending: number;
}

export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry();
  const pendingSources = new Map<string, () => Promise<ConsumerBacklog>>();
  let reading: Promise<Map<string, ConsumerBacklog | undefined>> | undefined;
  /**
   * Pendientes por worker, en paralelo y con tope; `undefined` donde no se pudo leer. Las dos
   * gauges de un scrape comparten la lectura en curso.
   */
  const readBacklogs = () => {
    if (reading) return reading;
    reading = Promise.all(
      // Sin broker no hay dato; el scrape no falla ni espera por eso.
      [...pendingSources].map(
        async ([worker, source]) =>
          [worker, await within(BACKLOG_READ_TIMEOUT_MS, source()).catch(() => undefined)] as const,
      ),
    )
      .then((entries) => new Map(entries))
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };
  /** Sin dato, la serie desaparece: un 0 (o el último valor) viejo diría que no hay cola. */
  const setBacklog = async (gauge: Gauge<"worker">, pick: (backlog: ConsumerBacklog) => number) => {
    for (const [worker, backlog] of await readBacklogs()) {
      if (backlog) gauge.set({ worker }, pick(backlog));
      else gauge.remove({ worker });
    }
  };
  let controlPlaneSource: (() => Promise<ControlPlaneBacklog>) | undefined;
  let controlPlaneReading: Promise<ControlPlaneBacklog | undefined> | undefined;
  /** Una lectura por scrape para las tres gauges; sin base, sin dato (la serie desaparece). */
  const readControlPlane = () => {
    if (!controlPlaneSource) return Promise.resolve(undefined);
    controlPlaneReading ??= within(BACKLOG_READ_TIMEOUT_MS, controlPlaneSource())
      .catch(() => undefined)
      .finally(() => {
        controlPlaneReading = undefined;
      });
    return controlPlaneReading;
  };
  // Con etiqueta, para que sin dato la serie desaparezca (una gauge sin etiquetas mostraría 0:
  // «no hay atraso» justo cuando no se puede saber).
  new Gauge({
    name: "farutech_outbox_events",
    help: "Outbox events not yet published to NATS: unpublished (the relay's queue) and parked (failing repeatedly with NATS up, e.g. a full stream; retried every minute). The same in every worker process: use max, not sum",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const backlog = await readControlPlane();
      this.reset();
      if (!backlog) return;
      this.set({ state: "unpublished" }, backlog.unpublished);
      this.set({ state: "parked" }, backlog.parked);
    },
  });
  new Gauge({
    name: "farutech_outbox_oldest_event_age_seconds",
    help: "Age of the oldest unpublished outbox event (parked ones excluded): the relay's lag, 0 when none waits",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const backlog = await readControlPlane();
      this.reset();
      if (backlog) this.set({ state: "unpublished" }, backlog.oldestUnpublishedSeconds);
    },
  });
  new Gauge({
    name: "farutech_dlq_entries_unreplayed",
    help: "DLQ entries never replayed, per domain; the same in every worker process (use max, not sum)",
    labelNames: ["domain"],
    registers: [registry],
    async collect() {
      const backlog = await readControlPlane();
      this.reset();
      if (!backlog) return;
      // Cada dominio con su serie, también en 0: una alerta `> 0` ve nacer la primera entrada.
      for (const domain of domains) this.set({ domain }, backlog.deadLetters[domain] ?? 0);
    },
  });
  collectDefaultMetrics({ register: registry });
  const metrics: WorkerMetrics = {
    registry,
    processed: new Counter({
      name: "farutech_worker_messages_processed_total",
      help: "Messages processed successfully",
      labelNames: ["worker"],
      registers: [registry],
    }),
    retried: new Counter({
      name: "farutech_worker_messages_retried_total",
      help: "Failed deliveries scheduled for retry",
      labelNames: ["worker"],
      registers: [registry],
    }),
    deadLettered: new Counter({
      name: "farutech_worker_messages_dead_lettered_total",
      help: "Messages moved to the DLQ",
      labelNames: ["worker"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "farutech_worker_handler_duration_seconds",
      help: "Handler duration",
      labelNames: ["worker", "outcome"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    pending: new Gauge({
      name: "farutech_worker_consumer_pending",
      help: "Messages waiting in the worker's durable consumer, not yet delivered",
      labelNames: ["worker"],
      registers: [registry],
      async collect() {
        await setBacklog(this, (b) => b.pending);
      },
    }),
    ackPending: new Gauge({
      name: "farutech_worker_consumer_ack_pending",
      help: "Messages delivered but not yet acknowledged: being handled or waiting for a retry",
      labelNames: ["worker"],
      registers: [registry],
      async collect() {
        await setBacklog(this, (b) => b.ackPending);
      },
    }),
    track(worker, read) {
      for (const counter of [metrics.processed, metrics.retried, metrics.deadLettered]) {
        counter.inc({ worker }, 0);
      }
      pendingSources.set(worker, read);
    },
    trackControlPlane(read) {
      controlPlaneSource = read;
    },
  };
  return metrics;
}
