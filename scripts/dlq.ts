import { userInfo } from "node:os";
import { asc, eq, isNull } from "drizzle-orm";
import { createBusProvider } from "../core/bus-provider";
import { AppError } from "../core/errors";
import { newId } from "../core/ids";
import { createLogger } from "../core/logger";
import { createDb, dbConfigFromEnv } from "../db/client";
import { dlqEntries } from "../db/schema";
import { replayDeadLetter, toDlqEntry } from "../functions/services/dlq";

// npm run dlq -- list | show <id> | replay <id> | replay --all
// Usa la misma configuración que los workers (DATABASE_URL, NATS_URL) y el mismo servicio que la API.
const [command, arg] = process.argv.slice(2);
const usage = "usage: npm run dlq -- list | show <id> | replay <id> | replay --all";
const logger = createLogger({ service: "dlq-cli", level: process.env.LOG_LEVEL ?? "warn" });
const db = await createDb(dbConfigFromEnv());
const bus = createBusProvider(
  { servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "dlq-cli" },
  logger,
);
const ctx = {
  db: db.db,
  bus,
  logger,
  actor: `cli:${userInfo().username}`,
  correlationId: newId(),
  baseDomain: process.env.BASE_DOMAIN ?? "farutech.com",
};

try {
  if (command === "list") {
    const rows = await db.db.select().from(dlqEntries).orderBy(asc(dlqEntries.createdAt));
    if (rows.length === 0) console.log("DLQ vacía");
    for (const r of rows) {
      const state = r.replayedAt ? `replayed x${r.replayCount}` : "pending";
      console.log(
        `${r.id}  ${r.createdAt.toISOString()}  ${r.subject}  ${r.deliveries} deliveries  ${state}  ${r.error}`,
      );
    }
  } else if (command === "show" && arg) {
    const [row] = await db.db.select().from(dlqEntries).where(eq(dlqEntries.id, arg));
    if (!row) throw new Error(`DLQ entry ${arg} does not exist`);
    console.log(JSON.stringify(toDlqEntry(row), null, 2));
  } else if (command === "replay" && arg === "--all") {
    const pending = await db.db
      .select({ id: dlqEntries.id })
      .from(dlqEntries)
      .where(isNull(dlqEntries.replayedAt));
    let skipped = 0;
    for (const { id } of pending) {
      try {
        const entry = await replayDeadLetter(ctx, id);
        console.log(`replayed ${entry.id} (${entry.subject})`);
      } catch (err) {
        // Una entrada que no se puede reprocesar (tarea ya en curso, instancia dada de baja) no
        // detiene al resto; el operador ve por qué.
        if (!(err instanceof AppError)) throw err;
        skipped++;
        console.log(`skipped ${id}: ${err.message}`);
      }
    }
    console.log(`${pending.length - skipped} entries replayed, ${skipped} skipped`);
  } else if (command === "replay" && arg) {
    const entry = await replayDeadLetter(ctx, arg);
    console.log(`replayed ${entry.id} (${entry.subject}), replay #${entry.replayCount}`);
  } else {
    console.error(usage);
    process.exitCode = 2;
  }
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
} finally {
  await bus.close();
  await db.close();
}
