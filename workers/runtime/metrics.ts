import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface WorkerMetrics {
  registry: Registry;
  processed: Counter<"worker">;
  retried: Counter<"worker">;
  deadLettered: Counter<"worker">;
  duration: Histogram<"worker" | "outcome">;
  pending: Gauge<"worker">;
  ackPending: Gauge<"worker">;
  /** Registra de dónde leer los mensajes pendientes del consumer de un worker (al hacer scrape). */
  trackPending(worker: string, read: () => Promise<ConsumerBacklog>): void;
}

/** Lo que espera en un consumer: sin entregar, y entregado sin confirmar (en curso o en backoff). */
export interface ConsumerBacklog {
  pending: number;
  ackPending: number;
}

export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry();
  const pendingSources = new Map<string, () => Promise<ConsumerBacklog>>();
  const readBacklogs = async () => {
    const read = new Map<string, ConsumerBacklog>();
    for (const [worker, source] of pendingSources) {
      try {
        read.set(worker, await source());
      } catch {
        // Sin broker no hay dato; el scrape no falla por eso.
      }
    }
    return read;
  };
  collectDefaultMetrics({ register: registry });
  return {
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
        for (const [worker, backlog] of await readBacklogs()) this.set({ worker }, backlog.pending);
      },
    }),
    ackPending: new Gauge({
      name: "farutech_worker_consumer_ack_pending",
      help: "Messages delivered but not yet acknowledged: being handled or waiting for a retry",
      labelNames: ["worker"],
      registers: [registry],
      async collect() {
        for (const [worker, backlog] of await readBacklogs()) {
          this.set({ worker }, backlog.ackPending);
        }
      },
    }),
    trackPending(worker, read) {
      pendingSources.set(worker, read);
    },
  };
}
