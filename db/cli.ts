import { cliErrorText, cliLogger, failCli } from "../core/cli";
import { envWithSstLinks } from "../core/sst-links";
import { createDb, dbConfigFromEnv } from "./client";
import { EdgeLoginError, ensureEdgeLogin } from "./edge-role";
import { seedDemo } from "./seed";

// `npm run db:migrate`, `npm run db:seed` y `npm run db:edge-user -- <nombre>`: misma
// configuración que el resto (DATABASE_URL o PGlite).
const logger = cliLogger("db-cli", "info");
const [command, name] = process.argv.slice(2);
const password = process.env.EDGE_DATABASE_PASSWORD;
if (command !== "migrate" && command !== "seed" && command !== "edge-user") {
  // El uso en texto plano (no como línea de log); --help es una pregunta: stdout y 0.
  const help = command === "--help" || command === "-h";
  (help ? process.stdout : process.stderr).write(
    "usage: tsx db/cli.ts migrate|seed|edge-user <name>\n",
  );
  process.exit(help ? 0 : 2);
}
if (command === "edge-user" && (!name || !password)) {
  logger.error(
    "usage: EDGE_DATABASE_PASSWORD=<password> tsx db/cli.ts edge-user <name> (the password is read from the environment, never from the command line)",
  );
  process.exit(2);
}
// En `sst dev` (DevCommand Migrate) la base llega como link de SST.
const handle = await createDb(dbConfigFromEnv(envWithSstLinks(process.env))).catch(failCli);
try {
  if (command === "edge-user" && name && password) {
    if (handle.driver === "pglite") {
      throw new EdgeLoginError(
        "The embedded database (PGlite) has no users: the edge uses it as is",
      );
    }
    const outcome = await ensureEdgeLogin(handle.db, name, password);
    logger.info({ user: name, outcome }, "edge database user ready");
  } else {
    await handle.migrate();
    logger.info({ driver: handle.driver }, "migrations applied");
    if (command === "seed") {
      const summary = await seedDemo(handle.db);
      logger.info({ ...summary }, "demo data loaded");
    }
  }
} catch (err) {
  // Un error esperado (nombre o contraseña inválidos) se explica sin traza.
  if (err instanceof EdgeLoginError) logger.error(err.message);
  else logger.error({ error: cliErrorText(err) }, `${command} failed`);
  process.exitCode = 1;
} finally {
  await handle.close();
}
