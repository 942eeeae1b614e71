import { join, resolve } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import getPort, { portNumbers } from "get-port";
import { z } from "zod";
import { cliLogger, failCli } from "../core/cli";
import { ConfigError, envNumber, parseEnv } from "../core/config";
import { DataDirInUseError, ensurePrivateDir, lockDataDir } from "../core/dir-lock";
import { withoutCredentials } from "../core/redact-url";
import { createDb, dbConfigFromEnv } from "../db/client";
import { seedDemo } from "../db/seed";
import { createNodeEdgeApp } from "../edge/node";
import { createAdminApp } from "../functions/app";
import { createAdminRuntime } from "../functions/runtime";
import { type LocalNats, NatsServerMissingError, startLocalNats } from "../infra/nats/local-server";
import { startWorkers } from "../workers/runtime";
import {
  ensureLocalAdminClient,
  ensureLocalEncryptionKeys,
  ensureLocalSigningKeys,
  LOCAL_ADMIN_CLIENT_ID,
} from "./dev-credentials";

// `npm start`: todo el sistema en un proceso, con PGlite y un nats-server propio por defecto.
const DATA_DIR = resolve(process.env.FARUTECH_DATA_DIR ?? ".data");
const logger = cliLogger("local", "info");

/** Una señal repetida dentro de este margen es la misma petición de parada, no un segundo Ctrl-C. */
const REPEATED_SIGNAL_WINDOW_MS = 1_000;

const portsEnv = z.object({
  ADMIN_PORT: envNumber(z.number().int().min(1).max(65_535).default(3000)),
  EDGE_PORT: envNumber(z.number().int().min(1).max(65_535).default(8787)),
});

async function main() {
  const env: Record<string, string | undefined> = { ...process.env };
  const { ADMIN_PORT: adminPort, EDGE_PORT: edgePort } = parseEnv(portsEnv, env);
  // Un solo `npm start` por carpeta: dos compartirían el store de JetStream, las credenciales y la
  // base, y perderían escrituras confirmadas. Y solo su usuario la lee (datos de clientes, claves).
  if (ensurePrivateDir(DATA_DIR)) {
    logger.warn(
      { dataDir: DATA_DIR },
      "data folder was readable by others; now only its user (0700)",
    );
  }
  lockDataDir(join(DATA_DIR, "farutech.lock"), `The data folder ${DATA_DIR}`);

  let stoppingSince: number | undefined;
  let nats: LocalNats | undefined;
  // Si su nats-server muere (un kill, el OOM killer), se relanza en los mismos puertos y con el
  // mismo store: sin esto la API seguía aceptando tareas que ningún worker recibía, sin aviso.
  let lastNatsExit = 0;
  let natsExits = 0;
  let restartPending = false;
  const restartNats = (exit: { code: number | null; signal: NodeJS.Signals | null }) => {
    // Durante el propio arranque (aún sin `nats`) el fallo lo dice startLocalNats. Un relanzamiento
    // que falla puede avisar dos veces (su proceso muere y su promesa se rechaza): uno basta.
    if (stoppingSince !== undefined || !nats || restartPending) return;
    restartPending = true;
    // Una caída tras un rato estable vuelve a empezar la espera; seguidas, espera más cada vez.
    if (Date.now() - lastNatsExit > 60_000) natsExits = 0;
    lastNatsExit = Date.now();
    const delayMs = Math.min(30_000, 1_000 * 2 ** natsExits++);
    logger.error({ ...exit, retryInMs: delayMs }, "local nats-server exited; restarting it");
    setTimeout(() => {
      restartPending = false;
      if (stoppingSince !== undefined) return;
      nats?.restart().then(
        () => logger.info({ url: nats?.url }, "local nats-server restarted"),
        // Uno que no quedó listo (vivo o no) se para y se vuelve a intentar más tarde.
        async (err: unknown) => {
          logger.error({ err }, "local nats-server could not be restarted");
          await nats?.stop();
          restartNats({ code: null, signal: null });
        },
      );
    }, delayMs).unref();
  };
  if (!env.NATS_URL) {
    try {
      // Puertos propios: no choca con un broker que ya escuche en 4222.
      nats = await startLocalNats({
        dataDir: join(DATA_DIR, "nats"),
        port: await getPort({ host: "127.0.0.1", port: portNumbers(14222, 14240) }),
        wsPort: await getPort({ host: "127.0.0.1", port: portNumbers(14280, 14299) }),
        onUnexpectedExit: restartNats,
      });
    } catch (err) {
      if (err instanceof NatsServerMissingError) {
        console.error(`\n${err.message}\n`);
        process.exit(1);
      }
      throw err;
    }
    env.NATS_URL = nats.url;
    env.NATS_WS_URL = nats.wsUrl;
    logger.info({ url: nats.url, wsUrl: nats.wsUrl }, "local nats-server started");
  }

  env.PGLITE_DATA_DIR ??= join(DATA_DIR, "pglite");
  // En la máquina del desarrollador el receptor de webhooks suele ser local (127.0.0.1).
  env.WEBHOOK_ALLOW_PRIVATE_TARGETS ??= "true";
  env.AUTH_SIGNING_KEYS ??= await ensureLocalSigningKeys(join(DATA_DIR, "signing-keys.json"));
  env.ENCRYPTION_KEYS ??= ensureLocalEncryptionKeys(join(DATA_DIR, "encryption-keys.json"));
  env.AUTH_ISSUER ??= `http://127.0.0.1:${edgePort}`;

  const db = await createDb(dbConfigFromEnv(env));
  await db.migrate();
  const summary = await seedDemo(db.db);
  logger.info({ driver: db.driver, ...summary }, "database migrated and demo data loaded");

  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const edgeUrl = `http://127.0.0.1:${edgePort}`;
  const credentialsPath = join(DATA_DIR, "dev-credentials.json");
  const admin = await ensureLocalAdminClient(db.db, credentialsPath, { adminUrl, edgeUrl });
  if (!admin) {
    logger.warn(
      { clientId: LOCAL_ADMIN_CLIENT_ID },
      "local admin client is revoked and is not revived; create another with npm run admin:client",
    );
  }

  // En un solo proceso con los workers (TCP), la función admin usa TCP también (ver core/bus.ts).
  const { NATS_WS_URL: _ws, ...adminEnv } = env;
  const adminRuntime = await createAdminRuntime(adminEnv, {
    db,
    logger: logger.child({ component: "admin-api" }),
  });
  const edgeApp = await createNodeEdgeApp(env, db.db, logger.child({ component: "edge" }));

  // Los puertos antes que los workers: con uno ocupado no se llega a consumir nada. Y es un error
  // del operador, que se dice en una línea con la variable que lo cambia.
  const listen = (
    fetch: (req: Request) => Response | Promise<Response>,
    port: number,
    variable: string,
  ) =>
    new Promise<ServerType>((resolve, reject) => {
      const server = serve({ fetch, port, hostname: "127.0.0.1" }, () => resolve(server));
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "EADDRINUSE"
            ? new ConfigError(
                `Port ${port} (${variable}) is already in use: free it or set ${variable}`,
              )
            : err,
        ),
      );
    });
  const servers = await Promise.all([
    listen(createAdminApp(adminRuntime.deps).fetch, adminPort, "ADMIN_PORT"),
    listen(edgeApp.fetch, edgePort, "EDGE_PORT"),
  ]);
  // Sin `component` propio: el relay y el mantenimiento ponen el suyo (pino no reemplaza una
  // clave del padre, la repite) y las líneas de cada worker ya llevan `worker`.
  const workers = await startWorkers(env, { db, logger });

  console.log(
    [
      "",
      "Farutech Orchestrator en marcha",
      `  Admin API : ${adminUrl}  (docs: ${adminUrl}/docs)`,
      `  Edge      : ${edgeUrl}`,
      `  NATS      : ${withoutCredentials(env.NATS_URL ?? "")}  (WebSocket: ${env.NATS_WS_URL ? withoutCredentials(env.NATS_WS_URL) : "-"})`,
      `  Base      : ${db.driver === "pglite" ? `PGlite en ${env.PGLITE_DATA_DIR}` : "Postgres (DATABASE_URL)"}`,
      ...(admin
        ? [`  Credencial admin: ${credentialsPath}`, `    client_id=${admin.clientId}`]
        : [`  Credencial admin: ${LOCAL_ADMIN_CLIENT_ID} está revocada (npm run admin:client)`]),
      "  Ctrl-C para detener.",
      "",
    ].join("\n"),
  );

  const shutdown = async (signal: string) => {
    if (stoppingSince !== undefined) {
      // Un mismo Ctrl-C puede llegar dos veces (un envoltorio que lo reenvía, p. ej. el CLI de tsx):
      // solo otra señal pasado un momento es un segundo Ctrl-C de quien no quiere esperar.
      if (Date.now() - stoppingSince < REPEATED_SIGNAL_WINDOW_MS) return;
      // El candado se suelta al salir.
      logger.warn({ signal }, "forced exit before the drain finished");
      process.exit(130);
    }
    stoppingSince = Date.now();
    logger.info({ signal }, "stopping");
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    await workers.stop();
    await adminRuntime.close();
    await db.close();
    await nats?.stop();
    process.exit(0);
  };
  // `on` y no `once`: un segundo Ctrl-C sale con un aviso, no con la muerte por defecto de la señal.
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

main().catch((err: unknown) => {
  // En una línea (la pila no le dice nada al operador; con LOG_LEVEL=debug sale entera). Su
  // nats-server muere con este proceso (setpriv --pdeathsig).
  if (!(err instanceof ConfigError || err instanceof DataDirInUseError)) {
    process.stderr.write("npm start failed: ");
  }
  failCli(err);
});
