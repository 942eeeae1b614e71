import { userInfo } from "node:os";
import { createBusProvider, fixedBusProvider } from "../core/bus-provider";
import { cliErrorText, cliLogger, failCli } from "../core/cli";
import { natsConnectionFromEnv } from "../core/config";
import { newId } from "../core/ids";
import { envWithSstLinks } from "../core/sst-links";
import { createDb, dbConfigFromEnv } from "../db/client";
import { adminRoles, createAdminClientSchema } from "./routes/access/schema";
import { createAdminClient } from "./services/clients";

// `npm run admin:client -- <nombre> [rol…]`: crea un cliente admin (platform_admin por defecto) y
// imprime su secreto una sola vez. Es el primer acceso de un despliegue nuevo (compose, ECS,
// Kubernetes), donde todavía no hay token para llamar a POST /api/admin-clients.
// En las imágenes: `node dist/functions-cli.js <nombre>`.
const env = envWithSstLinks(process.env);
const logger = cliLogger("admin-cli", "warn");
const usage = "usage: npm run admin:client -- <name> [platform_admin|catalog_manager|support…]";
const [name, ...roles] = process.argv.slice(2);
if (name === "--help" || name === "-h") {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const unknownRole = roles.find((r) => !(adminRoles as readonly string[]).includes(r));
// Un nombre que empieza por "-" es casi siempre una opción mal puesta: no se crea un cliente así.
if (!name || name.startsWith("-") || unknownRole) {
  process.stderr.write(`${unknownRole ? `unknown role ${unknownRole}\n` : ""}${usage}\n`);
  process.exit(2);
}
// Las mismas reglas que POST /api/admin-clients (largo, sin caracteres de control, sin roles
// repetidos): el CLI no crea un cliente que la API rechazaría.
const input = createAdminClientSchema.safeParse({
  name,
  roles: roles.length > 0 ? roles : ["platform_admin"],
});
if (!input.success) {
  const problems = input.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  process.stderr.write(`${problems.join("\n")}\n${usage}\n`);
  process.exit(2);
}

const db = await createDb({ ...dbConfigFromEnv(env), pgliteMustExist: true }).catch(failCli);
// Sin NATS_URL el evento queda en el outbox y lo publica el relay de los workers.
const bus =
  typeof env.NATS_URL === "string" && env.NATS_URL
    ? createBusProvider(natsConnectionFromEnv(env, "admin-cli"), logger)
    : fixedBusProvider(undefined);
try {
  const created = await createAdminClient(
    {
      db: db.db,
      bus,
      logger,
      actor: `cli:${userInfo().username}`,
      correlationId: newId(),
      baseDomain: typeof env.BASE_DOMAIN === "string" ? env.BASE_DOMAIN : "farutech.com",
    },
    input.data,
  );
  process.stdout.write(`${JSON.stringify(created, null, 2)}\n`);
} catch (err) {
  logger.error({ error: cliErrorText(err) }, "could not create the admin client");
  process.exitCode = 1;
} finally {
  await bus.close();
  await db.close();
}
