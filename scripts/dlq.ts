import { userInfo } from "node:os";
import { asc, eq, isNull } from "drizzle-orm";
import { z } from "zod";
import { createBusProvider, fixedBusProvider } from "../core/bus-provider";
import { cliLogger, failCli } from "../core/cli";
import { natsConnectionFromEnv } from "../core/config";
import { AppError } from "../core/errors";
import { errorMessage } from "../core/http/db-errors";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import { createDb, dbConfigFromEnv } from "../db/client";
import { dlqEntries } from "../db/schema";
import { replayDeadLetter, toDlqEntry } from "../functions/services/dlq";

// npm run dlq -- list | show <id> | replay <id> | replay --all
// Usa la misma configuración que los workers (DATABASE_URL, NATS_URL y sus credenciales) y el
// mismo servicio que la API.
const [command, arg, ...extra] = process.argv.slice(2);
// `npm run dlq -- list | head`: el lector se fue, no hay nada más que decir ni que es un fallo.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});
const usage = "usage: npm run dlq -- list | show <id> | replay <id> | replay --all";
// La orden se comprueba antes de abrir la base: un error de uso no depende de que esté.
const wellFormed =
  extra.length === 0 &&
  ((command === "list" && arg === undefined) ||
    (command === "show" && arg !== undefined && arg !== "--all") ||
    (command === "replay" && arg !== undefined));
if (!wellFormed) {
  console.error(usage);
  process.exit(command === "--help" || command === "-h" ? 0 : 2);
}
// Un id que no es UUID es un error del operador (2), no una consulta que falla.
if ((command === "show" || command === "replay") && arg && arg !== "--all") {
  if (!z.uuid().safeParse(arg).success) {
    console.error(`${arg} is not a DLQ entry id (a UUID, as printed by: npm run dlq -- list)`);
    process.exit(2);
  }
}
const logger = cliLogger("dlq-cli", "warn", { stderr: true });
const db = await createDb({ ...dbConfigFromEnv(), pgliteMustExist: true }).catch(failCli);
// Sin NATS_URL no se usa el broker por defecto (127.0.0.1:4222 puede ser otro sistema; el de
// `npm start` escucha en otro puerto): el reenvío queda en el outbox, como con admin:client.
// Un broker caído no es un fallo del reenvío (queda en el outbox) y cada línea lo dice: el aviso
// del proveedor, con su pila, sobra.
const bus = process.env.NATS_URL
  ? createBusProvider(natsConnectionFromEnv(process.env, "dlq-cli"), silentLogger)
  : fixedBusProvider(undefined);
const natsState = () =>
  process.env.NATS_URL ? (bus.failure() ?? "not reachable") : "not set (NATS_URL)";
/** Con el broker a mano el reenvío se publica ya; si no, lo publica el relay de los workers. */
const replayed = async (entry: { id: string; subject: string }) =>
  // Sin viaje al broker por entrada (replay --all puede llevar miles): basta la conexión abierta.
  (await bus.get())?.isConnected()
    ? { published: true, line: `replayed ${entry.id} (${entry.subject})` }
    : {
        published: false,
        line: `queued ${entry.id} (${entry.subject}) for replay: NATS ${natsState()}, the workers' outbox relay publishes it`,
      };
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
    let done = 0;
    let queued = 0;
    let skipped = 0;
    let failed: string | undefined;
    for (const { id } of pending) {
      try {
        const entry = await replayDeadLetter(ctx, id);
        const result = await replayed(entry);
        console.log(result.line);
        if (result.published) done++;
        else queued++;
      } catch (err) {
        // Una entrada que no se puede reprocesar (tarea ya en curso, instancia dada de baja) no
        // detiene al resto; el operador ve por qué.
        if (err instanceof AppError) {
          skipped++;
          console.error(`skipped ${id}: ${err.message}`);
          continue;
        }
        // Un fallo inesperado (la base) se repetiría en las demás: se para y se dice dónde.
        failed = `${id}: ${errorMessage(err)}`;
        console.error(`failed ${failed}`);
        break;
      }
    }
    const notAttempted = pending.length - done - queued - skipped - (failed ? 1 : 0);
    const waiting =
      queued > 0 ? `, ${queued} queued for the workers' outbox relay (NATS ${natsState()})` : "";
    const summary = `${done} entries replayed${waiting}, ${skipped} skipped${failed ? `, 1 failed, ${notAttempted} not attempted` : ""}`;
    // Con alguna saltada, un runbook o un script no deben tomarlo por un éxito completo.
    if (skipped > 0 || failed) {
      console.error(summary);
      process.exitCode = 1;
    } else {
      console.log(summary);
    }
  } else if (command === "replay" && arg) {
    const entry = await replayDeadLetter(ctx, arg);
    console.log(`${(await replayed(entry)).line}, replay #${entry.replayCount}`);
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
