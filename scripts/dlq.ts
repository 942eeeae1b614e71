import { userInfo } from "node:os";
import { asc, eq, isNull } from "drizzle-orm";
import { z } from "zod";
import { createBusProvider } from "../core/bus-provider";
import { cliLogger, failCli } from "../core/cli";
import { natsConnectionFromEnv } from "../core/config";
import { AppError } from "../core/errors";
import { errorMessage } from "../core/http/db-errors";
import { newId } from "../core/ids";
import { createDb, dbConfigFromEnv } from "../db/client";
import { dlqEntries } from "../db/schema";
import { replayDeadLetter, toDlqEntry } from "../functions/services/dlq";

// npm run dlq -- list | show <id> | replay <id> | replay --all
// Usa la misma configuración que los workers (DATABASE_URL, NATS_URL y sus credenciales) y el
// mismo servicio que la API.
const [command, arg] = process.argv.slice(2);
const usage = "usage: npm run dlq -- list | show <id> | replay <id> | replay --all";
// Un id que no es UUID es un error del operador (2), no una consulta que falla.
if ((command === "show" || command === "replay") && arg && arg !== "--all") {
  if (!z.uuid().safeParse(arg).success) {
    console.error(`${arg} is not a DLQ entry id (a UUID, as printed by: npm run dlq -- list)`);
    process.exit(2);
  }
}
const logger = cliLogger("dlq-cli", "warn");
const db = await createDb({ ...dbConfigFromEnv(), pgliteMustExist: true }).catch(failCli);
const bus = createBusProvider(natsConnectionFromEnv(process.env, "dlq-cli"), logger);
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
      // Una línea por entrada: el error completo (puede ocupar varias líneas) está en `show`.
      const error = r.error.replace(/\s+/g, " ").slice(0, 160);
      console.log(
        `${r.id}  ${r.createdAt.toISOString()}  ${r.subject}  ${r.deliveries} deliveries  ${state}  ${error}`,
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
      .where(isNull(dlqEntries.replayedAt))
      // En el orden en que murieron: dos tareas de una misma instancia no se adelantan.
      .orderBy(asc(dlqEntries.createdAt), asc(dlqEntries.id));
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
        console.error(`skipped ${id}: ${err.message}`);
      }
    }
    const summary = `${pending.length - skipped} entries replayed, ${skipped} skipped`;
    // Con alguna saltada, un runbook o un script no deben tomarlo por un éxito completo.
    if (skipped > 0) {
      console.error(summary);
      process.exitCode = 1;
    } else {
      console.log(summary);
    }
  } else if (command === "replay" && arg) {
    const entry = await replayDeadLetter(ctx, arg);
    console.log(`replayed ${entry.id} (${entry.subject}), replay #${entry.replayCount}`);
  } else {
    console.error(usage);
    process.exitCode = 2;
  }
} catch (err) {
  // Sin SQL ni parámetros de una consulta fallida.
  console.error(errorMessage(err));
  process.exitCode = 1;
} finally {
  await bus.close();
  await db.close();
}
