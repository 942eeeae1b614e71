import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { within } from "../../core/readiness";

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
  };
  return metrics;
}
