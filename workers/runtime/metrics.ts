import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

export interface WorkerMetrics {
  registry: Registry;
  processed: Counter<"worker">;
  retried: Counter<"worker">;
  deadLettered: Counter<"worker">;
  duration: Histogram<"worker" | "outcome">;
}

export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry();
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
  };
}
