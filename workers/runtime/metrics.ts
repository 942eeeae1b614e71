import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface WorkerMetrics {
  registry: Registry;
  processed: Counter<"worker">;
  retried: Counter<"worker">;
  deadLettered: Counter<"worker">;
  duration: Histogram<"worker" | "outcome">;
  pending: Gauge<"worker">;
  /** Registra de dónde leer los mensajes pendientes del consumer de un worker (al hacer scrape). */
  trackPending(worker: string, read: () => Promise<number>): void;
}

export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry();
  const pendingSources = new Map<string, () => Promise<number>>();
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
      help: "Messages waiting in the worker's durable consumer",
      labelNames: ["worker"],
      registers: [registry],
      async collect() {
        for (const [worker, read] of pendingSources) {
          try {
            this.set({ worker }, await read());
          } catch {
            // Sin broker no hay dato; el scrape no falla por eso.
          }
        }
      },
    }),
    trackPending(worker, read) {
      pendingSources.set(worker, read);
    },
  };
}
