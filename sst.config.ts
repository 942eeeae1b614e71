// Despliegue con SST: funciones admin en AWS Lambda (API Gateway HTTP API), edge en Cloudflare
// Workers y workers como contenedores en ECS Fargate. `sst dev` corre las funciones en vivo, los
// workers con `npm run dev:workers`, un nats-server local y las migraciones.
// Los secretos son sst.Secret enlazados (`link`): core/sst-links.ts los traduce a las variables de
// core/config.ts. Tipos de los globales en infra/sst/globals.d.ts (sin `sst install` aquí);
// test/infra/sst-config.test.ts evalúa run() con dobles de SST.

/** El worker drena hasta 30 s tras SIGTERM (workers/main.ts); ECS espera un poco más. */
const WORKER_STOP_TIMEOUT_S = 45;
/**
 * La fecha de edge/wrangler.toml, con la que corren las pruebas del edge (SST trae 2024-04-04).
 * nodejs_compat, que wrangler.toml no lleva, solo lo pide el envoltorio con que SST publica el
 * worker (`wrapCloudflareHandler` de "sst" importa node:process y node:crypto).
 */
const EDGE_COMPATIBILITY_DATE = "2025-09-01";
const EDGE_COMPATIBILITY_FLAGS = ["nodejs_compat"];
/**
 * SST empaqueta el worker con esbuild para Node (platform node, sin el campo `browser`): tomaba la
 * variante Node de las dependencias (pino con require("os") y worker_threads) y el worker no
 * arrancaba en workerd. Se resuelve como wrangler, con el que corren las pruebas del edge;
 * test/infra/sst-edge.test.ts corre en workerd el bundle hecho así.
 */
const EDGE_ESBUILD = {
  platform: "browser",
  conditions: ["workerd", "worker", "browser"],
  mainFields: ["browser", "module", "main"],
  // Los da workerd con nodejs_compat (el envoltorio de SST importa node:process).
  external: ["node:*"],
  define: { "process.env.NODE_ENV": '"production"' },
};

export default $config({
  app(input) {
    return {
      name: "farutech-orchestrator",
      removal: input?.stage === "production" ? "retain" : "remove",
      protect: input?.stage === "production",
      home: "aws",
      providers: { cloudflare: true },
    };
  },
  async run() {
    // `sst secret set <Nombre> <valor> --stage <stage>` (ver README).
    const databaseUrl = new sst.Secret("DatabaseUrl");
    // El edge entra con su propio usuario (rol farutech_edge, `npm run db:edge-user`): expuesto a
    // Internet, no lee clientes ni secretos ni escribe el plano de control.
    const edgeDatabaseUrl = new sst.Secret("EdgeDatabaseUrl");
    const natsUrl = new sst.Secret("NatsUrl");
    const natsWsUrl = new sst.Secret("NatsWsUrl");
    const natsToken = new sst.Secret("NatsToken");
    const signingKeys = new sst.Secret("AuthSigningKeys");
    const encryptionKeys = new sst.Secret("EncryptionKeys");
    // SMTP de los workers (bienvenida, fallos, alertas de la DLQ): sin él no sale ningún correo.
    const smtpUrl = new sst.Secret("SmtpUrl");

    // El edge emite los tokens; las funciones los verifican con su JWKS público.
    const edgeDomain =
      $app.stage === "production" ? "edge.farutech.com" : `edge-${$app.stage}.farutech.com`;
    const issuer = `https://${edgeDomain}`;
    const common = {
      AUTH_ISSUER: issuer,
      AUTH_AUDIENCE: "farutech-orchestrator",
      LOG_LEVEL: "info",
    };

    const edge = new sst.cloudflare.Worker("Edge", {
      handler: "edge/worker.ts",
      url: true,
      domain: edgeDomain,
      link: [edgeDatabaseUrl, signingKeys],
      environment: common,
      build: { esbuild: EDGE_ESBUILD },
      transform: {
        worker: (args) => {
          args.compatibilityDate = EDGE_COMPATIBILITY_DATE;
          args.compatibilityFlags = EDGE_COMPATIBILITY_FLAGS;
        },
      },
    });

    const api = new sst.aws.ApiGatewayV2("AdminApi");
    api.route("$default", {
      handler: "functions/lambda.handler",
      runtime: "nodejs20.x",
      timeout: "30 seconds",
      memory: "1024 MB",
      link: [databaseUrl, natsWsUrl, natsToken, encryptionKeys],
      environment: {
        ...common,
        DATABASE_DRIVER: "neon",
        AUTH_JWKS_URL: `${issuer}/.well-known/jwks.json`,
      },
    });

    const vpc = new sst.aws.Vpc("Vpc");
    const cluster = new sst.aws.Cluster("Cluster", { vpc });
    new sst.aws.Service("Workers", {
      cluster,
      image: { context: ".", dockerfile: "infra/docker/Dockerfile", target: "worker" },
      cpu: "0.5 vCPU",
      memory: "1 GB",
      link: [databaseUrl, natsUrl, natsToken, encryptionKeys, smtpUrl],
      environment: { ...common, METRICS_PORT: "9464" },
      health: {
        command: [
          "CMD",
          "node",
          "-e",
          "fetch('http://127.0.0.1:9464/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))",
        ],
        startPeriod: "30 seconds",
        interval: "15 seconds",
        timeout: "5 seconds",
        retries: 3,
      },
      scaling: { min: 2, max: 10, cpuUtilization: 70, memoryUtilization: false },
      dev: { command: "npm run dev:workers" },
      transform: {
        // ECS manda SIGKILL a los 30 s por defecto: justo lo que dura el drenaje.
        taskDefinition: (args) => {
          args.containerDefinitions = $jsonParse(args.containerDefinitions).apply((defs) =>
            JSON.stringify(
              (defs as Record<string, unknown>[]).map((d) => ({
                ...d,
                stopTimeout: WORKER_STOP_TIMEOUT_S,
              })),
            ),
          );
        },
      },
    });

    // Solo en `sst dev`: broker local con JetStream y WebSocket, y migraciones al arrancar.
    new sst.x.DevCommand("Nats", {
      dev: {
        title: "nats-server",
        command: "nats-server -c infra/nats/sst-dev.conf",
        autostart: true,
      },
    });
    new sst.x.DevCommand("Migrate", {
      link: [databaseUrl],
      dev: { title: "migrations", command: "npm run db:migrate", autostart: true },
    });

    return { adminApi: api.url, edge: edge.url };
  },
});
