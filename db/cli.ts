import { cliLogger, failCli } from "../core/cli";
import { envWithSstLinks } from "../core/sst-links";
import { createDb, dbConfigFromEnv } from "./client";
import { seedDemo } from "./seed";

// `npm run db:migrate` y `npm run db:seed`: misma configuración que el resto (DATABASE_URL o PGlite).
const logger = cliLogger("db-cli", "info");
const command = process.argv[2];
if (command !== "migrate" && command !== "seed") {
  logger.error({ command }, "usage: tsx db/cli.ts migrate|seed");
  process.exit(2);
}
// En `sst dev` (DevCommand Migrate) la base llega como link de SST.
const handle = await createDb(dbConfigFromEnv(envWithSstLinks(process.env))).catch(failCli);
try {
  await handle.migrate();
  logger.info({ driver: handle.driver }, "migrations applied");
  if (command === "seed") {
    const summary = await seedDemo(handle.db);
    logger.info({ ...summary }, "demo data loaded");
  }
} catch (err) {
  logger.error({ err }, `${command} failed`);
  process.exitCode = 1;
} finally {
  await handle.close();
}
