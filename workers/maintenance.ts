import { lt, sql } from "drizzle-orm";
import type { Bus } from "../core/bus";
import type { Logger } from "../core/logger";
import { idempotencyKeys } from "../db/schema";
import type { Database } from "../db/types";
import { eraseExpiredCustomers } from "../functions/services/gdpr";

export interface MaintenanceOptions {
  db: Database;
  bus?: Bus;
  logger: Logger;
  retentionDays: number;
  intervalMs?: number;
}

export interface MaintenanceResult {
  erasedCustomers: number;
  expiredIdempotencyKeys: number;
}

/** Una pasada: borrado GDPR programado y limpieza de Idempotency-Key vencidas (24 h). */
export async function runMaintenanceOnce(
  options: Omit<MaintenanceOptions, "intervalMs">,
  now: Date = new Date(),
): Promise<MaintenanceResult> {
  const { erasedCustomerIds } = await eraseExpiredCustomers(options.db, {
    retentionDays: options.retentionDays,
    now,
    actor: "worker:gdpr",
    bus: options.bus,
    logger: options.logger,
  });
  const expired = await options.db
    .delete(idempotencyKeys)
    .where(
      lt(idempotencyKeys.createdAt, sql`${now.toISOString()}::timestamptz - interval '24 hours'`),
    )
    .returning({ key: idempotencyKeys.key });
  if (erasedCustomerIds.length > 0 || expired.length > 0) {
    options.logger.info(
      { erasedCustomers: erasedCustomerIds.length, expiredIdempotencyKeys: expired.length },
      "maintenance pass completed",
    );
  }
  return { erasedCustomers: erasedCustomerIds.length, expiredIdempotencyKeys: expired.length };
}

export interface RunningMaintenance {
  stop(): Promise<void>;
}

export function startMaintenance(options: MaintenanceOptions): RunningMaintenance {
  const logger = options.logger.child({ component: "maintenance" });
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = runMaintenanceOnce({ ...options, logger }).catch((err: unknown) =>
      logger.error({ err }, "maintenance pass failed"),
    );
  };
  tick();
  const timer = setInterval(tick, options.intervalMs ?? 3_600_000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
